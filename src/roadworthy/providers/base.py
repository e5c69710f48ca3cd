"""The provider contract: one async method and a declaration of what it can do.

Everything that talks to a model (HTTP APIs, the in-process llama.cpp model, the scripted
double, and later the wrappers that add caching, budgets and fallbacks) implements
:class:`Provider`. Keeping the contract to a single ``complete`` call is what lets wrappers
stack without knowing what they wrap. Streaming is a capability, not a second method: a
provider with ``capabilities.streaming`` streams into the sink a caller binds around
``complete`` (see :mod:`.streaming`) and still returns the whole completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Capabilities",
    "Completion",
    "CompletionRequest",
    "Message",
    "Provider",
    "ResponseFormat",
    "Usage",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ResponseFormat:
    """Ask for JSON; with a ``schema`` the provider constrains output to it when it can."""

    schema: dict[str, Any] | None = None
    name: str = "output"


@dataclass(frozen=True)
class CompletionRequest:
    """A provider-neutral chat request.

    ``model`` is the provider's own model id. ``timeout_s`` is the total deadline for this
    call; providers enforce it themselves so that a hang becomes :class:`~roadworthy.errors.Timeout`.
    """

    messages: tuple[Message, ...]
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    timeout_s: float | None = None
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them, normalised.

    ``input_tokens`` is *all* prompt tokens, cached ones included; ``cached_read_tokens``
    and ``cache_write_tokens`` are the parts of it billed at cache rates. Providers that
    report those separately (Anthropic) add them in, so pricing never double-counts or
    drops cached tokens. ``None`` means the provider did not say, which prices as unknown.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False  # counted or estimated by roadworthy, not reported upstream


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    usage: Usage
    model: str
    provider: str
    request_id: str | None = None
    parsed: Any = None
    raw: dict[str, Any] | None = None


@dataclass(frozen=True)
class Capabilities:
    streaming: bool = False
    json_schema: bool = False
    batch: bool = False
    embeddings: bool = False
    context_window: int | None = None
    max_concurrency: int | None = None  # None: no limit of its own (an in-process model is 1)


@runtime_checkable
class Provider(Protocol):
    """What every model backend and every wrapper implements."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...
