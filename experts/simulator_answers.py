"""What the vLLM-API *simulator* answers: filler text, or the shapes agents meet (tool calls,
refusals, reasoning, logprobs), built once and rendered by both of its faces.

    question = SimulatedQuestion(messages, token_limit, tools, tool_choice, parallel, logprobs)
    answer = compose(question, completion_tokens=16)   # a SimulatedAnswer
    answer.message()                           # the `message` of a chat.completion (no role)
    answer.pieces()                            # the streamed deltas, in order (no role chunk)
    answer.logprobs()                          # the choice's `logprobs`, when they were asked for

Rules (deterministic, so tests can predict them):
* a request with `tools` (and `tool_choice` not "none") whose last message is not a tool result
  is answered with tool calls: every tool when `parallel_tool_calls` is not false, else the
  first, or the one `tool_choice` names; arguments `{"query": <last user text>}`; finish reason
  `tool_calls`; the arguments stream in fragments of 8 characters;
* a last user message containing `refuse_marker` is refused (`refusal`, no content);
* `fixed_answer`, when set, is the answer's text (cut at the token limit);
* `reasoning` adds `reasoning_content` (vLLM's reasoning field) before the answer;
* otherwise the answer is filler words drawn from the last user (or tool) message.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experts.chat import Message, Usage

__all__ = ["SimulatedAnswer", "SimulatedQuestion", "SimulatedToolCall", "compose", "filler"]

_FILLER = ("simulated", "answer", "from", "the", "coe", "simulator")
_FRAGMENT = 8
REFUSAL = "I can't help with that request (simulated refusal)."


def filler(prompt: str, count: int) -> tuple[str, ...]:
    """`count` deterministic tokens (words drawn from the prompt, seeded by its hash)."""
    words = prompt.split() or list(_FILLER)
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    return tuple(("" if i == 0 else " ") + rng.choice(words) for i in range(count))


@dataclass(frozen=True)
class SimulatedQuestion:
    """The parts of a chat request the simulator reads."""

    messages: Sequence[Message]
    token_limit: int | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0

    def last_user_text(self) -> str:
        return next((m.text() for m in reversed(self.messages) if m.role == "user"), "")

    def wants_tool_calls(self) -> list[str]:
        """The names of the tools to call now (none: answer in text)."""
        if not self.tools or self.tool_choice == "none":
            return []
        if self.messages and self.messages[-1].role == "tool":
            return []  # the tool results are in: answer them
        names = [str(t.get("function", {}).get("name", "")) for t in self.tools]
        names = [n for n in names if n]
        chosen = self.tool_choice
        if isinstance(chosen, Mapping) and isinstance(chosen.get("function"), Mapping):
            wanted = chosen["function"].get("name")
            return [n for n in names if n == wanted][:1]
        return names if self.parallel_tool_calls is not False else names[:1]


@dataclass(frozen=True)
class SimulatedToolCall:
    id: str
    name: str
    arguments: str

    def whole(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def fragments(self, index: int) -> list[dict[str, Any]]:
        """The call as OpenAI streams it: id and name first, then the arguments in pieces."""
        head = {
            "index": index,
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": ""},
        }
        size = _FRAGMENT
        parts = [self.arguments[i : i + size] for i in range(0, len(self.arguments), size)]
        return [head, *({"index": index, "function": {"arguments": p}} for p in parts)]


@dataclass(frozen=True)
class SimulatedAnswer:
    tokens: tuple[str, ...]
    finish_reason: str
    usage: Usage
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[SimulatedToolCall, ...] = ()
    refusal: str | None = None
    with_logprobs: int | None = field(default=None)
    """None: no logprobs asked; else how many top alternatives per token."""

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def message(self) -> dict[str, Any]:
        """The chat.completion `message` without its role."""
        message: dict[str, Any] = {"content": self.text if self.tokens else None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [call.whole() for call in self.tool_calls]
        if self.refusal is not None:
            message["refusal"] = self.refusal
        return message

    def pieces(self) -> list[dict[str, Any]]:
        """The streamed deltas in order, one per token-like piece (the role chunk excluded)."""
        deltas: list[dict[str, Any]] = [{"reasoning_content": r} for r in self.reasoning]
        deltas += [{"content": t} for t in self.tokens]
        for index, call in enumerate(self.tool_calls):
            deltas += [{"tool_calls": [fragment]} for fragment in call.fragments(index)]
        if self.refusal is not None:
            deltas.append({"refusal": self.refusal})
        return deltas

    def logprobs(self, tokens: Sequence[str] | None = None) -> dict[str, Any] | None:
        """OpenAI's `logprobs` object for `tokens` (default: the whole answer), if asked for."""
        if self.with_logprobs is None:
            return None
        return {"content": [_token_logprob(t, self.with_logprobs) for t in (tokens or self.tokens)]}


def _token_logprob(token: str, top: int) -> dict[str, Any]:
    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    alternatives = [entry(token, -0.25)] + [entry(f"{token}~{i}", -2.0 - i) for i in range(1, top)]
    return {**entry(token, -0.25), "top_logprobs": alternatives[:top]}


def _words(text: str) -> tuple[str, ...]:
    """`text` as tokens: its words, each after the first with its leading space."""
    words = text.split(" ")
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def compose(
    question: SimulatedQuestion,
    *,
    completion_tokens: int,
    reasoning: bool = False,
    refuse_marker: str | None = None,
    fixed_answer: str | None = None,
) -> SimulatedAnswer:
    """The simulator's answer to `question`, `completion_tokens` long (rules in the module
    docstring)."""
    wanted = completion_tokens
    count = min(wanted, question.token_limit) if question.token_limit is not None else wanted
    prompt_tokens = max(sum(len(m.text().split()) for m in question.messages), 1)
    user = question.last_user_text()
    thoughts = filler("reasoning " + user, min(count, 4)) if reasoning else ()
    logprobs = question.top_logprobs if question.logprobs else None
    names = question.wants_tool_calls()
    if names:
        seed = hashlib.sha256(user.encode()).hexdigest()[:12]
        arguments = json.dumps({"query": user})
        calls = tuple(
            SimulatedToolCall(f"call_{seed}_{i}", name, arguments) for i, name in enumerate(names)
        )
        usage = Usage(prompt_tokens, len(calls) * 8 + len(thoughts))
        return SimulatedAnswer((), "tool_calls", usage, thoughts, calls, None, logprobs)
    if refuse_marker and refuse_marker in user:
        return SimulatedAnswer((), "stop", Usage(prompt_tokens, 12), thoughts, (), REFUSAL, None)
    source = question.messages[-1].text() if question.messages[-1].role == "tool" else user
    tokens = _words(fixed_answer)[:count] if fixed_answer else filler(source, count)
    usage = Usage(prompt_tokens, len(tokens) + len(thoughts))
    finish = "length" if count < wanted and len(tokens) == count else "stop"
    return SimulatedAnswer(tokens, finish, usage, thoughts, (), None, logprobs)
