"""An ordered chain of models: when one fails in a way its successor is there for, hop.

Each hop names the error classes that make the chain move *to* it (``on``; ``on_errors`` in config, as YAML reads a bare ``on`` as true). The defaults
are the failures another model can cure: timeouts, rate limits, an unavailable provider,
a garbled body, a content filter, an open breaker, and a context overflow. On a context
overflow only hops with a larger window are worth trying, so the smaller ones are skipped;
hops whose window cannot hold the request at all are skipped before anything is sent.

Hops run with ``fallback_depth`` and ``hop_reason`` (the error class that caused the hop)
in context, so the ledger row of every attempt says how deep it was and why.

A streamed call hops only before its first byte: once a hop sent text to the client
(the stream sink is committed), its failure ends the chain, whatever the triggers say,
because the next model's answer could not be joined to the part already sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from ..providers.pricing import Price
from ..providers.streaming import current_sink
from . import context as ctx
from .estimate import estimate_input_tokens

__all__ = ["DEFAULT_TRIGGERS", "Fallback", "Hop", "error_names"]

DEFAULT_TRIGGERS = frozenset(
    {
        "Timeout",
        "RateLimited",
        "ProviderUnavailable",
        "MalformedResponse",
        "ContextTooLong",
        "ContentFiltered",
        "CircuitOpen",
    }
)


def error_names(exc: BaseException) -> set[str]:
    """The class names an error answers to (a drill failure is a ProviderUnavailable)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, errors.RoadworthyError):
        names.add(exc.error_class)
    return names


@dataclass
class Hop:
    provider: Provider
    model_name: str
    context_window: int | None = None
    price: Price | None = None
    tier: str | None = None
    on: frozenset[str] = field(default_factory=lambda: DEFAULT_TRIGGERS)

    def fits(self, request: CompletionRequest) -> bool:
        if self.context_window is None:
            return True
        needed = estimate_input_tokens(request) + (request.max_tokens or 0)
        return needed <= self.context_window


class Fallback:
    def __init__(self, hops: Sequence[Hop], *, name: str = "fallback", start_depth: int = 0):
        if not hops:
            raise ValueError("a fallback chain needs at least one hop")
        self.hops = list(hops)
        self.name = name
        self.start_depth = start_depth

    @property
    def capabilities(self) -> Capabilities:
        return self.hops[0].provider.capabilities

    async def complete(self, request: CompletionRequest) -> Completion:
        last: errors.RoadworthyError | None = None
        reason: str | None = ctx.hop_reason.get()
        min_window = 0
        for index, hop in enumerate(self.hops):
            if last is not None and not (error_names(last) & hop.on):
                continue  # this hop is not there for that failure
            if min_window and (hop.context_window or 0) <= min_window:
                continue  # a context overflow needs a larger window
            if not hop.fits(request):
                last = last or errors.ContextTooLong(
                    f"request does not fit {hop.model_name!r}'s {hop.context_window}-token window",
                    model=hop.model_name,
                )
                continue
            depth = ctx.fallback_depth.set(self.start_depth + index)
            why = ctx.hop_reason.set(reason)
            try:
                return await hop.provider.complete(request)
            except errors.RoadworthyError as exc:
                sink = current_sink()
                if sink is not None and sink.committed:
                    raise  # part of this hop's answer is with the client already
                if isinstance(exc, errors.ContextTooLong) and hop.context_window:
                    min_window = max(min_window, hop.context_window)
                last = exc
                reason = exc.error_class
            finally:
                ctx.hop_reason.reset(why)
                ctx.fallback_depth.reset(depth)
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for hop in self.hops:
            await hop.provider.aclose()
