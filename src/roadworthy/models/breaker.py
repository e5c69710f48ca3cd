"""A circuit breaker per model: stop calling a model that keeps failing, probe it later.

States: **closed** (calls flow; outcomes are kept for ``window_s``), **open** (entered when
at least ``min_calls`` outcomes in the window failed at ``failure_rate`` or more; every call
is refused at once with :class:`~roadworthy.errors.CircuitOpen`, so the fallback chain
moves on without waiting for a timeout), **half-open** (after ``open_s``, up to
``probes`` calls go through; a success closes the breaker, a failure opens it again).

Only failures that say the *model* is unhealthy count: timeouts, 5xx and connection
failures, garbled bodies. A rate limit is the rate limiter's business, and a bad request
or content filter is about the request, not the model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from . import context as ctx
from .clock import Clock, SystemClock

__all__ = ["Breaker", "BreakerPolicy", "CircuitBreaker"]

State = Literal["closed", "open", "half_open"]
_UNHEALTHY = (errors.Timeout, errors.ProviderUnavailable, errors.MalformedResponse)


@dataclass(frozen=True)
class BreakerPolicy:
    failure_rate: float = 0.5
    min_calls: int = 10
    window_s: float = 60.0
    open_s: float = 30.0
    probes: int = 1


class CircuitBreaker:
    """The breaker's state machine, shared by every stack that calls one model."""

    def __init__(
        self, name: str, policy: BreakerPolicy | None = None, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.clock = clock or SystemClock()
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._failures = 0
        self._state: State = "closed"
        self._opened_at = 0.0
        self._probes_out = 0
        self.transitions: list[tuple[float, State]] = []

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock.now() - self._opened_at >= self.policy.open_s:
            self._move("half_open")
            self._probes_out = 0
        return self._state

    def healthy(self) -> bool:
        """Whether a call would be let through now (the router skips unhealthy models)."""
        state = self.state
        return state == "closed" or (state == "half_open" and self._probes_out < self.policy.probes)

    def _move(self, state: State) -> None:
        self._state = state
        self.transitions.append((self.clock.now(), state))

    def before_call(self) -> None:
        state = self.state
        if state == "open":
            left = self.policy.open_s - (self.clock.now() - self._opened_at)
            raise errors.CircuitOpen(f"circuit for {self.name!r} is open ({left:.1f}s left)")
        if state == "half_open":
            if self._probes_out >= self.policy.probes:
                raise errors.CircuitOpen(f"circuit for {self.name!r} is half-open, probe running")
            self._probes_out += 1

    def record(self, failed: bool) -> None:
        now = self.clock.now()
        if self._state == "half_open":
            self._probes_out = max(0, self._probes_out - 1)
            if failed:
                self._open(now)
            else:
                self._outcomes.clear()
                self._failures = 0
                self._move("closed")
            return
        self._outcomes.append((now, failed))
        self._failures += failed
        horizon = now - self.policy.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old_failed = self._outcomes.popleft()
            self._failures -= old_failed
        total = len(self._outcomes)
        if (
            self._state == "closed"
            and total >= self.policy.min_calls
            and self._failures / total >= self.policy.failure_rate
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._outcomes.clear()
        self._failures = 0
        self._move("open")

    def release_probe(self) -> None:
        """A half-open probe that ended without a verdict (e.g. a bad request)."""
        if self._state == "half_open":
            self._probes_out = max(0, self._probes_out - 1)


class Breaker:
    def __init__(self, inner: Provider, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.name = inner.name
        self.breaker = breaker

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def complete(self, request: CompletionRequest) -> Completion:
        if self.breaker.name in ctx.forced_failures.get():
            return await self.inner.complete(request)  # a drill is no verdict on the model
        self.breaker.before_call()
        try:
            completion = await self.inner.complete(request)
        except _UNHEALTHY:
            self.breaker.record(failed=True)
            raise
        except BaseException:
            self.breaker.release_probe()
            raise
        self.breaker.record(failed=False)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
