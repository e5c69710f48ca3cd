"""The embedded job queue on SQLite and PostgreSQL, and one item per job on re-delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.jobs import EmbeddedQueue, JobSpec, backoff_delay, execute_job, item_for_job
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.store import Store

GOOD = {"category": "billing", "priority": "high"}


class Clock:
    """A clock the test moves by hand, so leases and backoff need no sleeping."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(store_url: str, clock: Clock) -> EmbeddedQueue:
    return EmbeddedQueue(Store.open(store_url), max_attempts=3, backoff_s=10, clock=clock)


def test_idempotency_key_returns_the_same_job(queue: EmbeddedQueue) -> None:
    first = queue.enqueue("triage", {"text": "a"}, idempotency_key="order-1")
    again = queue.enqueue("triage", {"text": "a"}, idempotency_key="order-1")
    other = queue.enqueue("triage", {"text": "a"}, idempotency_key="order-2")
    assert first == again != other
    batch, ids = queue.enqueue_many(
        "triage", [JobSpec({"text": "b"}, idempotency_key="order-1"), JobSpec({"text": "c"})]
    )
    assert ids[0] == first and ids[1] not in (first, other)
    assert queue.batch_counts(batch)["queued"] == 1  # the known job stays in its own batch


def test_claims_by_priority_then_age(queue: EmbeddedQueue, clock: Clock) -> None:
    ids = []
    for n, priority in enumerate([0, 9, 5, 0]):
        ids.append(queue.enqueue("triage", {"n": n}, priority=priority))
        clock.advance(1)
    low, high, mid, low2 = ids
    order = []
    while (job := queue.claim("w", 30)) is not None:
        order.append(job.id)
    assert order == [high, mid, low, low2]


def test_pipeline_filter(queue: EmbeddedQueue) -> None:
    queue.enqueue("a", {})
    b = queue.enqueue("b", {})
    job = queue.claim("w", 30, pipelines=["b"])
    assert job is not None and job.id == b
    assert queue.claim("w", 30, pipelines=["b"]) is None


def test_expired_lease_is_delivered_again_and_fences_the_old_holder(
    queue: EmbeddedQueue, clock: Clock
) -> None:
    job_id = queue.enqueue("triage", {"text": "a"})
    first = queue.claim("w1", 30)
    assert first is not None and first.attempts == 1
    assert queue.claim("w2", 30) is None  # leased
    clock.advance(20)
    assert queue.heartbeat(first, 30)  # extended to t+50
    clock.advance(25)
    assert queue.claim("w2", 30) is None
    clock.advance(10)  # lease over: w1 is taken for dead
    second = queue.claim("w2", 30)
    assert second is not None and second.id == job_id and second.attempts == 2
    assert second.worker_id == "w2"
    # w1 wakes up: it can no longer extend, complete or fail the job
    assert not queue.heartbeat(first, 30)
    assert not queue.complete(first, "item-x")
    assert queue.fail(first, "late") == "running"
    assert queue.complete(second, "item-y")
    done = queue.get(job_id)
    assert done is not None and done.status == "done" and done.item_id == "item-y"


def test_fail_backs_off_then_dies_with_the_last_error(queue: EmbeddedQueue, clock: Clock) -> None:
    job_id = queue.enqueue("triage", {"text": "a"})
    job = queue.claim("w", 30)
    assert job is not None
    assert queue.fail(job, "store down") == "queued"
    assert queue.claim("w", 30) is None  # waits out the backoff (10 s after attempt 1)
    clock.advance(backoff_delay(10, 1))
    job = queue.claim("w", 30)
    assert job is not None and job.attempts == 2
    assert queue.fail(job, "still down") == "queued"
    clock.advance(backoff_delay(10, 2) - 1)
    assert queue.claim("w", 30) is None  # doubled: 20 s
    clock.advance(1)
    job = queue.claim("w", 30)
    assert job is not None and job.attempts == 3
    assert queue.fail(job, "down for good") == "dead"
    dead = queue.get(job_id)
    assert dead is not None and dead.status == "dead" and dead.last_error == "down for good"
    clock.advance(3600)
    assert queue.claim("w", 30) is None


def test_explicit_retry_at_and_dead(queue: EmbeddedQueue, clock: Clock) -> None:
    a = queue.enqueue("triage", {"n": 1})
    job = queue.claim("w", 30)
    assert job is not None and job.id == a
    assert queue.fail(job, "rate limited", retry_at=clock.at + timedelta(seconds=3)) == "queued"
    clock.advance(3)
    job = queue.claim("w", 30)
    assert job is not None
    assert queue.fail(job, "bad payload", dead=True) == "dead"


def test_a_job_that_keeps_killing_workers_goes_dead(queue: EmbeddedQueue, clock: Clock) -> None:
    job_id = queue.enqueue("triage", {"text": "poison"})
    for _ in range(3):
        assert queue.claim("w", 5) is not None
        clock.advance(6)  # the worker dies without a word
    assert queue.claim("w", 5) is None
    dead = queue.get(job_id)
    assert dead is not None and dead.status == "dead"
    assert dead.last_error is not None and "lease expired" in dead.last_error


def test_release_gives_the_job_back_without_spending_an_attempt(queue: EmbeddedQueue) -> None:
    job_id = queue.enqueue("triage", {"text": "a"})
    job = queue.claim("w", 30)
    assert job is not None and queue.release(job)
    again = queue.claim("w2", 30)
    assert again is not None and again.id == job_id and again.attempts == 1


def test_batch_counts(queue: EmbeddedQueue) -> None:
    batch, ids = queue.enqueue_many("triage", [JobSpec({"n": n}) for n in range(3)])
    job = queue.claim("w", 30)
    assert job is not None and queue.complete(job, None)
    queue.claim("w", 30)
    assert queue.batch_counts(batch) == {"queued": 1, "running": 1, "done": 1, "dead": 0}
    assert [j.line_no for j in queue.batch_jobs(batch)] == [1, 2, 3]
    assert queue.batch_counts("no-such-batch")["queued"] == 0
    assert len(set(ids)) == 3


CONFIG = """\
storage: {url}
providers:
  fake: {{type: scripted}}
models:
  cheap: {{provider: fake, id: gpt-4o-mini, tier: small}}
pipelines:
  triage:
    input:
      fields:
        text: {{type: string, max_chars: 500}}
    steps:
      - generate: {{prompt: triage, model: cheap, output: schemas/triage.json}}
"""


@pytest.fixture
def workspace(tmp_path: Path, store_url: str) -> Workspace:
    from ..conftest import write_project

    root = write_project(tmp_path / "proj", CONFIG.format(url=store_url))
    provider = ScriptedProvider([Reply(text=GOOD)], name="fake")
    return Workspace(load_project(root), providers={"fake": provider})


async def test_a_job_run_twice_has_one_item(workspace: Workspace) -> None:
    """Every point a worker can die at: before the item, mid-run, after the item."""
    clock = Clock()
    queue = EmbeddedQueue(workspace.store, clock=clock)
    pipeline = workspace.pipeline("triage")
    batch, ids = queue.enqueue_many("triage", [JobSpec({"text": f"t{n}"}) for n in range(3)])

    # job 1: the first worker finished the item and died before completing the job
    job = queue.claim("w1", 5)
    assert job is not None
    finished = await execute_job(pipeline, job)
    clock.advance(6)
    again = queue.claim("w2", 5)
    assert again is not None and again.id == job.id
    replay = await execute_job(pipeline, again)
    assert replay.item_id == finished.item_id and replay.status == "done" and replay.resumed
    assert queue.complete(again, replay.item_id)

    # job 2: the first worker died mid-run, leaving its item running
    job = queue.claim("w1", 5)
    assert job is not None
    workspace.store.add_item(
        pipeline="triage",
        item_key="k",
        payload_hash="h",
        input={"text": "t1"},
        run_id=batch,
        line_no=job.line_no,
        status="running",
    )
    stale = item_for_job(pipeline, job)
    assert stale is not None
    clock.advance(6)
    again = queue.claim("w2", 5)
    assert again is not None and again.id == job.id
    result = await execute_job(pipeline, again)
    assert result.item_id == stale["id"] and result.status == "done"
    row = workspace.store.get_item(stale["id"])
    assert row is not None and row["status"] == "done" and row["attempts"] == 2

    # job 3: an ordinary first run
    job = queue.claim("w1", 5)
    assert job is not None
    result = await execute_job(pipeline, job)
    assert result.status == "done" and not result.resumed

    items = workspace.store.items_for_run(batch)
    assert sorted(i["line_no"] for i in items) == [1, 2, 3]
    assert len(ids) == 3
    await workspace.aclose()
    workspace.store.close()


async def test_stop_now_releases_jobs_in_flight(tmp_path: Path, sqlite_url: str) -> None:
    import asyncio

    from roadworthy.jobs import Worker

    from ..conftest import write_project

    root = write_project(tmp_path / "proj", CONFIG.format(url=sqlite_url))
    slow = ScriptedProvider([Reply(text=GOOD, latency_s=3600)], name="fake")
    ws = Workspace(load_project(root), providers={"fake": slow})
    queue = EmbeddedQueue(ws.store)
    job_id = queue.enqueue("triage", {"text": "slow"})
    stop, stop_now = asyncio.Event(), asyncio.Event()
    worker = Worker(ws, queue, concurrency=1, poll_s=0.01)
    running = asyncio.create_task(worker.run(stop, stop_now))
    while not slow.requests:  # the job is in the model call
        await asyncio.sleep(0.01)
    stop.set()
    stop_now.set()
    stats = await running
    assert stats.released == 1 and stats.done == 0
    job = queue.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 0
    await ws.aclose()
    ws.store.close()


async def test_a_drain_that_overruns_releases_and_says_where_it_was_stuck(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from roadworthy.jobs import Worker

    from ..conftest import write_project

    root = write_project(tmp_path / "proj", CONFIG.format(url=sqlite_url))
    slow = ScriptedProvider([Reply(text=GOOD, latency_s=3600)], name="fake")
    ws = Workspace(load_project(root), providers={"fake": slow})
    queue = EmbeddedQueue(ws.store)
    job_id = queue.enqueue("triage", {"text": "slow"})
    stop = asyncio.Event()
    worker = Worker(ws, queue, concurrency=1, poll_s=0.01, drain_s=0.05)
    running = asyncio.create_task(worker.run(stop))
    while not slow.requests:  # the job is in the model call
        await asyncio.sleep(0.01)
    stop.set()  # a polite stop only: the drain deadline does the rest
    stats = await running
    assert stats.released == 1 and stats.done == 0
    job = queue.get(job_id)
    assert job is not None and job.status == "queued" and job.attempts == 0
    overran = [r.getMessage() for r in caplog.records if "drain overran" in r.getMessage()]
    assert overran and "complete" in overran[0]  # the stuck task's stack names the call
    await ws.aclose()
    ws.store.close()


def test_the_queue_backend_comes_from_config(tmp_path: Path) -> None:
    from roadworthy.jobs.backends import open_queue

    from ..conftest import SCRIPTED_CONFIG, write_project

    root = write_project(
        tmp_path / "proj", SCRIPTED_CONFIG + "queue: {max_attempts: 2, backoff_s: 0.5}\n"
    )
    workspace = Workspace(load_project(root))
    try:
        with open_queue(workspace) as queue:
            assert isinstance(queue, EmbeddedQueue)
            job = queue.get(queue.enqueue("triage", {"text": "hi"}))
        assert job is not None and (job.max_attempts, job.backoff_s) == (2, 0.5)
    finally:
        workspace.close()


def test_procrastinate_on_sqlite_is_a_clear_config_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from roadworthy.cli.main import app

    from ..conftest import SCRIPTED_CONFIG, write_project

    root = write_project(tmp_path / "proj", SCRIPTED_CONFIG + "queue: {backend: procrastinate}\n")
    result = CliRunner().invoke(app, ["worker", "-p", str(root)])
    assert result.exit_code == 2, result.output
    assert "the Procrastinate queue needs a PostgreSQL store" in result.output
    assert "Traceback" not in result.output
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hi"}\n')
    queued = CliRunner().invoke(app, ["run", "triage", str(source), "-p", str(root), "--async"])
    assert queued.exit_code == 2, queued.output
    assert "needs a PostgreSQL store" in queued.output
