"""Time as a dependency, so breakers, backoff and rate limits are testable without sleeping.

Every wrapper that waits or measures takes a :class:`Clock`. Production uses
:class:`SystemClock` (monotonic time, ``asyncio.sleep``); tests use :class:`FakeClock`,
whose ``sleep`` advances time instantly, so "the breaker half-opens after 30 s" is checked
in microseconds and never flakes on a loaded machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to or when someone sleeps on it.

    ``sleeps`` keeps every requested wait, so tests can assert on backoff schedules.
    ``sleep`` still yields to the event loop once, so concurrent tasks interleave.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)
