"""What the layers of one call tell each other without widening the provider contract.

The provider contract is ``complete(request) -> Completion``; wrappers must compose without
knowing what they wrap. Facts that cross layers (which attempt this is, how deep in the
fallback chain, why we hopped, the request's deadline, who the call is for) travel in
context variables instead of arguments. They are set with a token and reset on the way
out, so concurrent calls in different tasks never see each other's values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..providers.base import Completion, CompletionRequest

if TYPE_CHECKING:
    from ..store.budgets import BudgetLimit
    from .ratelimit import RateLimiter

__all__ = [
    "CallContext",
    "KeyPolicy",
    "api_key",
    "attempt",
    "bind",
    "bind_to_model",
    "call_context",
    "deadline",
    "fallback_depth",
    "forced_error",
    "forced_failures",
    "hop_reason",
    "in_retry",
    "output_check",
    "request_for_model",
    "route_name",
]

T = TypeVar("T")


@dataclass(frozen=True)
class CallContext:
    """Who a call is for: the ledger columns the stack cannot know by itself.

    ``input_class``, ``complexity`` and ``prompt_tier`` feed the router's tier rules.
    """

    trace_id: str
    item_id: str | None = None
    run_id: str | None = None
    pipeline: str | None = None
    step: str | None = None
    prompt_id: str | None = None
    prompt_version: int | None = None
    prompt_label: str | None = None
    input_class: str | None = None
    complexity: float | None = None
    prompt_tier: str | None = None


@dataclass(frozen=True)
class KeyPolicy:
    """The API key a call is made for, and the limits that key carries.

    It travels in its own context variable rather than in :class:`CallContext`, because
    the pipeline runner builds the call context and knows nothing of HTTP keys: the
    service binds the key once around the whole request, and every call beneath it (a
    chat completion or every step of a pipeline) is budgeted, throttled and recorded
    against it. ``id`` is the key's id, never its secret.
    """

    id: str
    budget: BudgetLimit | None = None
    limiter: RateLimiter | None = None


call_context: ContextVar[CallContext | None] = ContextVar("rw_call_context", default=None)
attempt: ContextVar[int] = ContextVar("rw_attempt", default=1)
fallback_depth: ContextVar[int] = ContextVar("rw_fallback_depth", default=0)
hop_reason: ContextVar[str | None] = ContextVar("rw_hop_reason", default=None)
route_name: ContextVar[str | None] = ContextVar("rw_route", default=None)
in_retry: ContextVar[bool] = ContextVar("rw_in_retry", default=False)
# The API key the current request came in with (None: not an HTTP request, or dev mode).
api_key: ContextVar[KeyPolicy | None] = ContextVar("rw_api_key", default=None)
# Absolute time on the stack's clock by which the whole request must be answered.
deadline: ContextVar[float | None] = ContextVar("rw_deadline", default=None)
# Model names that must fail without being called (fallback drills).
forced_failures: ContextVar[frozenset[str]] = ContextVar("rw_forced_failures", default=frozenset())
# The error class a forced hop raises; a drill picks one that triggers the next hop.
forced_error: ContextVar[str] = ContextVar("rw_forced_error", default="ProviderUnavailable")
# Re-render the request for a model (the prompt's model-specific variant), or None.
request_for_model: ContextVar[Callable[[str], CompletionRequest | None] | None] = ContextVar(
    "rw_request_for_model", default=None
)
# Check a completion (schema, criteria, confidence); raise OutputInvalid to escalate.
output_check: ContextVar[Callable[[Completion], Any] | None] = ContextVar(
    "rw_output_check", default=None
)


@contextmanager
def bind(var: ContextVar[T], value: T) -> Iterator[None]:
    """Set ``var`` for the duration of a ``with`` block."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def bind_to_model(request: CompletionRequest, model_name: str, model_id: str) -> CompletionRequest:
    """The request as one model of a route should get it: its prompt variant, its model id.

    Every hop-level wrapper that needs the final request (recording, caching) asks here, so
    they all agree on what was actually sent.
    """
    builder = request_for_model.get()
    if builder is not None:
        variant = builder(model_name)
        if variant is not None:
            request = dataclasses.replace(variant, timeout_s=request.timeout_s)
    if request.model != model_id:
        request = dataclasses.replace(request, model=model_id)
    return request
