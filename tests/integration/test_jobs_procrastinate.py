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
