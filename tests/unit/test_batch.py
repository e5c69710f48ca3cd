"""The batch contract without a network: planning within limits, line formats, the policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from roadworthy import errors
from roadworthy.jobs.batch import (
    BatchCanceled,
    BatchExpired,
    BatchLimits,
    BatchPoll,
    BatchSubmission,
    Outcome,
    backend_for,
    plan_batches,
    run_batch,
    run_batch_report,
)
from roadworthy.jobs.batch_anthropic import ANTHROPIC_LIMITS, AnthropicBatch
from roadworthy.jobs.batch_openai import OPENAI_LIMITS, OpenAIBatch
from roadworthy.providers import (
    AnthropicProvider,
    Completion,
    CompletionRequest,
    Message,
    OpenAIProvider,
    ResponseFormat,
    ScriptedProvider,
    Usage,
)
from roadworthy.testing import BatchOutcome, load_schedule


def req(i: int, model: str = "gpt-4o-mini", size: int = 0) -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("system", "be brief"), Message("user", f"q{i} " + "x" * size)),
        model=model,
        temperature=0.0,
        max_tokens=50,
    )


async def no_sleep(_: float) -> None:
    return None


def openai() -> OpenAIProvider:
    return OpenAIProvider(base_url="http://127.0.0.1:9/v1", api_key="k")


def anthropic() -> AnthropicProvider:
    return AnthropicProvider(base_url="http://127.0.0.1:9", api_key="k")


def test_documented_limits() -> None:
    assert (OPENAI_LIMITS.max_requests, OPENAI_LIMITS.max_bytes) == (50_000, 200_000_000)
    assert (ANTHROPIC_LIMITS.max_requests, ANTHROPIC_LIMITS.max_bytes) == (100_000, 256_000_000)


def test_openai_line_is_the_realtime_body() -> None:
    provider = openai()
    request = CompletionRequest(
        messages=(Message("user", "hi"),),
        model="gpt-4o-mini",
        response_format=ResponseFormat(schema={"type": "object"}),
    )
    line = OpenAIBatch(provider).encode("item-1", request)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "custom_id": "item-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": provider._payload(request),
    }


def test_anthropic_entry_is_the_realtime_params_and_ids_are_checked() -> None:
    provider = anthropic()
    backend = AnthropicBatch(provider)
    entry = backend.encode("item_1", req(1, "claude-3-5-haiku"))
    assert json.loads(entry[:-1]) == {
        "custom_id": "item_1",
        "params": provider._payload(req(1, "claude-3-5-haiku")),
    }
    with pytest.raises(ValueError, match="custom ids"):
        backend.encode("has space", req(1))


def test_plan_splits_by_count_and_bytes_and_by_model() -> None:
    backend = OpenAIBatch(openai(), limits=BatchLimits(max_requests=3, max_bytes=10_000))
    requests = [(f"a{i}", req(i)) for i in range(7)] + [("b0", req(0, "gpt-4o"))]
    planned, oversize = plan_batches(backend, requests)
    assert oversize == {}
    assert [[cid for cid, _ in chunk] for chunk in planned] == [
        ["a0", "a1", "a2"],
        ["a3", "a4", "a5"],
        ["a6"],
        ["b0"],
    ]
    line = len(backend.encode("a0", req(0)))
    by_bytes = OpenAIBatch(openai(), limits=BatchLimits(max_requests=100, max_bytes=2 * line + 1))
    planned, _ = plan_batches(by_bytes, [(f"a{i}", req(i)) for i in range(5)])
    assert [len(chunk) for chunk in planned] == [2, 2, 1]
    assert all(sum(len(b) for _, b in chunk) <= 2 * line + 1 for chunk in planned)


def test_plan_rejects_a_request_over_the_byte_limit_alone() -> None:
    backend = AnthropicBatch(anthropic(), limits=BatchLimits(max_requests=10, max_bytes=400))
    planned, oversize = plan_batches(
        backend, [("small", req(1, "claude-3-5-haiku")), ("big", req(2, "claude-3-5-haiku", 500))]
    )
    assert [[cid for cid, _ in chunk] for chunk in planned] == [["small"]]
    assert isinstance(oversize["big"], errors.BadRequest)


def test_backend_for_refuses_providers_without_a_batch_api() -> None:
    assert isinstance(backend_for(openai()), OpenAIBatch)
    assert isinstance(backend_for(anthropic()), AnthropicBatch)
    with pytest.raises(errors.ConfigError, match="no batch API"):
        backend_for(ScriptedProvider([]))


def test_openai_result_lines_map_into_the_taxonomy() -> None:
    backend = OpenAIBatch(openai())
    sub = BatchSubmission("openai", "batch_1", ("a", "b", "c", "d", "e"))
    r = req(1)
    ok = backend._outcome(
        {
            "custom_id": "a",
            "response": {
                "status_code": 200,
                "body": {
                    "id": "x",
                    "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
                },
            },
        },
        r,
        sub,
    )
    assert isinstance(ok, Completion) and ok.text == "hi" and ok.usage.input_tokens == 5
    limited = backend._outcome(
        {"response": {"status_code": 429, "body": {"error": {"message": "slow"}}}}, r, sub
    )
    assert isinstance(limited, errors.RateLimited) and limited.retryable
    too_long = backend._outcome(
        {"response": {"status_code": 400, "body": {"error": {"message": "maximum context"}}}},
        r,
        sub,
    )
    assert isinstance(too_long, errors.ContextTooLong) and not too_long.retryable
    expired = backend._outcome({"error": {"code": "batch_expired", "message": "x"}}, r, sub)
    assert isinstance(expired, BatchExpired) and expired.retryable
    cancelled = backend._outcome({"error": {"code": "batch_cancelled"}}, r, sub)
    assert isinstance(cancelled, BatchCanceled)
    assert isinstance(backend._outcome({"custom_id": "e"}, r, sub), errors.MalformedResponse)


def test_anthropic_results_map_into_the_taxonomy() -> None:
    backend = AnthropicBatch(anthropic())
    sub = BatchSubmission("anthropic", "msgbatch_1", ("a",))
    r = req(1, "claude-3-5-haiku")
    message = {
        "id": "msg_1",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 1, "cache_read_input_tokens": 6},
    }
    ok = backend._outcome({"type": "succeeded", "message": message}, r, sub)
    assert isinstance(ok, Completion) and ok.usage.input_tokens == 10
    nested = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert isinstance(
        backend._outcome({"type": "errored", "error": nested}, r, sub),
        errors.ProviderUnavailable,
    )
    flat = {"type": "invalid_request_error", "message": "bad"}
    assert isinstance(
        backend._outcome({"type": "errored", "error": flat}, r, sub), errors.BadRequest
    )
    assert isinstance(backend._outcome({"type": "expired"}, r, sub), BatchExpired)
    assert isinstance(backend._outcome({"type": "canceled"}, r, sub), BatchCanceled)
    assert isinstance(backend._outcome({"type": "??"}, r, sub), errors.MalformedResponse)


class MemoryBackend:
    """A batch API in memory: each round's outcomes come from a script per custom id."""

    name = "memory"
    limits = BatchLimits(max_requests=2, max_bytes=10_000)
    one_model_per_batch = False

    def __init__(self, script: dict[str, list[str]], polls: int = 1) -> None:
        self.script = script  # custom id -> outcome per round: ok | retry | bad
        self.polls = polls
        self.submitted: list[tuple[str, ...]] = []
        self.polled = 0
        self.cancelled: list[str] = []
        self.realtime: list[str] = []

    def encode(self, custom_id: str, request: CompletionRequest) -> bytes:
        return custom_id.encode() + b"\n"

    async def submit(
        self, entries: Sequence[tuple[str, bytes]], *, round: int, token: str | None = None
    ) -> BatchSubmission:
        ids = tuple(cid for cid, _ in entries)
        self.submitted.append(ids)
        return BatchSubmission(self.name, f"b{len(self.submitted)}", ids, round)

    async def poll(self, submission: BatchSubmission) -> BatchPoll:
        self.polled += 1
        return BatchPoll("ended" if self.polled % self.polls == 0 else "running", False)

    async def fetch(
        self,
        submission: BatchSubmission,
        poll: BatchPoll,
        requests: Mapping[str, CompletionRequest],
    ) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for cid in submission.custom_ids:
            what = self.script[cid][submission.round - 1]
            if what == "ok":
                out[cid] = Completion(f"{cid}@{submission.round}", "stop", Usage(1, 1), "m", "x")
            elif what == "retry":
                out[cid] = BatchExpired("expired", provider="memory")
            elif what == "bad":
                out[cid] = errors.BadRequest("bad", provider="memory")
        return out

    async def cancel(self, submission: BatchSubmission) -> None:
        self.cancelled.append(submission.batch_id)

    async def complete(self, request: CompletionRequest) -> Completion:
        self.realtime.append(request.messages[-1].content)
        return Completion("realtime", "stop", Usage(1, 1), "m", "x")


class DonePoll(MemoryBackend):
    async def poll(self, submission: BatchSubmission) -> BatchPoll:
        self.polled += 1
        return BatchPoll("ended", self.polled % self.polls == 0)


def requests(n: int) -> list[tuple[str, CompletionRequest]]:
    return [(f"r{i}", req(i)) for i in range(n)]


async def test_resubmits_only_retryable_failures_up_to_the_limit() -> None:
    backend = DonePoll(
        {"r0": ["ok"], "r1": ["retry", "ok"], "r2": ["bad"], "r3": ["retry", "retry", "retry"]}
    )
    report = await run_batch_report(
        requests(4), backend, max_resubmissions=2, sleep=no_sleep, on_error="resubmit"
    )
    out = report.outcomes
    assert isinstance(out["r0"], Completion)
    assert isinstance(out["r1"], Completion) and out["r1"].text == "r1@2"
    assert isinstance(out["r2"], errors.BadRequest)
    assert isinstance(out["r3"], BatchExpired)
    assert report.resubmitted == {"r1": 1, "r3": 2}
    assert backend.submitted == [("r0", "r1"), ("r2", "r3"), ("r1", "r3"), ("r3",)]


async def test_fail_policy_returns_errors_and_realtime_policy_falls_back() -> None:
    script = {"r0": ["ok"], "r1": ["retry"], "r2": ["bad"]}
    out = await run_batch(requests(3), DonePoll(script), on_error="fail", sleep=no_sleep)
    assert isinstance(out["r1"], BatchExpired) and isinstance(out["r2"], errors.BadRequest)

    backend = DonePoll(script)
    report = await run_batch_report(requests(3), backend, on_error="realtime", sleep=no_sleep)
    assert isinstance(report.outcomes["r1"], Completion)
    assert report.outcomes["r1"].text == "realtime"
    assert report.realtime == ["r1"]  # a bad request is not worth a second try
    assert isinstance(report.outcomes["r2"], errors.BadRequest)


async def test_polling_is_bounded_and_a_stuck_batch_is_cancelled() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backend = DonePoll({"r0": ["ok"]}, polls=1000)
    out = await run_batch(
        requests(1), backend, on_error="fail", sleep=sleep, max_polls=4, poll_interval_s=7.0
    )
    assert isinstance(out["r0"], BatchExpired)
    assert backend.cancelled == ["b1"]
    assert slept == [7.0, 7.0, 7.0]


async def test_every_custom_id_gets_an_outcome_and_ids_must_be_unique() -> None:
    backend = DonePoll({"r0": ["ok"], "r1": ["missing"]})
    out = await run_batch(requests(2), backend, on_error="fail", sleep=no_sleep)
    assert isinstance(out["r1"], errors.MalformedResponse)
    with pytest.raises(ValueError, match="twice"):
        await run_batch([("a", req(1)), ("a", req(2))], backend, sleep=no_sleep)
    with pytest.raises(ValueError, match="on_error"):
        await run_batch(requests(1), backend, on_error="maybe")  # type: ignore[arg-type]


class FlakyFetch(DonePoll):
    """The results download fails once with a 503: fetch again, never resubmit."""

    fetches = 0

    async def fetch(
        self,
        submission: BatchSubmission,
        poll: BatchPoll,
        requests: Mapping[str, CompletionRequest],
    ) -> dict[str, Outcome]:
        self.fetches += 1
        if self.fetches == 1:
            raise errors.ProviderUnavailable("download failed", provider="memory")
        return await super().fetch(submission, poll, requests)


async def test_a_failed_download_is_fetched_again_not_resubmitted() -> None:
    backend = FlakyFetch({"r0": ["ok"]})
    report = await run_batch_report(requests(1), backend, sleep=no_sleep)
    assert isinstance(report.outcomes["r0"], Completion)
    assert backend.submitted == [("r0",)] and backend.fetches == 2
    assert report.resubmitted == {}


def test_schedule_files_name_batch_outcomes(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("batches:\n  - {status: expired, finished: 2}\n  - {polls: 3}\n")
    options = load_schedule(schedule)
    assert options["batch_outcomes"] == [
        BatchOutcome.expired(finished=2),
        BatchOutcome.completed(polls=3),
    ]
    schedule.write_text("batches:\n  - {status: lost}\n")
    with pytest.raises(ValueError, match="batch status"):
        load_schedule(schedule)


async def test_resumed_batches_are_polled_not_submitted_and_hooks_hear_each_step() -> None:
    from roadworthy.jobs.batch import BatchHooks, BatchResult

    backend = DonePoll({"r0": ["ok"], "r1": ["ok"], "r2": ["retry", "ok"]})
    earlier = BatchSubmission("memory", "old-1", ("r0", "r1"), 1)
    submitted: list[BatchSubmission] = []
    fetched: list[BatchResult] = []
    report = await run_batch_report(
        requests(3),
        backend,
        sleep=no_sleep,
        resume=[earlier],
        hooks=BatchHooks(submitted=submitted.append, fetched=fetched.append),
    )
    # only r2 was never in a batch; its retry is the second round
    assert backend.submitted == [("r2",), ("r2",)]
    assert [s.custom_ids for s in submitted] == [("r2",), ("r2",)]
    assert [s.round for s in submitted] == [1, 2]
    assert {r.submission.batch_id for r in fetched} == {"old-1", "b1", "b2"}
    assert all(isinstance(report.outcomes[c], Completion) for c in ("r0", "r1", "r2"))
    with pytest.raises(ValueError, match="no request"):
        await run_batch_report(
            requests(1), backend, sleep=no_sleep, resume=[BatchSubmission("m", "x", ("zz",))]
        )
