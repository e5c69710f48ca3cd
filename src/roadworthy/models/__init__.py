"""The model stack: wrappers that share the provider contract, and the router over them.

Each behaviour is a :class:`~roadworthy.providers.base.Provider` wrapping another, so they
compose and can be tested alone::

    Router ─► Fallback ─► Retrying ─► Breaker ─► Budgeted ─► Throttled ─► Recorded ─► provider
    (tiers,    (hops and   (one loop   (skip a    (reserve    (RPM, TPM,   (one ledger
     cascade,   triggers)   per hop)    sick       cost in     concurrency) row per
     downgrade)                         model)     the store)               attempt)

:class:`StackBuilder` builds the stack for each route from ``roadworthy.yaml``.
"""

from .breaker import Breaker, BreakerPolicy, CircuitBreaker
from .budget import Budgeted
from .build import StackBuilder, budget_limits
from .clock import Clock, FakeClock, SystemClock
from .context import CallContext
from .drill import DrillReport, run_drill
from .fallback import DEFAULT_TRIGGERS, Fallback, Hop
from .ratelimit import RateLimiter, RateLimitPolicy, Throttled
from .recording import Recorded
from .retry import Retrying, RetryPolicy
from .router import DrillOutcome, Router, TierRule

__all__ = [
    "DEFAULT_TRIGGERS",
    "Breaker",
    "BreakerPolicy",
    "Budgeted",
    "CallContext",
    "CircuitBreaker",
    "Clock",
    "DrillOutcome",
    "DrillReport",
    "FakeClock",
    "Fallback",
    "Hop",
    "RateLimitPolicy",
    "RateLimiter",
    "Recorded",
    "RetryPolicy",
    "Retrying",
    "Router",
    "StackBuilder",
    "SystemClock",
    "Throttled",
    "TierRule",
    "budget_limits",
    "run_drill",
]
