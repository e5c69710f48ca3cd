"""Each model-stack wrapper alone, on the scripted provider, with a fake clock."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from roadworthy import errors
from roadworthy.models import (
    Breaker,
    BreakerPolicy,
    CallContext,
    CircuitBreaker,
    FakeClock,
    Fallback,
    Hop,
    RateLimiter,
    RateLimitPolicy,
    Recorded,
    Retrying,
    RetryPolicy,
    Throttled,
)
from roadworthy.models import context as ctx
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.providers.pricing import Price
from roadworthy.store import CallRecord

REQ = CompletionRequest(messages=(Message("user", "hello there"),), model="m", max_tokens=10)
PRICE = Price(input=Decimal(1), output=Decimal(2))


def leaf(
    replies: list[Reply], rows: list[CallRecord] | None = None, name: str = "a", **kw: object
) -> Recorded:
    return Recorded(
        ScriptedProvider(replies, name=f"p-{name}"),
        model_name=name,
        model_id=f"id-{name}",
        tier="small",
        price=PRICE,
        recorder=rows.append if rows is not None else None,
        **kw,  # type: ignore[arg-type]
    )


# -- Recorded ---------------------------------------------------------------------------


async def test_recorded_writes_one_row_per_call_with_cost_only_when_billed() -> None:
    rows: list[CallRecord] = []
    stack = leaf(
        [
            Reply(error="RateLimited", times=1),
            Reply(error="Timeout", times=1),
            Reply(text="ok", input_tokens=100, output_tokens=10),
        ],
        rows,
    )
    with ctx.bind(ctx.call_context, CallContext(trace_id="t1", pipeline="p", step="s")):
        for _ in range(2):
            with pytest.raises(errors.ProviderError):
                await stack.complete(REQ)
        completion = await stack.complete(REQ)
    assert completion.text == "ok"
    assert [r.status for r in rows] == ["error", "error", "ok"]
    assert [r.error_class for r in rows] == ["RateLimited", "Timeout", None]
    assert rows[0].cost_usd == 0  # a 429 is not billed
    assert rows[1].cost_usd is None  # a timeout may have been: unknown, not 0
    assert rows[2].cost_usd == (100 * 1 + 10 * 2) / Decimal(1_000_000)
    assert {r.trace_id for r in rows} == {"t1"} and rows[2].model == "id-a"


async def test_recorded_uses_the_model_variant_when_there_is_one() -> None:
    provider = ScriptedProvider([Reply(text="x")], name="p")
    stack = Recorded(provider, model_name="a", model_id="id-a")
    variant = CompletionRequest(messages=(Message("user", "variant for a"),), model="")
    with ctx.bind(ctx.request_for_model, lambda name: variant if name == "a" else None):
        await stack.complete(REQ)
    assert provider.requests[0].messages[0].content == "variant for a"
    assert provider.requests[0].model == "id-a"


# -- Retrying ---------------------------------------------------------------------------


async def test_retry_backs_off_with_full_jitter_and_honours_retry_after() -> None:
    rows: list[CallRecord] = []
    clock = FakeClock()
    stack = Retrying(
        leaf(
            [
                Reply(error="ProviderUnavailable", times=1),
                Reply(error="RateLimited", retry_after=7.0, times=1),
                Reply(text="ok"),
            ],
            rows,
        ),
        RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=4.0, deadline_s=60),
        clock=clock,
        rng=random.Random(1),
    )
    assert (await stack.complete(REQ)).text == "ok"
    assert [r.attempt for r in rows] == [1, 2, 3]
    assert 0 <= clock.sleeps[0] < 1.0  # full jitter in [0, base)
    assert clock.sleeps[1] >= 7.0  # Retry-After is a floor


@pytest.mark.parametrize("error", ["BadRequest", "AuthFailed", "ContentFiltered", "ContextTooLong"])
async def test_never_retries_what_cannot_succeed(error: str) -> None:
    rows: list[CallRecord] = []
    stack = Retrying(
        leaf([Reply(error=error)], rows), RetryPolicy(max_attempts=5), clock=FakeClock()
    )
    with pytest.raises(errors.ProviderError):
        await stack.complete(REQ)
    assert len(rows) == 1


async def test_attempts_never_exceed_the_maximum_and_nested_loops_do_not_multiply() -> None:
    rows: list[CallRecord] = []
    clock = FakeClock()
    inner = Retrying(leaf([Reply(error="Timeout")], rows), RetryPolicy(max_attempts=3), clock=clock)
    outer = Retrying(inner, RetryPolicy(max_attempts=3, deadline_s=None), clock=clock)
    with pytest.raises(errors.Timeout):
        await outer.complete(REQ)
    assert len(rows) == 3  # not 9


async def test_retry_stops_at_the_deadline_instead_of_waiting_past_it() -> None:
    rows: list[CallRecord] = []
    clock = FakeClock()
    stack = Retrying(
        leaf([Reply(error="RateLimited", retry_after=30.0)], rows),
        RetryPolicy(max_attempts=5, deadline_s=10.0),
        clock=clock,
    )
    with pytest.raises(errors.RateLimited):
        await stack.complete(REQ)
    assert len(rows) == 1 and clock.sleeps == []


async def test_retry_propagates_the_remaining_deadline_as_timeout() -> None:
    provider = ScriptedProvider([Reply(error="Timeout", times=1), Reply(text="ok")], name="p")
    clock = FakeClock()
    stack = Retrying(
        Recorded(provider, model_name="a", model_id="a"),
        RetryPolicy(max_attempts=2, base_delay_s=2.0, deadline_s=10.0),
        clock=clock,
        rng=random.Random(3),
    )
    await stack.complete(REQ)
    first, second = (r.timeout_s for r in provider.requests)
    assert first == pytest.approx(10.0)
    assert second == pytest.approx(10.0 - clock.sleeps[0])


# -- Breaker ----------------------------------------------------------------------------


async def test_breaker_opens_skips_half_opens_and_closes_on_schedule() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "a", BreakerPolicy(failure_rate=0.5, min_calls=4, window_s=60, open_s=30), clock
    )
    provider = ScriptedProvider([Reply(error="ProviderUnavailable", times=4), Reply(text="ok")])
    stack = Breaker(Recorded(provider, model_name="a", model_id="a"), breaker)
    for _ in range(4):
        with pytest.raises(errors.ProviderUnavailable):
            await stack.complete(REQ)
    assert breaker.state == "open" and not breaker.healthy()
    with pytest.raises(errors.CircuitOpen):
        await stack.complete(REQ)
    assert len(provider.requests) == 4  # skipped without calling
    clock.advance(29.9)
    assert breaker.state == "open"
    clock.advance(0.2)
    assert breaker.state == "half_open" and breaker.healthy()
    assert (await stack.complete(REQ)).text == "ok"
    assert breaker.state == "closed"
    assert [s for _, s in breaker.transitions] == ["open", "half_open", "closed"]


async def test_breaker_half_open_probe_failure_reopens_and_ignores_bad_requests() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", BreakerPolicy(min_calls=2, open_s=5), clock)
    provider = ScriptedProvider(
        [Reply(error="BadRequest", times=5), Reply(error="Timeout", times=3), Reply(text="ok")]
    )
    stack = Breaker(Recorded(provider, model_name="a", model_id="a"), breaker)
    for _ in range(5):
        with pytest.raises(errors.BadRequest):
            await stack.complete(REQ)
    assert breaker.state == "closed"  # the request's fault, not the model's
    for _ in range(2):
        with pytest.raises(errors.Timeout):
            await stack.complete(REQ)
    assert breaker.state == "open"
    clock.advance(5)
    with pytest.raises(errors.Timeout):
        await stack.complete(REQ)  # the probe fails
    assert breaker.state == "open"


# -- Throttled --------------------------------------------------------------------------


async def test_rate_limiter_waits_for_capacity_and_corrects_from_usage() -> None:
    clock = FakeClock()
    limiter = RateLimiter("a", RateLimitPolicy(rpm=2, tpm=10_000), clock)
    stack = Throttled(leaf([Reply(text="ok", input_tokens=5, output_tokens=5)]), [limiter])
    start = clock.now()
    for _ in range(3):
        await stack.complete(REQ)
    assert clock.now() - start == pytest.approx(60.0, abs=0.01)  # the third waited a window
    assert limiter._tokens == 10  # the estimates were replaced by reported usage


async def test_rate_limiter_tpm_reserves_the_estimate_before_the_call() -> None:
    clock = FakeClock()
    limiter = RateLimiter("a", RateLimitPolicy(tpm=40), clock)
    first = await limiter.acquire(30)
    await limiter.acquire(30)  # did not fit: waited for the first to leave the window
    assert clock.now() >= first.at + 60


# -- Fallback ---------------------------------------------------------------------------


async def test_fallback_hops_on_its_triggers_and_records_depth_and_reason() -> None:
    rows: list[CallRecord] = []
    chain = Fallback(
        [
            Hop(leaf([Reply(error="RateLimited")], rows, "a"), "a"),
            Hop(
                leaf([Reply(error="ProviderUnavailable")], rows, "b"),
                "b",
                on=frozenset({"Timeout"}),
            ),
            Hop(leaf([Reply(text="ok")], rows, "c"), "c"),
        ]
    )
    assert (await chain.complete(REQ)).text == "ok"
    assert [(r.model_name, r.fallback_depth, r.hop_reason) for r in rows] == [
        ("a", 0, None),
        ("c", 2, "RateLimited"),  # b only takes over on timeouts
    ]


async def test_fallback_never_hops_on_a_bad_request() -> None:
    rows: list[CallRecord] = []
    chain = Fallback(
        [
            Hop(leaf([Reply(error="AuthFailed")], rows, "a"), "a"),
            Hop(leaf([Reply(text="ok")], rows, "b"), "b"),
        ]
    )
    with pytest.raises(errors.AuthFailed):
        await chain.complete(REQ)
    assert len(rows) == 1


async def test_context_too_long_goes_to_a_larger_window() -> None:
    rows: list[CallRecord] = []
    chain = Fallback(
        [
            Hop(leaf([Reply(error="ContextTooLong")], rows, "a"), "a", context_window=2000),
            Hop(leaf([Reply(text="small")], rows, "b"), "b", context_window=1000),
            Hop(leaf([Reply(text="big")], rows, "c"), "c", context_window=100_000),
        ]
    )
    assert (await chain.complete(REQ)).text == "big"
    assert [r.model_name for r in rows] == ["a", "c"]


async def test_a_hop_that_cannot_hold_the_request_is_skipped_before_sending() -> None:
    rows: list[CallRecord] = []
    big = CompletionRequest(messages=(Message("user", "word " * 3000),), model="m")
    chain = Fallback(
        [
            Hop(leaf([Reply(text="a")], rows, "a"), "a", context_window=512),
            Hop(leaf([Reply(text="b")], rows, "b"), "b", context_window=32_000),
        ]
    )
    assert (await chain.complete(big)).text == "b"
    assert [r.model_name for r in rows] == ["b"]
