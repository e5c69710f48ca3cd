"""Two Procrastinate workers over the PostgreSQL on this machine share one batch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.jobs import JobSpec
from roadworthy.pipeline import Workspace
from roadworthy.store import Store

from ..conftest import need, write_project
from .test_jobs_workers import CONFIG, GUARD_S


async def test_two_workers_one_batch_no_duplicates(tmp_path: Path, postgres_url: str) -> None:
    try:
        import procrastinate
    except ImportError:
        need("procrastinate is not installed (pip install 'roadworthy[postgres]')")
    from roadworthy.jobs.procrastinate_queue import (
        ProcrastinateQueue,
        conninfo,
        procrastinate_worker,
    )

    root = write_project(tmp_path / "proj", CONFIG.format(url=postgres_url))
    store = Store.open(postgres_url)
    producer = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(postgres_url))
    )
    n = 12
    with producer.open():
        producer.schema_manager.apply_schema()
        queue = ProcrastinateQueue(store, producer)
        batch, ids = queue.enqueue_many(
            "triage", [JobSpec({"text": f"ticket {i}"}) for i in range(n)]
        )
        again = queue.enqueue("triage", {"text": "ticket 0"}, idempotency_key=None)
        assert again not in ids  # (no key: a new job, in its own batch)

    workspaces = [Workspace(load_project(root)) for _ in range(2)]
    workers = [
        asyncio.create_task(
            procrastinate_worker(
                ws, concurrency=2, worker_id=f"pg-{i}", install_signal_handlers=False
            )
        )
        for i, ws in enumerate(workspaces)
    ]
    guard = time.monotonic() + GUARD_S
    try:
        while queue.batch_counts(batch)["done"] < n:
            for task in workers:
                if task.done():
                    task.result()  # a worker that crashed says why
                    pytest.fail("a worker stopped early")
            assert time.monotonic() < guard, "gave up waiting for the batch"
            await asyncio.sleep(0.05)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for ws in workspaces:
            await ws.aclose()
            ws.store.close()

    rows = store.items_for_run(batch)
    assert sorted(r["line_no"] for r in rows) == list(range(1, n + 1))
    assert {r["status"] for r in rows} == {"done"}
    batch_jobs = queue.batch_jobs(batch)
    assert {j.item_id for j in batch_jobs} == {r["id"] for r in rows}
    assert {j.worker_id for j in batch_jobs} == {"pg-0", "pg-1"}
    store.close()


STALLED_CONFIG = """\
storage: URL
providers:
  up: {type: openai, base_url: UPSTREAM, api_key_env: RW_STALLED_TEST_KEY}
models:
  mini: {provider: up, id: gpt-4o-mini}
queue: {backend: procrastinate, stalled_after_s: 2}
pipelines:
  triage:
    input:
      fields:
        text: {type: string, max_chars: 500}
    steps:
      - generate: {prompt: triage, model: mini, output: schemas/triage.json}
"""


async def test_a_killed_workers_job_runs_again_on_a_live_worker(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL a real `roadworthy worker` mid-call; the live worker's recovery reruns it."""
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        need("procrastinate is not installed (pip install 'roadworthy[postgres]')")
    import json
    import os
    import signal
    import subprocess
    import sys

    from roadworthy.jobs import EmbeddedQueue
    from roadworthy.jobs.backends import open_queue
    from roadworthy.jobs.procrastinate_queue import procrastinate_worker
    from roadworthy.testing import Fault, FaultServer

    monkeypatch.setenv("RW_STALLED_TEST_KEY", "sk-stalled")
    answer = json.dumps({"category": "billing", "priority": "high"})
    with FaultServer([Fault.hang(3600), Fault.ok(answer)]) as server:
        config = STALLED_CONFIG.replace("URL", postgres_url).replace("UPSTREAM", server.url + "/v1")
        root = write_project(tmp_path / "proj", config)
        producer = Workspace(load_project(root))
        with open_queue(producer) as queue:  # the configured backend: Procrastinate
            batch, (job_id,) = queue.enqueue_many("triage", [JobSpec({"text": "ticket"})])
        rows = EmbeddedQueue(producer.store)

        cmd = [sys.executable, "-m", "roadworthy.cli.main", "worker", "-p", str(root)]
        dead = subprocess.Popen(
            [*cmd, "--id", "dead-1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RW_STALLED_TEST_KEY": "sk-stalled"},
        )
        guard = time.monotonic() + GUARD_S
        try:
            while True:  # until the doomed worker holds the job and its call hangs upstream
                job = rows.get(job_id)
                assert job is not None
                calling = any(r["path"].endswith("/chat/completions") for r in server.requests)
                if job.status == "running" and job.worker_id == "dead-1" and calling:
                    break
                assert dead.poll() is None, dead.communicate()[0].decode()
                assert time.monotonic() < guard, "the first worker never took the job"
                await asyncio.sleep(0.05)
            dead.send_signal(signal.SIGKILL)
            dead.wait(timeout=60)
        finally:
            dead.kill()

        live = Workspace(load_project(root))
        worker = asyncio.create_task(
            procrastinate_worker(
                live, worker_id="live-1", install_signal_handlers=False, stalled_after_s=2
            )
        )
        try:
            while (job := rows.get(job_id)) is not None and job.status != "done":
                if worker.done():
                    worker.result()
                    pytest.fail("the live worker stopped early")
                assert time.monotonic() < guard, "the stalled job was never run again"
                await asyncio.sleep(0.05)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await live.aclose()
            live.store.close()

    assert job is not None and job.worker_id == "live-1" and job.attempts == 2
    (item,) = producer.store.items_for_run(batch)
    assert item["status"] == "done" and item["id"] == job.item_id
    await producer.aclose()
    producer.store.close()
