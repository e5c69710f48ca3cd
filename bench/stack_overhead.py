"""Per-call overhead of the full model stack against a direct call to the same provider.

The upstream is in-process (the scripted provider, zero latency), so the difference is
the stack's own work: router, fallback, retry loop, breaker, budget, rate limiter and
the recording wrapper. Two stack variants are measured:

* ``stack_memory``: budget ledger and ledger rows kept in memory, the wrappers' cost alone;
* ``stack_sqlite``: budget reservations and ledger rows in SQLite (WAL), as a default
  project runs; that adds the store's transactions (a few per call).

Prints JSON with p50/p99 per call in milliseconds. Run: ``python bench/stack_overhead.py``.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from roadworthy.models import (
    Breaker,
    Budgeted,
    CallContext,
    CircuitBreaker,
    Fallback,
    Hop,
    RateLimiter,
    RateLimitPolicy,
    Recorded,
    Retrying,
    Router,
    Throttled,
)
from roadworthy.models import context as ctx
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message, Provider
from roadworthy.providers.pricing import Price
from roadworthy.store import CallRecord, Store
from roadworthy.store.budgets import BudgetLedger, BudgetLimit, Reservation

PRICE = Price(input=Decimal("0.15"), output=Decimal("0.6"))
REQUEST = CompletionRequest(
    messages=(Message("system", "Classify the ticket."), Message("user", "I was charged twice")),
    model="m",
    max_tokens=64,
)
LIMIT = BudgetLimit("bench", Decimal(1_000_000), "day")


class MemoryLedger:
    def reserve(self, limits: Any, amount: Decimal) -> Reservation:
        return Reservation((("bench", "p", 1),))

    def settle(self, reservation: Reservation, actual: Decimal | None) -> None:
        return None


def build(upstream: Provider, recorder: Any, ledger: Any) -> Router:
    leaf = Recorded(upstream, model_name="m", model_id="m", price=PRICE, recorder=recorder)
    limiter = RateLimiter("m", RateLimitPolicy(rpm=10**9, tpm=10**12, max_concurrency=64))
    stack = Retrying(
        Breaker(
            Budgeted(
                Throttled(leaf, [limiter]), ledger=ledger, price=PRICE, limits_for=lambda _: [LIMIT]
            ),
            CircuitBreaker("m"),
        )
    )
    return Router("bench", fallbacks=[Hop(stack, "m", price=PRICE)], deadline_s=60)


async def timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await call(REQUEST)
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 4),
    }


async def main(n: int = 5000, n_sqlite: int = 500) -> dict[str, Any]:
    upstream = ScriptedProvider([Reply(text='{"category": "billing"}')], name="inproc")
    rows: list[CallRecord] = []
    memory = build(upstream, rows.append, MemoryLedger())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        sqlite_stack = build(upstream, store.record_call, BudgetLedger(store.engine))
        token = ctx.call_context.set(CallContext(trace_id="bench", pipeline="bench"))
        await timed(upstream.complete, 200)  # warm up
        await timed(memory.complete, 200)
        direct = await timed(upstream.complete, n)
        stack = await timed(memory.complete, n)
        direct_small = await timed(upstream.complete, n_sqlite)
        sqlite = await timed(sqlite_stack.complete, n_sqlite)
        ctx.call_context.reset(token)
        store.close()
    d, s, q = summary(direct), summary(stack), summary(sqlite)
    return {
        "bench": "stack_overhead",
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "calls": {"memory": n, "sqlite": n_sqlite},
        "direct": d,
        "stack_memory": s,
        "stack_sqlite": q,
        "overhead_memory_p50_ms": round(s["p50_ms"] - d["p50_ms"], 4),
        "overhead_memory_p99_ms": round(s["p99_ms"] - d["p99_ms"], 4),
        "overhead_sqlite_p50_ms": round(q["p50_ms"] - summary(direct_small)["p50_ms"], 4),
        "target_p50_ms": 0.2,
        "meets_target": s["p50_ms"] - d["p50_ms"] < 0.2,
    }


if __name__ == "__main__":
    _ = Fallback  # the router builds one per call; imported to make that explicit
    print(json.dumps(asyncio.run(main(*(int(a) for a in sys.argv[1:]))), indent=2))
