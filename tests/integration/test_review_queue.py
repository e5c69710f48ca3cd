"""The review queue on SQLite and PostgreSQL: leases, concurrent claims, resume, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app
from roadworthy.errors import ConfigError
from roadworthy.evals import load_dataset
from roadworthy.review import ReviewQueue
from roadworthy.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def queue_with_item(url: str, clock: Clock) -> tuple[ReviewQueue, str, str]:
    store = Store.open(url)
    item_id, trace_id = store.add_item(
        pipeline="triage",
        item_key="id:1",
        payload_hash="0" * 64,
        input={"text": "refund 900 dollars"},
        status="running",
    )
    store.set_item(item_id, "escalated", reason="amount over 500", error_code="output_rule")
    queue = ReviewQueue(store, clock=clock)
    review_id = queue.enqueue(
        pipeline="triage",
        item_id=item_id,
        trace_id=trace_id,
        reason="amount = 900 is over 500",
        reason_code="output_rule",
        input={"text": "refund 900 dollars"},
        output={"category": "billing", "amount": 900},
    )
    return queue, review_id, item_id


def test_lease_expiry_returns_an_item_to_pending(store_url: str) -> None:
    clock = Clock()
    queue, review_id, _ = queue_with_item(store_url, clock)
    claimed = queue.claim("ana", lease_s=600)
    assert claimed is not None and claimed.id == review_id and claimed.claimed_by == "ana"
    assert queue.claim("ben") is None  # nobody else gets it while the lease runs
    clock.now += timedelta(seconds=599)
    assert queue.claim("ben") is None
    assert [i.id for i in queue.list(status="claimed")] == [review_id]
    clock.now += timedelta(seconds=2)
    assert [i.id for i in queue.list(status="pending")] == [review_id]
    taken = queue.claim("ben")
    assert taken is not None and taken.claimed_by == "ben"
    with pytest.raises(ConfigError, match="claimed by ben"):
        queue.resolve(review_id, reviewer="ana", decision="approve")


def test_resolution_resumes_the_item(store_url: str) -> None:
    clock = Clock()
    queue, review_id, item_id = queue_with_item(store_url, clock)
    queue.claim("ana")
    clock.now += timedelta(minutes=3)
    queue.resolve(
        review_id,
        reviewer="ana",
        decision="edit",
        output={"category": "billing", "amount": 90},
        note="typo in amount",
    )
    item = queue.store.get_item(item_id)
    assert item is not None
    assert (item["status"], item["output"], item["reviewed_by"]) == (
        "done",
        {"category": "billing", "amount": 90},
        "ana",
    )
    assert item["reason"] == "human-reviewed (edit) by ana"
    stats = queue.stats()
    assert (stats.pending, stats.resolved, stats.median_resolution_s) == (0, 1, 180.0)


def test_rejection_ends_the_item_rejected(store_url: str) -> None:
    queue, review_id, item_id = queue_with_item(store_url, Clock())
    queue.claim("ana")
    queue.resolve(review_id, reviewer="ana", decision="reject", note="fraud")
    item = queue.store.get_item(item_id)
    assert item is not None and item["status"] == "rejected" and "fraud" in item["reason"]


CLAIM_SCRIPT = """
import sys, json
from roadworthy.review import ReviewQueue
from roadworthy.store import Store
q = ReviewQueue(Store.open(sys.argv[1]))
got = []
while True:
    item = q.claim(sys.argv[2])
    if item is None:
        break
    got.append(item.id)
print(json.dumps(got))
"""


def test_two_processes_never_claim_the_same_item(store_url: str) -> None:
    store = Store.open(store_url)
    queue = ReviewQueue(store)
    ids = {
        queue.enqueue(pipeline="p", reason=f"r{n}", reason_code="audit_sample") for n in range(40)
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_SCRIPT, store_url, who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ},
        )
        for who in ("ana", "ben")
    ]
    claimed: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        claimed += json.loads(out)
    assert sorted(claimed) == sorted(ids)  # every item claimed exactly once


def test_export_round_trips_into_a_dataset(tmp_path: Path, sqlite_url: str) -> None:
    queue, review_id, _ = queue_with_item(sqlite_url, Clock())
    queue.claim("ana")
    queue.resolve(
        review_id, reviewer="ana", decision="edit", output={"category": "billing", "amount": 90}
    )
    path = tmp_path / "from-review.jsonl"
    assert queue.export(path) == 1
    assert queue.export(path) == 0  # each correction once
    (example,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert example["vars"] == {"text": "refund 900 dollars"}
    assert example["expected"] == {"category": "billing", "amount": 90}
    assert "output_rule" in example["tags"]
    dataset = load_dataset(path)  # the evaluation runner's own loader accepts it
    (loaded,) = list(dataset)
    assert loaded.vars == {"text": "refund 900 dollars"} and loaded.expected_field("amount") == 90


def test_review_cli(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    (root / "prompts").mkdir(parents=True)
    (root / "roadworthy.yaml").write_text(f"storage: {sqlite_url}\n")
    queue, review_id, item_id = queue_with_item(sqlite_url, Clock())
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(app, ["review", "list", "-p", str(root)]).output
    assert review_id[:8] in out and "pending 1" in out
    assert runner.invoke(app, ["review", "claim", "-r", "ana", "-p", str(root)]).exit_code == 0
    shown = runner.invoke(app, ["review", "show", review_id[:8], "-p", str(root)]).output
    assert "refund 900 dollars" in shown and "amount = 900 is over 500" in shown
    done = runner.invoke(
        app,
        ["review", "resolve", review_id[:8], "--decision", "approve", "-r", "ana", "-p", str(root)],
    )
    assert done.exit_code == 0, done.output
    assert queue.store.get_item(item_id)["status"] == "done"  # type: ignore[index]
    assert runner.invoke(app, ["review", "claim", "-r", "ana", "-p", str(root)]).exit_code == 1
