"""Throughput against an upstream that enforces its own RPM/TPM limits.

The fake upstream (``roadworthy.testing.FaultServer``) answers 429 with Retry-After when a
client goes over its limits. To keep a run under a minute the limits are scaled up and the
window down (requests and tokens per ``WINDOW_S`` seconds instead of per minute); the
behaviour is the same. Two clients send the same work with the same concurrency:

* ``stack``: the model stack, whose limiter reserves capacity before each call and waits;
* ``naive``: the bare provider plus a retry loop that honours Retry-After (what a client
  without a limiter does), as the peer.

Reported: achieved request rate as a share of the limit, and the share of requests the
upstream answered with 429. Targets: ≥ 95% of the limit with < 1% 429s.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from typing import Any

from roadworthy import errors
from roadworthy.models import (
    RateLimiter,
    RateLimitPolicy,
    Recorded,
    Retrying,
    RetryPolicy,
    Throttled,
)
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.providers.openai import OpenAIProvider
from roadworthy.testing import FaultServer, UpstreamLimits

WINDOW_S = 4.0
RPM = 240  # requests per window
TPM = 120_000  # tokens per window
CONCURRENCY = 8
REQUEST = CompletionRequest(
    messages=(Message("user", "Classify this ticket: I was charged twice " * 4),),
    model="m",
    max_tokens=100,
)


async def drive(client: Any, seconds: float) -> int:
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            try:
                await client.complete(REQUEST)
                done += 1
            except errors.RoadworthyError:
                pass

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


async def run(kind: str, windows: int) -> dict[str, Any]:
    limits = UpstreamLimits(rpm=RPM, tpm=TPM, window_s=WINDOW_S)
    with FaultServer(limits=limits, keep_requests=False) as server:
        provider = OpenAIProvider(
            name="fake", base_url=server.url + "/v1", api_key="k", json_mode="json_object"
        )
        leaf = Recorded(provider, model_name="m", model_id="m")
        retry = RetryPolicy(max_attempts=50, base_delay_s=0.05, max_delay_s=1, deadline_s=60)
        if kind == "stack":
            # Exactly the upstream's limits; the limiter dates each request at its end.
            policy = RateLimitPolicy(rpm=RPM, tpm=TPM, window_s=WINDOW_S)
            client: Any = Retrying(Throttled(leaf, [RateLimiter("m", policy)]), retry)
        else:
            client = Retrying(leaf, retry)
        start = time.monotonic()
        done = await drive(client, windows * WINDOW_S)
        elapsed = time.monotonic() - start
        await provider.aclose()
        total = sum(server.served.values())
    limit_rate = RPM / WINDOW_S
    return {
        "ok_requests": done,
        "upstream_requests": total,
        "upstream_429s": server.limited,
        "share_429": round(server.limited / total, 4) if total else 0.0,
        "achieved_rps": round(done / elapsed, 2),
        "limit_rps": limit_rate,
        "share_of_limit": round(done / elapsed / limit_rate, 4),
    }


async def main(windows: int = 6) -> dict[str, Any]:
    stack = await run("stack", windows)
    naive = await run("naive", windows)
    return {
        "bench": "rate_limits",
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "limits": {"requests": RPM, "tokens": TPM, "window_s": WINDOW_S},
        "concurrency": CONCURRENCY,
        "windows": windows,
        "stack": stack,
        "naive_retry_after": naive,
        "targets": {"share_of_limit": 0.95, "share_429": 0.01},
        "meets_target": stack["share_of_limit"] >= 0.95 and stack["share_429"] < 0.01,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*(int(a) for a in sys.argv[1:]))), indent=2))
