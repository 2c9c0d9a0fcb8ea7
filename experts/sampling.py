"""What a local model needs from an OpenAI request: validated sampling parameters, stop-string
trimming of streamed text, and plain {role, content} messages for the chat template."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_TOKENS", "GenerationParams", "StopTrimmer", "plain_messages"]

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """The OpenAI sampling fields a local model honours, validated."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def from_request(
        cls, params: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> GenerationParams:
        """Request fields over `defaults` (spec.options); raises ValueError when invalid."""

        def pick(*names: str) -> Any:
            for name in names:
                if params.get(name) is not None:
                    return params[name]
            return defaults.get(names[0])

        max_tokens = pick("max_tokens", "max_completion_tokens")
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, not {max_tokens!r}")
        temperature = _number(pick("temperature"), "temperature", low=0.0, high=2.0)
        top_p = _number(pick("top_p"), "top_p", low=0.0, high=1.0)
        if top_p == 0.0:
            raise ValueError("top_p must be greater than 0")
        seed = pick("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        return cls(max_tokens, temperature, top_p, _stop_strings(pick("stop")), seed)

    def generate_kwargs(self) -> dict[str, Any]:
        """Sampling arguments for `generate()`: greedy unless a temperature above 0 is set."""
        if not self.temperature:
            return {"do_sample": False}
        kwargs: dict[str, Any] = {"do_sample": True, "temperature": self.temperature, "top_k": 0}
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        return kwargs


class StopTrimmer:
    """Cuts streamed text at the first stop string, holding back just enough text to see a
    stop string split across pieces."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._buffer = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was found)."""
        self._buffer += text
        hits = [i for i in (self._buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            out, self._buffer = self._buffer[: min(hits)], ""
            return out, True
        cut = max(len(self._buffer) - self._hold, 0)
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out, False

    def flush(self) -> str:
        """What was held back, once the text has ended without a stop string."""
        out, self._buffer = self._buffer, ""
        return out


def _number(value: Any, name: str, *, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], not {value!r}")
    return float(value)


def _stop_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ValueError("stop must be a string or a list of strings")
    return tuple(s for s in items if s)


def plain_messages(messages: tuple[Mapping[str, Any], ...]) -> list[dict[str, str]]:
    """OpenAI messages as {role, content} with text content (text parts joined)."""
    plain: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if not isinstance(role, str):
            raise ValueError("every message needs a string 'role'")
        if isinstance(content, list):
            content = "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, Mapping) and part.get("type") == "text"
            )
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise ValueError(f"unsupported message content: {type(content).__name__}")
        plain.append({"role": role, "content": content})
    if not plain:
        raise ValueError("messages must not be empty")
    return plain
