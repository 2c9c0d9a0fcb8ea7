"""OpenAI wire models: what goes over HTTP. Domain types live in experts/base.py.

Requests accept unknown OpenAI fields (`extra="allow"`): they are passed through to experts that
support them. Responses follow the OpenAI schema so the official `openai` client parses them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    "RouteRequest",
    "RouteResponse",
    "StreamOptions",
    "UsageInfo",
]

AUTO_MODEL = "auto"
"""The model id that asks the gateway to route."""

OWNED_FIELDS = frozenset({"model", "messages", "stream"})
"""Request fields the gateway consumes itself; every other field goes to the expert."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text, with content parts of type 'text' joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. Validated bounds mirror OpenAI's."""

    model_config = ConfigDict(extra="allow")

    model: str = AUTO_MODEL
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1, description="Only n=1 is supported.")
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None

    def expert_params(self) -> dict[str, Any]:
        """Every field the client set, except those the gateway consumes."""
        data = self.model_dump(exclude_unset=True, exclude_none=True, exclude=set(OWNED_FIELDS))
        data.pop("n", None)
        return data

    def extra_fields(self) -> list[str]:
        """Names of the unknown fields the client sent (passed through as they are)."""
        return sorted(self.model_extra or {})

    def routing_query(self) -> str:
        """The text the router classifies: the last user message."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return self.messages[-1].text()


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = "stop"


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "coe-gateway"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class RouteRequest(BaseModel):
    """`POST /v1/route`: either a plain `query` or chat `messages` (last user message)."""

    model_config = ConfigDict(extra="allow")

    query: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)

    def text(self) -> str | None:
        if self.query is not None:
            return self.query
        if self.messages:
            return ChatCompletionRequest(messages=self.messages).routing_query()
        return None


class RouteCategory(BaseModel):
    name: str
    probability: float


class RouteExpert(BaseModel):
    name: str
    score: float


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


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorBody
