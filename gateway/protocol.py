"""OpenAI wire models: what goes over HTTP. The domain types live in `experts.chat`.

A request is validated here, once, and becomes a domain `ChatRequest` (`to_domain`). Requests
accept unknown OpenAI fields (`extra="allow"`): they are carried in the domain request's `extra`
and passed through to the experts that speak OpenAI's API. Responses follow the OpenAI schema
so the official `openai` client parses them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from experts.chat import AUTO_MODEL, ChatRequest, FusionRequest, Message, Role, Sampling, Usage
from gateway.fusion.base import FusionKind
from gateway.retrieval_mode import RetrievalMode

__all__ = [
    "AUTO_MODEL",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "DeltaMessage",
    "ErrorBody",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "ResponseMessage",
    "RouteCategory",
    "RouteExpert",
    "RouteFusion",
    "RouteRequest",
    "RouteResponse",
    "StreamOptions",
    "UsageInfo",
]

OWNED_FIELDS = frozenset({"model", "messages", "stream", "n", "coe"})
"""Request fields the gateway consumes itself (`n` is 1: one answer per request; `coe` is the
gateway's extension object)."""
SAMPLING_FIELDS = frozenset(Sampling.__dataclass_fields__)
"""Request fields the domain request types (`experts.chat.Sampling`)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def to_domain(self) -> Message:
        fields = self.model_dump(exclude_unset=True, exclude_none=True, exclude={"role", "content"})
        content = tuple(self.content) if isinstance(self.content, list) else self.content
        return Message(self.role, content, fields)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: Annotated[bool, Strict()] = False


class CoeOptions(BaseModel):
    """The gateway's extension object, `"coe": {...}` (the openai client's `extra_body`)."""

    model_config = ConfigDict(extra="forbid")

    fusion: FusionKind | None = Field(
        default=None, description="Fusion strategy for this request (`none` turns it off)."
    )
    k: int | None = Field(default=None, ge=1, le=16, description="Candidates to fuse.")
    experts: list[str] | None = Field(
        default=None, min_length=1, max_length=16, description="The candidate experts."
    )
    deadline_s: float | None = Field(default=None, gt=0, le=600)
    retrieval: RetrievalMode | None = Field(
        default=None,
        description="passages | context | off: how a request gated to retrieval is answered.",
    )

    def to_domain(self) -> FusionRequest:
        return FusionRequest(
            strategy=None if self.fusion is None else self.fusion.value,
            k=self.k,
            experts=tuple(dict.fromkeys(self.experts or ())),
            deadline_s=self.deadline_s,
        )


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. Validated bounds mirror OpenAI's."""

    model_config = ConfigDict(extra="allow")

    model: str = AUTO_MODEL
    messages: list[ChatMessage] = Field(min_length=1)
    # Strict: `true` is not a number and "1" not a boolean (as the schema says), ints pass as floats
    stream: Annotated[bool, Strict()] = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Strict()] | None = Field(default=None, ge=0, le=2)
    top_p: Annotated[float, Strict()] | None = Field(default=None, ge=0, le=1)
    max_tokens: Annotated[int, Strict()] | None = Field(default=None, ge=1)
    max_completion_tokens: Annotated[int, Strict()] | None = Field(default=None, ge=1)
    n: Annotated[int, Strict()] = Field(
        default=1,
        description="One answer per request: only n=1 is served.",
        json_schema_extra={"minimum": 1, "maximum": 1},
    )
    stop: str | list[str] | None = None
    seed: Annotated[int, Strict()] | None = None
    presence_penalty: Annotated[float, Strict()] | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: Annotated[float, Strict()] | None = Field(default=None, ge=-2, le=2)
    logprobs: Annotated[bool, Strict()] | None = None
    top_logprobs: Annotated[int, Strict()] | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    coe: CoeOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_answer(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"n={value} is not served: the gateway answers each request with one choice "
                "(send n requests, or let the gateway fuse several experts' answers)"
            )
        return value

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def extra_fields(self) -> list[str]:
        """Names of the unknown fields the client sent (passed through as they are)."""
        return sorted(self.model_extra or {})

    def to_domain(self) -> ChatRequest:
        """The validated request as the gateway's services read it."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        sampling = Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            max_completion_tokens=self.max_completion_tokens,
            stop=tuple(s for s in stop if s),
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
        )
        extra = self.model_dump(
            exclude_unset=True, exclude_none=True, exclude=set(OWNED_FIELDS | SAMPLING_FIELDS)
        )
        return ChatRequest(
            messages=tuple(m.to_domain() for m in self.messages),
            sampling=sampling,
            model=self.model,
            stream=self.stream,
            include_usage=bool(self.stream_options and self.stream_options.include_usage),
            extra=extra,
            fusion=self.coe.to_domain() if self.coe else FusionRequest(),
            retrieval=self.coe.retrieval.value if self.coe and self.coe.retrieval else None,
        )


class UsageInfo(BaseModel):
    """Token counts, and the expert's other usage fields (`prompt_tokens_details`, ...)."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, usage: Usage) -> UsageInfo:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            **usage.details,
        )


class ResponseMessage(BaseModel):
    """The answer; extra fields (`tool_calls`, `refusal`, `reasoning_content`, ...) as sent."""

    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"] = "assistant"
    content: str | None


class Choice(BaseModel):
    """One choice; extra fields (`logprobs`, vLLM's `stop_reason`, ...) as the expert sent them."""

    model_config = ConfigDict(extra="allow")

    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = "stop"


class ChatCompletionResponse(BaseModel):
    """A `chat.completion`; extra top-level fields (`system_fingerprint`, ...) as sent."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo | None = None


class DeltaMessage(BaseModel):
    """A piece of the answer; extra fields (`tool_calls` fragments, ...) as the expert sent them."""

    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """A `chat.completion.chunk`; the first carries the `coe` extension when there is one."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
    coe: dict[str, Any] | None = None


class ExpertStatus(BaseModel):
    """The `coe` extension of a model card: its circuit breaker and last probe."""

    state: Literal["closed", "half_open", "open"]
    reason: str = ""
    probe: str | None = None
    """The last background probe: "ok", or why it failed; None when never probed."""


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "coe-gateway"
    coe: ExpertStatus | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class RouteRequest(BaseModel):
    """`POST /v1/route`: either a plain `query` or chat `messages` (routed as a chat request
    with them would be, even when they hold no text: the router then abstains)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"anyOf": [{"required": ["query"]}, {"required": ["messages"]}]},
    )

    query: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_null(self) -> RouteRequest:
        for name in ("query", "messages"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may not be null (leave it out)")
        return self

    def text(self) -> str | None:
        if self.query is not None:
            return self.query
        if self.messages:
            return ChatRequest(tuple(m.to_domain() for m in self.messages)).routing_query()
        return None


class RouteCategory(BaseModel):
    name: str
    probability: float


class RouteExpert(BaseModel):
    name: str
    score: float


class RouteFusion(BaseModel):
    """How a chat request for this query would be answered: by fusion, or by one expert."""

    strategy: str
    k: int
    experts: list[str]
    reason: str


class RouteRetrieval(BaseModel):
    """The retrieval decision: the mode, the retrievers it would search, and why."""

    mode: str
    retrievers: list[RouteCategory]
    reason: str


class RouteResponse(BaseModel):
    """The routing decision, without calling any expert."""

    category: str | None
    categories: list[RouteCategory]
    experts: list[RouteExpert] = Field(description="Best first; the gateway fails over in order.")
    selected: list[str] = Field(description="The expert(s) a chat request would call now.")
    fallback: bool
    reason: str
    router: str
    route_ms: float
    top_similarity: float | None = None
    fusion: RouteFusion
    retrieval: RouteRetrieval


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorBody
