"""The pipeline runner on the scripted provider: statuses, cost, batches, resume, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace, run_file
from roadworthy.providers import Reply, ScriptedProvider

from ..conftest import SCRIPTED_CONFIG, write_project

GOOD = {"category": "billing", "priority": "high"}


def workspace(root: Path, replies: list[Reply]) -> tuple[Workspace, ScriptedProvider]:
    provider = ScriptedProvider(replies, name="fake")
    return Workspace(load_project(root), providers={"fake": provider}), provider


async def test_done_item_records_call_with_tokens_and_cost(scripted_project: Path) -> None:
    ws, provider = workspace(
        scripted_project,
        [Reply(text=GOOD, input_tokens=1000, output_tokens=200, cached_read_tokens=400)],
    )
    result = await ws.pipeline("triage").run({"text": "charged twice"})
    assert result.status == "done"
    assert result.output == GOOD
    assert provider.requests[0].messages[1].content == "Ticket: charged twice"
    (call,) = ws.store.list_calls()
    assert (call["input_tokens"], call["output_tokens"], call["cached_read_tokens"]) == (
        1000,
        200,
        400,
    )
    # gpt-4o-mini: $0.15/M input, $0.075/M cached input, $0.60/M output
    expected = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 200 * Decimal("0.60")) / 1_000_000
    assert Decimal(str(call["cost_usd"])) == expected
    assert call["status"] == "ok" and call["trace_id"] == result.trace_id
    assert call["prompt_id"] == "triage" and call["tier"] == "small"
    item = ws.store.get_item(result.item_id or "")
    assert item is not None and item["status"] == "done" and item["output"] == GOOD


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({}, "missing_field", "text"),
        ({"text": 42}, "wrong_type", "text"),
        ({"text": "   "}, "empty", "text"),
        ({"text": "x" * 501}, "too_long", "text"),
        ({"text": "a\x00b"}, "nul_byte", "text"),
        (["not", "an", "object"], "not_an_object", None),
    ],
)
async def test_invalid_input_is_stored_as_rejected(
    scripted_project: Path, data: object, code: str, field: str | None
) -> None:
    ws, provider = workspace(scripted_project, [Reply(text=GOOD)])
    result = await ws.pipeline("triage").run(data)
    assert (result.status, result.error_code, result.error_field) == ("rejected", code, field)
    item = ws.store.get_item(result.item_id or "")
    assert item is not None and item["status"] == "rejected" and item["reason"]
    assert len(item["input_hash"]) == 64
    assert provider.requests == [] and ws.store.list_calls() == []


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(error="RateLimited", retry_after=3), "RateLimited"),
        (Reply(error="ProviderUnavailable"), "ProviderUnavailable"),
        (Reply(text="not json at all"), "output_invalid"),
        (Reply(text={"category": "spaceships", "priority": "high"}), "output_invalid"),
    ],
)
async def test_failures_end_the_item_with_a_reason(
    scripted_project: Path, reply: Reply, code: str
) -> None:
    ws, _ = workspace(scripted_project, [reply])
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "failed" and result.error_code == code and result.reason
    (call,) = ws.store.list_calls()
    if code == "output_invalid":
        assert call["status"] == "ok"  # the call worked; its output did not
    else:
        assert call["status"] == "error" and call["error_class"] == code


async def test_fenced_json_output_is_accepted(scripted_project: Path) -> None:
    ws, _ = workspace(scripted_project, [Reply(text="```json\n" + json.dumps(GOOD) + "\n```")])
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "done" and result.output == GOOD


async def test_unknown_price_is_null_cost_never_zero(tmp_path: Path) -> None:
    root = write_project(tmp_path, SCRIPTED_CONFIG.replace("id: gpt-4o-mini", "id: mystery-model"))
    ws, _ = workspace(root, [Reply(text=GOOD)])
    await ws.pipeline("triage").run({"text": "hello"})
    (call,) = ws.store.list_calls()
    assert call["cost_usd"] is None and call["input_tokens"] is not None
    assert ws.unpriced_models == ["cheap"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_batch_keeps_order_and_rejects_bad_lines(
    scripted_project: Path, tmp_path: Path
) -> None:
    ws, _ = workspace(
        scripted_project,
        [Reply(text=GOOD, when="slow", latency_s=0.05), Reply(text=GOOD)],
    )
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": "a", "text": "slow one"}),
            '{"id": "b", "text": "trunc',
            "",
            json.dumps({"id": "c"}),
            json.dumps({"id": "d", "text": "fast"}),
        ],
    )
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n')
    out = io.StringIO()
    outcome = await run_file(ws.pipeline("triage"), source, output=out, concurrency=4)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5]
    assert [r["status"] for r in rows] == ["done", "rejected", "rejected", "done"]
    assert rows[1]["error"]["code"] == "malformed_json"
    assert rows[2]["error"] == {
        "code": "missing_field",
        "message": "required field is missing",
        "field": "text",
    }
    summary = ws.store.run_summary(outcome.run_id)
    assert summary.items_by_status == {"done": 2, "rejected": 2}
    assert summary.status == "finished" and summary.calls == 2

    out2 = io.StringIO()
    await run_file(ws.pipeline("triage"), tmp_path / "bad.jsonl", output=out2)
    assert json.loads(out2.getvalue())["error"]["code"] == "invalid_encoding"


async def test_resume_skips_done_items_and_reemits_their_output(
    scripted_project: Path, tmp_path: Path
) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": f"t{i}", "text": f"ticket {i} {'flaky' if i % 2 else ''}"})
            for i in range(6)
        ],
    )
    ws, provider = workspace(
        scripted_project, [Reply(error="ProviderUnavailable", when="flaky"), Reply(text=GOOD)]
    )
    first = await run_file(ws.pipeline("triage"), source, concurrency=2)
    assert ws.store.run_summary(first.run_id).items_by_status == {"done": 3, "failed": 3}

    provider.replies = [Reply(text=GOOD)]
    provider.requests.clear()
    out = io.StringIO()
    second = await run_file(ws.pipeline("triage"), source, output=out, concurrency=2, resume=True)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(provider.requests) == 3  # only the three that failed before
    assert all(r["status"] == "done" for r in rows) and len(rows) == 6
    assert sum(1 for r in rows if r.get("resumed")) == 3
    assert ws.store.run_summary(second.run_id).calls == 3


async def test_cancel_mid_batch_leaves_no_item_unfinished(
    scripted_project: Path, tmp_path: Path
) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({"id": f"t{i}", "text": "hang" if i == 2 else f"ok {i}"}) for i in range(8)],
    )
    ws, provider = workspace(
        scripted_project, [Reply(text=GOOD, when="hang", latency_s=3600), Reply(text=GOOD)]
    )
    run_ids: list[str] = []
    task = asyncio.create_task(
        run_file(ws.pipeline("triage"), source, concurrency=2, run_id_callback=run_ids.append)
    )
    for _ in range(1000):  # wait (by events, not by time) until the hanging call is in flight
        if any("hang" in r.messages[-1].content for r in provider.requests):
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = ws.store.items_for_run(run_ids[0])
    statuses = {r["status"] for r in rows}
    assert statuses <= {"done", "failed"} and "failed" in statuses
    failed = [r for r in rows if r["status"] == "failed"]
    assert all(r["error_code"] == "interrupted" and "resume" in r["reason"] for r in failed)
    assert ws.store.run_summary(run_ids[0]).status == "interrupted"

    provider.replies = [Reply(text=GOOD)]
    resumed = await run_file(ws.pipeline("triage"), source, resume=True)
    redone = ws.store.run_summary(resumed.run_id).items_by_status["done"]
    assert resumed.resumed + redone == 8 and redone == len(failed)
