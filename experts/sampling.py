"""What a local model needs from a chat request: its expert's generation defaults
(`LocalOptions`), the request's sampling over them (`GenerationParams`), and stop-string
trimming of streamed text (`StopTrimmer`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experts.chat import Sampling

__all__ = ["DEFAULT_MAX_TOKENS", "GenerationParams", "LocalOptions", "StopTrimmer"]

DEFAULT_MAX_TOKENS = 256


class LocalOptions(BaseModel):
    """`options` of a `local` expert: its generation defaults, validated when it is built."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    repetition_penalty: float | None = Field(
        default=None, gt=0, description="> 1 discourages repeating tokens (CTRL's penalty)."
    )

    @classmethod
    def of(cls, name: str, options: Mapping[str, Any]) -> LocalOptions:
        """The options of expert `name`; ValueError naming the bad key."""
        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "options"
            raise ValueError(f"expert {name!r}: options.{key}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """What one local generation uses: the request's sampling fields over the expert's
    defaults (both already validated)."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    repetition_penalty: float | None = None
    logprobs: int | None = None
    """None: no logprobs; else how many top alternatives to report per token."""

    @classmethod
    def resolve(cls, sampling: Sampling, defaults: LocalOptions) -> GenerationParams:
        temperature = sampling.temperature
        return cls(
            max_tokens=sampling.token_limit or defaults.max_tokens,
            temperature=defaults.temperature if temperature is None else temperature,
            top_p=defaults.top_p if sampling.top_p is None else sampling.top_p,
            stop=sampling.stop,
            seed=sampling.seed,
            repetition_penalty=defaults.repetition_penalty,
            logprobs=(sampling.top_logprobs or 0) if sampling.logprobs else None,
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """Sampling arguments for `generate()`: greedy unless a temperature above 0 is set."""
        kwargs: dict[str, Any] = {"do_sample": False}
        if self.temperature:
            kwargs = {"do_sample": True, "temperature": self.temperature, "top_k": 0}
            if self.top_p is not None:
                kwargs["top_p"] = self.top_p
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
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
