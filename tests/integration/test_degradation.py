"""Every model fails (a real HTTP upstream answering 500): each degradation path ends every
item with the declared status and reason, and none is lost."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace, run_file
from roadworthy.review import ReviewQueue
from roadworthy.testing import Fault, FaultServer

from ..conftest import write_project

TICKETS = [
    {"id": "1", "text": "I was charged twice, please refund"},
    {"id": "2", "text": "The app crashes with an error on login"},
    {"id": "3", "text": "Just saying hello"},
    {"id": "4", "text": "Refund my invoice INV-1 now"},
]

BASE = """\
storage: sqlite:///.roadworthy/state.db
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key_env: null, total_timeout_s: 5}}
models:
  m: {{provider: up, id: gpt-4o-mini}}
pipelines:
  triage:
    input: {{fields: {{text: {{type: string}}}}}}
    steps:
      - generate: {{prompt: triage, model: m, output: schemas/triage.json}}
{extra}
"""


@pytest.fixture
def failing_upstream() -> Iterator[FaultServer]:
    with FaultServer([Fault.status(500) for _ in range(500)]) as server:
        yield server


def run_batch(tmp_path: Path, server: FaultServer, extra: str) -> tuple[Workspace, list[dict]]:
    root = write_project(tmp_path / "p", BASE.format(url=server.url, extra=extra))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(t) for t in TICKETS) + "\n")
    ws = Workspace(load_project(root))
    out = io.StringIO()
    asyncio.run(run_file(ws.pipeline("triage"), source, output=out, concurrency=2))
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == len(TICKETS)  # nothing lost
    stored = list(ws.store.iter_table("items"))
    assert len(stored) == len(TICKETS) and all(r["reason"] for r in stored)
    return ws, rows


def test_rules_path_gives_degraded_results(tmp_path: Path, failing_upstream: FaultServer) -> None:
    extra = """    on_failure: [rules]
    fallback_rules:
      rules:
        - {when_any: [refund, charged, invoice], set: {category: billing, priority: high}}
        - {when_any: [crash, error], set: {category: technical}}
      defaults: {category: other, priority: low}"""
    ws, rows = run_batch(tmp_path, failing_upstream, extra)
    assert [r["status"] for r in rows] == ["degraded"] * 4
    assert [r["output"]["category"] for r in rows] == ["billing", "technical", "other", "billing"]
    assert all(r["degraded"]["path"] == "rules" for r in rows)
    assert all("ProviderUnavailable" in r["degraded"]["reason"] for r in rows)
    assert {c["error_class"] for c in ws.store.list_calls()} == {"ProviderUnavailable"}


def test_escalate_path_fills_the_review_queue(
    tmp_path: Path, failing_upstream: FaultServer
) -> None:
    ws, rows = run_batch(tmp_path, failing_upstream, "    on_failure: [escalate]")
    assert [r["status"] for r in rows] == ["escalated"] * 4
    queue = ReviewQueue(ws.store)
    pending = queue.list()
    assert len(pending) == 4 and {p.reason_code for p in pending} == {"ProviderUnavailable"}
    assert {p.input["text"] for p in pending} == {t["text"] for t in TICKETS}


def test_defer_path_parks_items_then_gives_way_to_escalation(
    tmp_path: Path, failing_upstream: FaultServer
) -> None:
    extra = "    on_failure: [defer, escalate]\n    defer: {max_attempts: 2, backoff_s: 0.001}"
    ws, rows = run_batch(tmp_path, failing_upstream, extra)
    assert [r["status"] for r in rows] == ["deferred"] * 4
    assert all("attempt 1 of 2" in r["deferred"]["reason"] for r in rows)
    pipe = ws.pipeline("triage")
    retried = asyncio.run(pipe.retry_deferred())  # attempts run out: the next path runs
    assert [r.status for r in retried] == ["escalated"] * 4
    items = {r["id"]: r for r in ws.store.iter_table("items")}
    assert {r["attempts"] for r in items.values()} == {2}
    assert asyncio.run(pipe.retry_deferred()) == []


def test_deferred_item_recovers_when_the_upstream_does(tmp_path: Path) -> None:
    with FaultServer([Fault.status(503) for _ in range(40)]) as server:
        extra = "    on_failure: [defer]\n    defer: {max_attempts: 3, backoff_s: 0.001}"
        ws, rows = run_batch(tmp_path, server, extra)
        assert {r["status"] for r in rows} == {"deferred"}
        server.schedule.clear()
        server.push(*[Fault.ok('{"category": "billing", "priority": "high"}') for _ in range(4)])
        retried = asyncio.run(ws.pipeline("triage").retry_deferred())
        assert [r.status for r in retried] == ["done"] * 4


def test_partial_path_keeps_valid_fields(tmp_path: Path) -> None:
    bad = '{"category": "billing", "priority": "whenever"}'
    with FaultServer([Fault.ok(bad) for _ in range(10)]) as server:
        _, rows = run_batch(tmp_path, server, "    on_failure: [partial, escalate]")
    assert [r["status"] for r in rows] == ["degraded"] * 4
    assert rows[0]["output"] == {"category": "billing"}
    assert rows[0]["degraded"]["missing"] == ["priority"]


def test_no_policy_means_failed_with_the_error(
    tmp_path: Path, failing_upstream: FaultServer
) -> None:
    _, rows = run_batch(tmp_path, failing_upstream, "")
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error"]["code"] for r in rows} == {"ProviderUnavailable"}
