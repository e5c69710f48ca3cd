"""Wait for capacity instead of hammering into 429s: RPM, TPM and concurrency per model/key.

A :class:`RateLimiter` keeps a sliding window (default 60 s) of the requests and tokens it
let through. Before a call, :meth:`RateLimiter.acquire` reserves one request and the
call's *estimated* tokens (input plus maximum output), waiting on the clock until the
window has room; after it, the reservation is corrected to the tokens the provider
reported, which frees what the estimate over-asked. Waiters are served first come, first
served, so a large request is not starved by small ones.

Limiters are shared objects: one per model and one per provider key (several models on
one key share its limits), and :class:`Throttled` acquires all of them. The RPM of a
service API key is a limiter too, but it refuses instead of waiting
(:meth:`RateLimiter.try_acquire`, checked once per request by the router). A request larger than
the whole TPM window is let through alone rather than blocking forever.

Limits are per process: with several worker processes, give each a share of the provider
limit (a shared limiter in the store is future work, see docs/decisions.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from .clock import Clock, SystemClock
from .estimate import DEFAULT_OUTPUT_TOKENS, estimate_tokens

__all__ = ["RateLimitPolicy", "RateLimiter", "Throttled", "TokenReservation"]


@dataclass(frozen=True)
class RateLimitPolicy:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    window_s: float = 60.0


class TokenReservation:
    __slots__ = ("at", "live", "tokens")

    def __init__(self, at: float, tokens: int) -> None:
        self.at = at
        self.tokens = tokens
        self.live = True


class RateLimiter:
    def __init__(self, name: str, policy: RateLimitPolicy, clock: Clock | None = None) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock or SystemClock()
        self._entries: deque[TokenReservation] = deque()
        self._tokens = 0
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(policy.max_concurrency) if policy.max_concurrency else None
        self.waited_s = 0.0

    def _purge(self, now: float) -> None:
        horizon = now - self.policy.window_s
        while self._entries and self._entries[0].at <= horizon:
            old = self._entries.popleft()
            old.live = False
            self._tokens -= old.tokens

    def _wait_needed(self, now: float, tokens: int) -> float:
        rpm, tpm = self.policy.rpm, self.policy.tpm
        wait = 0.0
        if rpm is not None and len(self._entries) >= rpm:
            wait = self._entries[len(self._entries) - rpm].at + self.policy.window_s - now
        if tpm is not None and self._entries and self._tokens + tokens > tpm:
            # Wait until enough of the oldest entries leave the window.
            excess = self._tokens + tokens - tpm
            freed = 0
            for entry in self._entries:
                freed += entry.tokens
                if freed >= excess:
                    wait = max(wait, entry.at + self.policy.window_s - now)
                    break
        return max(0.0, wait)

    async def acquire(self, tokens: int) -> TokenReservation:
        async with self._lock:  # FIFO: asyncio.Lock wakes waiters in order
            while True:
                now = self.clock.now()
                self._purge(now)
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    entry = TokenReservation(now, tokens)
                    self._entries.append(entry)
                    self._tokens += tokens
                    return entry
                self.waited_s += wait
                await self.clock.sleep(wait + 1e-6)

    def wait_s(self, tokens: int = 0) -> float:
        """Seconds until one more request of ``tokens`` would fit; takes nothing."""
        now = self.clock.now()
        self._purge(now)
        return self._wait_needed(now, tokens)

    def try_acquire(self, tokens: int = 0) -> float:
        """Take capacity now and return 0, or take nothing and return the seconds to wait.

        The refusing form, for limits whose excess should be told to the caller rather
        than absorbed by waiting: an API key over its RPM gets a 429 with this wait as
        ``Retry-After`` instead of holding a server connection open.
        """
        wait = self.wait_s(tokens)
        if wait > 0:
            return wait
        now = self.clock.now()
        self._entries.append(TokenReservation(now, tokens))
        self._tokens += tokens
        return 0.0

    def correct(self, entry: TokenReservation, actual_tokens: int | None) -> None:
        """Replace the estimate by the reported usage (if still in the window).

        The entry's time also moves to now, the end of the call: the upstream counted the
        request when it *arrived*, somewhere between our start and now, so only a window
        measured from now is sure to have left the upstream's window too. Without this a
        client that queues requests behind a busy connection pool runs into 429s.
        """
        if entry.live:
            entry.at = max(entry.at, self.clock.now())
        if actual_tokens is None or actual_tokens == entry.tokens:
            return
        if entry.live:
            self._tokens += actual_tokens - entry.tokens
        entry.tokens = actual_tokens

    @property
    def slots(self) -> asyncio.Semaphore | None:
        return self._slots


class Throttled:
    """Acquire every limiter (model, API key) before the call; correct them after."""

    def __init__(
        self,
        inner: Provider,
        limiters: list[RateLimiter],
        *,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.limiters = limiters
        self.default_output_tokens = default_output_tokens

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def complete(self, request: CompletionRequest) -> Completion:
        if not self.limiters:
            return await self.inner.complete(request)
        estimate = estimate_tokens(request, self.default_output_tokens)
        acquired: list[asyncio.Semaphore] = []
        try:
            for limiter in self.limiters:
                if limiter.slots is not None:
                    await limiter.slots.acquire()
                    acquired.append(limiter.slots)
            entries = [await limiter.acquire(estimate) for limiter in self.limiters]
            actual: int | None = None
            try:
                completion = await self.inner.complete(request)
                usage = completion.usage
                if usage.input_tokens is not None and usage.output_tokens is not None:
                    actual = usage.input_tokens + usage.output_tokens
            finally:
                for limiter, entry in zip(self.limiters, entries, strict=True):
                    limiter.correct(entry, actual)
        finally:
            for slot in acquired:
                slot.release()
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
