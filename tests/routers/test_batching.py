"""`BatchingEmbedder`: concurrent callers share inner calls and each gets its own rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from routers.batching import BatchingEmbedder
from routers.embedder import Vectors


class SlowEmbedder:
    """Deterministic vectors; each call blocks until released, and calls are recorded."""

    id = "slow"
    dim = 4

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.fail_on: str | None = None

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        self.gate.wait(10)
        if self.fail_on in texts:
            raise RuntimeError("boom")
        return np.array([[len(t), ord(t[0]), 1, 0] for t in texts], dtype=np.float32)


def _run_concurrently(embedder: BatchingEmbedder, texts: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}

    def call(text: str) -> None:
        try:
            results[text] = embedder.embed([text])
        except RuntimeError as exc:
            results[text] = exc

    threads = [threading.Thread(target=call, args=(t,)) for t in texts]
    threads[0].start()
    inner = embedder.inner
    assert isinstance(inner, SlowEmbedder)
    while not inner.calls:  # the first call is inside the model; the others queue behind it
        threading.Event().wait(0.001)
    for thread in threads[1:]:
        thread.start()
    while sum(len(c) for c in inner.calls) < 1:
        threading.Event().wait(0.001)
    threading.Event().wait(0.2)  # let the followers enqueue
    inner.gate.set()
    for thread in threads:
        thread.join(10)
    return results


def test_waiting_calls_are_embedded_in_one_batch() -> None:
    inner = SlowEmbedder()
    embedder = BatchingEmbedder(inner)
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    results = _run_concurrently(embedder, texts)
    assert inner.calls[0] == ["a"]
    assert sorted(inner.calls[1]) == ["bb", "ccc", "dddd", "eeeee"]  # one batch for the waiters
    assert len(inner.calls) == 2
    for text in texts:
        vector = results[text]
        assert isinstance(vector, np.ndarray)
        assert vector.shape == (1, 4) and vector[0, 0] == len(text)  # each got its own row


def test_batch_size_is_capped() -> None:
    inner = SlowEmbedder()
    results = _run_concurrently(BatchingEmbedder(inner, max_batch=2), ["a", "b", "c", "d", "e"])
    assert all(len(call) <= 2 for call in inner.calls)
    assert sorted(t for call in inner.calls for t in call) == ["a", "b", "c", "d", "e"]
    assert all(isinstance(v, np.ndarray) for v in results.values())


def test_a_failed_batch_fails_every_caller_in_it_and_only_them() -> None:
    inner = SlowEmbedder()
    inner.fail_on = "bad"
    results = _run_concurrently(BatchingEmbedder(inner), ["ok", "bad", "also"])
    assert isinstance(results["ok"], np.ndarray)  # the first call ran alone
    assert isinstance(results["bad"], RuntimeError) and isinstance(results["also"], RuntimeError)
