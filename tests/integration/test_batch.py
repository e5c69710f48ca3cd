"""Provider batch APIs end to end against the fault-injecting upstream over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from roadworthy import errors
from roadworthy.jobs.batch import BatchExpired, BatchLimits, run_batch, run_batch_report
from roadworthy.models.context import CallContext
from roadworthy.providers import (
    AnthropicProvider,
    Completion,
    CompletionRequest,
    Message,
    OpenAIProvider,
    builtin_price,
    call_cost,
)
from roadworthy.providers.base import Usage
from roadworthy.store.store import Store
from roadworthy.testing import BatchOutcome, Fault, FaultServer

pytestmark = pytest.mark.integration

KEY = "sk-batch-test-key"


async def no_sleep(_: float) -> None:
    return None


def req(i: int, model: str = "gpt-4o-mini") -> CompletionRequest:
    return CompletionRequest(messages=(Message("user", f"question {i}"),), model=model)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store.open(sqlite_url)
    yield s
    s.close()


def header(request: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in request["headers"].items() if k.lower() == name), None)


def jsonl(server: FaultServer, file_id: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.files[file_id].decode().splitlines()]


async def test_openai_batch_with_failures_resubmitted(store: Store) -> None:
    schedule = [
        Fault.ok("zero"),
        Fault.status(503),  # retryable: resubmitted
        Fault.context_length(),  # not retryable: returned as is
        Fault.status(429),  # retryable: resubmitted
        Fault.ok("one again"),  # round 2, for q1
        Fault.ok("three again"),  # round 2, for q3
    ]
    with FaultServer(schedule) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        contexts = {f"item-{i}": CallContext(f"trace{i}", item_id=f"item-{i}") for i in range(4)}
        report = await run_batch_report(
            [(f"item-{i}", req(i)) for i in range(4)],
            provider,
            sleep=no_sleep,
            store=store,
            contexts=contexts,
        )
        await provider.aclose()

        out = report.outcomes
        texts = {cid: o.text for cid, o in out.items() if isinstance(o, Completion)}
        assert texts == {"item-0": "zero", "item-1": "one again", "item-3": "three again"}
        assert isinstance(out["item-2"], errors.ContextTooLong)
        assert report.resubmitted == {"item-1": 1, "item-3": 1}
        assert [b.status for b in report.batches] == ["completed", "completed"]

        # What went over the wire: a JSONL file with purpose=batch, then a batch on it.
        uploads = [r for r in server.requests if r["path"] == "/v1/files"]
        creates = [r for r in server.requests if r["path"] == "/v1/batches"]
        assert [u["json"]["purpose"] for u in uploads] == ["batch", "batch"]
        assert header(uploads[0], "authorization") == f"Bearer {KEY}"
        token = creates[0]["json"]["metadata"]["roadworthy_submission"]
        assert creates[0]["json"] == {
            "input_file_id": uploads[0]["file"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"roadworthy_submission": token},  # to find it if the answer is lost
        }
        assert re.fullmatch("[0-9a-f]{32}", token)
        assert creates[1]["json"]["metadata"]["roadworthy_submission"] != token
        lines = jsonl(server, uploads[0]["file"])
        assert [line["custom_id"] for line in lines] == [f"item-{i}" for i in range(4)]
        assert lines[0] == {
            "custom_id": "item-0",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": provider._payload(req(0)),
        }
        assert [line["custom_id"] for line in jsonl(server, uploads[1]["file"])] == [
            "item-1",
            "item-3",
        ]

    rows = {(r["item_id"], r["attempt"]): r for r in store.list_calls(limit=100)}
    assert len(rows) == 6  # one ledger row per result, resubmissions included
    assert all(r["hop_reason"] == "batch" and r["cache_outcome"] == "miss" for r in rows.values())
    assert rows[("item-1", 1)]["status"] == "error"
    assert rows[("item-1", 1)]["error_class"] == "ProviderUnavailable"
    assert Decimal(rows[("item-1", 1)]["cost_usd"]) == 0
    ok = rows[("item-0", 1)]
    assert ok["status"] == "ok" and ok["trace_id"] == "trace0"
    full = call_cost(Usage(12, 3), builtin_price("gpt-4o-mini"))
    assert full is not None
    assert Decimal(ok["cost_usd"]) == full / 2  # the batch discount
    assert rows[("item-3", 2)]["status"] == "ok"


async def test_openai_expired_batch_falls_back_to_realtime(store: Store) -> None:
    with FaultServer([Fault.ok("batched"), Fault.status(400)]) as server:
        server.push_batch(BatchOutcome.expired(finished=2, polls=3))
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        report = await run_batch_report(
            [(f"r{i}", req(i)) for i in range(4)],
            provider,
            on_error="realtime",
            sleep=no_sleep,
            store=store,
        )
        await provider.aclose()
        batch = server.batches[report.batches[0].submission.batch_id]
        assert batch.status == "expired" and batch.output_file_id and batch.error_file_id
        expired = [r for r in jsonl(server, batch.error_file_id) if r["error"]]
        assert [r["custom_id"] for r in expired] == ["r2", "r3"]
        realtime_calls = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
        assert len(realtime_calls) == 2

    out = report.outcomes
    assert isinstance(out["r0"], Completion) and out["r0"].text == "batched"
    assert isinstance(out["r1"], errors.BadRequest)  # a bad request never goes again
    assert sorted(report.realtime) == ["r2", "r3"]
    assert isinstance(out["r2"], Completion) and isinstance(out["r3"], Completion)
    rows = store.list_calls(limit=100)
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["hop_reason"]] = by_reason.get(row["hop_reason"], 0) + 1
    assert by_reason == {"batch": 4, "batch_fallback": 2}
    fallback = next(r for r in rows if r["hop_reason"] == "batch_fallback")
    assert Decimal(fallback["cost_usd"]) == call_cost(Usage(12, 3), builtin_price("gpt-4o-mini"))
    expired_rows = [r for r in rows if r["error_class"] == "BatchExpired"]
    assert len(expired_rows) == 2


async def test_openai_limits_split_into_several_batches() -> None:
    with FaultServer() as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        requests = [(f"r{i}", req(i)) for i in range(5)] + [("other", req(9, "gpt-4o"))]
        report = await run_batch_report(
            requests, provider, sleep=no_sleep, limits=BatchLimits(max_requests=2, max_bytes=10**6)
        )
        await provider.aclose()
        sizes = [len(jsonl(server, r["file"])) for r in server.requests if r["path"] == "/v1/files"]
    assert sizes == [2, 2, 1, 1]
    assert all(isinstance(o, Completion) for o in report.outcomes.values())
    assert len(report.outcomes) == 6


async def test_openai_failed_validation_is_not_resubmitted() -> None:
    with FaultServer() as server:
        server.push_batch(BatchOutcome.failed("bad line 1"))
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        out = await run_batch([("a", req(1)), ("b", req(2))], provider, sleep=no_sleep)
        await provider.aclose()
        assert len([r for r in server.requests if r["path"] == "/v1/batches"]) == 1
    assert all(isinstance(o, errors.BadRequest) for o in out.values())
    assert "bad line 1" in str(out["a"])


async def test_stuck_batch_is_cancelled_after_max_polls() -> None:
    with FaultServer() as server:
        server.push_batch(BatchOutcome.completed(polls=100))
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        out = await run_batch(
            [("a", req(1))], provider, sleep=no_sleep, max_polls=3, on_error="fail"
        )
        await provider.aclose()
        (batch,) = server.batches.values()
        assert batch.status == "cancelled"
    assert isinstance(out["a"], BatchExpired)


async def test_anthropic_batch_end_to_end(store: Store) -> None:
    schedule = [Fault.ok("a"), Fault.status(529), Fault.status(400), Fault.ok("b again")]
    with FaultServer(schedule) as server:
        provider = AnthropicProvider(base_url=server.url, api_key=KEY)
        requests = [(f"r{i}", req(i, "claude-3-5-haiku")) for i in range(3)]
        report = await run_batch_report(requests, provider, sleep=no_sleep, store=store)
        await provider.aclose()
        creates = [r for r in server.requests if r["path"] == "/v1/messages/batches"]
        assert header(creates[0], "x-api-key") == KEY
        assert creates[0]["json"]["requests"][0] == {
            "custom_id": "r0",
            "params": provider._payload(req(0, "claude-3-5-haiku")),
        }
        assert [r["custom_id"] for r in creates[1]["json"]["requests"]] == ["r1"]

    out = report.outcomes
    assert isinstance(out["r0"], Completion) and out["r0"].text == "a"
    assert isinstance(out["r1"], Completion) and out["r1"].text == "b again"
    assert isinstance(out["r2"], errors.BadRequest)
    assert [b.status for b in report.batches] == ["ended", "ended"]
    rows = store.list_calls(limit=100)
    assert len(rows) == 4 and {r["hop_reason"] for r in rows} == {"batch"}
    ok = next(r for r in rows if r["status"] == "ok")
    full = call_cost(Usage(12, 3), builtin_price("claude-3-5-haiku"))
    assert full is not None and Decimal(ok["cost_usd"]) == full / 2


async def test_a_create_whose_answer_is_lost_is_found_not_sent_twice() -> None:
    """The provider created the batch but the answer never came (a 504): the batch is
    looked up by its token and polled; the requests are not sent (and billed) again."""
    with FaultServer() as server:
        server.lose_created = 1
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        report = await run_batch_report([("a", req(1)), ("b", req(2))], provider, sleep=no_sleep)
        await provider.aclose()
        assert len(server.batches) == 1 and server.lose_created == 0
    assert all(isinstance(o, Completion) for o in report.outcomes.values())
    assert report.resubmitted == {}


async def test_a_create_refused_is_not_looked_for() -> None:
    with FaultServer() as server:
        # the upload, the create refused, and a fault a lookup would have taken
        server.push_control(Fault.ok(), Fault.status(400), Fault.status(500))
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        report = await run_batch_report([("a", req(1))], provider, sleep=no_sleep)
        await provider.aclose()
        assert server.batches == {} and len(server.control_faults) == 1
    assert isinstance(report.outcomes["a"], errors.BadRequest)


async def test_transient_failures_of_the_batch_endpoints_themselves() -> None:
    with FaultServer() as server:
        server.push_control(
            Fault.status(503),  # the first upload: the round fails, the request is resubmitted
            Fault.ok(),  # the second upload
            Fault.ok(),  # the batch create
            Fault.status(502),  # the first poll: polled again, not resubmitted
            Fault.ok(),  # validating -> in_progress
            Fault.ok(),  # in_progress (one poll)
            Fault.ok(),  # -> completed
            Fault.status(500),  # the output download: fetched again, not resubmitted
        )
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key=KEY)
        report = await run_batch_report([("a", req(1))], provider, sleep=no_sleep)
        await provider.aclose()
        assert len(server.batches) == 1 and not server.control_faults
    assert isinstance(report.outcomes["a"], Completion)
    assert report.resubmitted == {"a": 1}
