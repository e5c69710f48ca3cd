"""The one retry loop of a hop: exponential backoff with full jitter, Retry-After, deadline.

Which failures are worth another try is the error taxonomy's call (``error.retryable``),
not a list kept here: rate limits, timeouts, 5xx/connection failures and garbled bodies
are; bad requests, auth failures, content filters, context overflows and roadworthy's own
refusals (budget, open breaker) are not, so they go straight to the fallback chain.

Backoff is "full jitter" (a uniform wait in ``[0, min(cap, base * 2**n))``), which spreads
retrying clients apart; a ``Retry-After`` from the upstream is a floor on the wait. No
wait may cross the request's deadline: when the next attempt could not start in time, the
last error is raised at once so the next hop still has time.

Nesting is refused at run time: a ``Retrying`` inside another one's attempt makes exactly
one attempt, so a misbuilt stack cannot multiply attempts (3 x 3 = 9 calls per request).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from . import context as ctx
from .clock import Clock, SystemClock

__all__ = ["RetryPolicy", "Retrying"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    deadline_s: float | None = 60.0  # total per request, all attempts and waits included
    attempt_timeout_s: float | None = None  # per attempt, within the deadline

    def backoff(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)))


class Retrying:
    def __init__(
        self,
        inner: Provider,
        policy: RetryPolicy | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.policy = policy or RetryPolicy()
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def _deadline(self, request: CompletionRequest) -> float | None:
        """The earliest of the propagated deadline, the request's own and the policy's."""
        now = self.clock.now()
        candidates = [d for d in (ctx.deadline.get(),) if d is not None]
        if request.timeout_s is not None:
            candidates.append(now + request.timeout_s)
        if self.policy.deadline_s is not None:
            candidates.append(now + self.policy.deadline_s)
        return min(candidates) if candidates else None

    async def complete(self, request: CompletionRequest) -> Completion:
        if ctx.in_retry.get():
            return await self.inner.complete(request)
        deadline = self._deadline(request)
        in_retry = ctx.in_retry.set(True)
        try:
            attempt = 1
            while True:
                timeout = self.policy.attempt_timeout_s
                if deadline is not None:
                    left = deadline - self.clock.now()
                    if left <= 0:
                        raise errors.Timeout(
                            f"deadline passed before attempt {attempt}", model=request.model
                        )
                    timeout = left if timeout is None else min(timeout, left)
                req = request
                if timeout != request.timeout_s:
                    req = dataclasses.replace(request, timeout_s=timeout)
                token = ctx.attempt.set(attempt)
                try:
                    return await self.inner.complete(req)
                except errors.RoadworthyError as exc:
                    if not exc.retryable or attempt >= self.policy.max_attempts:
                        raise
                    wait = self.policy.backoff(attempt, self.rng)
                    if isinstance(exc, errors.RateLimited) and exc.retry_after is not None:
                        wait = max(wait, exc.retry_after)
                    if deadline is not None and self.clock.now() + wait >= deadline:
                        raise
                    await self.clock.sleep(wait)
                finally:
                    ctx.attempt.reset(token)
                attempt += 1
        finally:
            ctx.in_retry.reset(in_retry)

    async def aclose(self) -> None:
        await self.inner.aclose()
