"""`LocalModelStore`: transformers models loaded once per source and shared by local experts.

Lifecycle::

    store = LocalModelStore()                 # one per process (the app lifespan owns it)
    loaded = await store.get("smollm2")       # loads off the event loop, once per source
    store.close()                             # forget every model (running generations keep
                                              # theirs until they end)

A source is "smollm2" (SmolLM2-135M-Instruct, converted by `experts.weights.prepare_smollm2`)
or a Hugging Face model directory. Loads are serialised process-wide (`_LOAD_LOCK`).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from experts.errors import ExpertUnavailable
from experts.weights import prepare_smollm2

__all__ = ["DEFAULT_SOURCE", "LoadedModel", "LocalModelStore"]

DEFAULT_SOURCE = "smollm2"
"""The source used when `spec.model` is None: SmolLM2-135M-Instruct via `prepare_smollm2()`."""


@dataclass(eq=False)
class LoadedModel:
    """A model and tokenizer loaded from one source, shared by every expert using that source."""

    source: str
    path: Path
    model: Any
    tokenizer: Any
    generate_lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0

    @property
    def busy(self) -> bool:
        """True while a generation runs."""
        return self.generate_lock.locked()

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def eos_ids(self) -> frozenset[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return frozenset([eos] if isinstance(eos, int) else (eos or []))


_LOAD_LOCK = threading.Lock()
"""Serialises `from_pretrained` across the process: transformers patches torch's weight-init
functions process-wide while it loads, so two loads at once (two sources, or a load beside a
sentence-transformers load) can leave one model with randomly initialised weights."""


class LocalModelStore:
    """Loads transformers models by source, once per source per store; thread-safe.

    `torch_threads`, when set, is passed to `torch.set_num_threads` here: it is process-wide.
    (On a busy 2-core machine 1 thread generated 3-8x faster than 2.)
    """

    def __init__(self, *, dtype: str = "float32", torch_threads: int | None = None) -> None:
        self._dtype = dtype
        self._torch_threads = torch_threads
        self._models: dict[str, LoadedModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._closed = False
        if torch_threads:  # here, not in a worker thread: OpenMP aborts at exit otherwise
            torch.set_num_threads(torch_threads)

    async def get(self, source: str) -> LoadedModel:
        """The model for `source` ("smollm2" or a directory), loading it in a worker thread.

        Raises ExpertUnavailable when it cannot be loaded or the store is closed.
        """
        key = _source_key(source)
        loaded = self.peek(key)
        if loaded is not None:
            return loaded
        return await asyncio.to_thread(self._get_sync, key)

    def peek(self, source: str) -> LoadedModel | None:
        """The model for `source` if it is loaded; never loads."""
        with self._guard:
            return self._models.get(_source_key(source))

    def close(self) -> None:
        """Forget every model (running generations keep theirs until they end)."""
        with self._guard:
            self._closed = True
            self._models.clear()

    def _get_sync(self, key: str) -> LoadedModel:
        with self._guard:
            if self._closed:
                raise ExpertUnavailable("the local model store is closed")
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._models:
                    return self._models[key]
            with _LOAD_LOCK:
                loaded = self._load(key)
            with self._guard:
                if self._closed:
                    raise ExpertUnavailable("the local model store is closed")
                self._models[key] = loaded
            return loaded

    def _load(self, key: str) -> LoadedModel:
        try:
            path = prepare_smollm2() if key == DEFAULT_SOURCE else Path(key)
            if not path.is_dir():
                raise FileNotFoundError(f"{path} is not a directory")
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=getattr(torch, self._dtype)
            )
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise ExpertUnavailable(f"cannot load local model {key!r}: {exc}") from exc
        model.train(False)  # inference mode for dropout & co (`eval()` is untyped)
        return LoadedModel(source=key, path=path, model=model, tokenizer=tokenizer)


def _source_key(source: str) -> str:
    if source == DEFAULT_SOURCE:
        return source
    return str(Path(source).expanduser().resolve())
