"""Fakes shared by the test packages: deterministic embedders and a chat-request builder.

    FakeEmbedder      bag of words over a fixed vocabulary (exact, hand-checkable vectors)
    HashingEmbedder   words hashed into buckets: any text, no model; counts its work
    ask(...)          a one-message `ChatRequest` with sampling fields
    FakeCalls         canned expert answers for fusion strategies

Routing quality is tested with the real MiniLM (tests/routers); everything else that needs an
embedder uses one of these, so it runs in microseconds and never depends on a model's taste.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np

from experts.chat import ChatDelta, ChatRequest, ChatResult, Message, Sampling, Usage
from experts.errors import ExpertError
from gateway.fusion.base import Candidate
from routers.embedder import Vectors

__all__ = ["FakeCalls", "FakeEmbedder", "HashingEmbedder", "ask"]

_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """Bag of words over a fixed vocabulary; texts with no known word point at an 'unknown' axis.

    `texts` records every text it was asked to embed, so tests can count the work.
    """

    id = "fake"

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = {word: i for i, word in enumerate(vocabulary)}
        self.texts: list[str] = []

    @property
    def dim(self) -> int:
        return len(self.vocabulary) + 1

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word in self.vocabulary:
                    out[row, self.vocabulary[word]] += 1.0
            if not out[row].any():
                out[row, -1] = 1.0
        normalised: Vectors = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalised


class HashingEmbedder:
    """Words hashed into `dim` buckets, L2-normalised; counts the texts it embeds."""

    def __init__(self, dim: int = 64, id: str = "hash-bow") -> None:
        self._dim = dim
        self._id = id
        self.calls = 0
        self.texts = 0
        self.last: list[str] = []

    @property
    def id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts += len(texts)
        self.last = list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self._dim
                out[row, bucket] += 1.0
            out[row, 0] += 1e-3
        normalised: Vectors = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalised


def ask(content: str, *, stop: str | Sequence[str] = (), **sampling: Any) -> ChatRequest:
    """A request with one user message; `stop` and `sampling` as an OpenAI client sets them."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    return ChatRequest(
        messages=(Message("user", content),), sampling=Sampling(stop=stops, **sampling)
    )


class FakeCalls:
    """`gateway.fusion.base.Calls` over canned answers: expert -> text, or an ExpertError to
    raise. Records who was called, in order; embeds with a `HashingEmbedder`."""

    def __init__(self, answers: Mapping[str, str | ExpertError]) -> None:
        self.answers = dict(answers)
        self.called: list[str] = []
        self.requests: list[ChatRequest] = []
        self._embedder = HashingEmbedder(dim=256)

    def _answer(self, expert: str, request: ChatRequest) -> ChatResult:
        self.called.append(expert)
        self.requests.append(request)
        answer = self.answers[expert]
        if isinstance(answer, ExpertError):
            raise answer
        return ChatResult(content=answer, model=expert, usage=Usage(1, 1))

    async def gather(self, experts: Sequence[str], request: ChatRequest) -> list[Candidate]:
        answered: list[Candidate] = []
        failure: ExpertError | None = None
        for expert in experts:
            try:
                answered.append(Candidate(expert, self._answer(expert, request), 0.0))
            except ExpertError as exc:
                failure = exc
        if not answered:
            raise failure or ExpertError("no candidate")
        return answered

    async def call(self, expert: str, request: ChatRequest) -> ChatResult:
        return self._answer(expert, request)

    async def stream(self, expert: str, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        result = self._answer(expert, request)
        for word in result.text.split(" "):
            yield ChatDelta(content=word)
        yield ChatDelta(finish_reason="stop", usage=result.usage)

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self._embedder.embed(texts)
