"""`RetrievalMode`: how a retrieval-gated request is answered (settings, `coe.retrieval`)."""

from __future__ import annotations

import enum

__all__ = ["RetrievalMode"]


class RetrievalMode(enum.StrEnum):
    CONTEXT = "context"
    """The passages go into the best LLM expert's context; its answer cites their ids."""
    PASSAGES = "passages"
    """The passages themselves answer (the assistant message lists them)."""
    OFF = "off"
    """No retrieval: an LLM answers alone."""
