"""The scale-out queue: Procrastinate on PostgreSQL delivers, the jobs table keeps score.

Procrastinate brings what a table polled by each worker lacks on many machines: LISTEN/
NOTIFY wake-ups instead of polling, worker heartbeats, queues and locks. What it does not
bring is this project's contract, so the ``jobs`` table stays the record and Procrastinate
only *delivers*:

* ``enqueue``/``enqueue_many`` write the job rows exactly as the embedded queue does
  (idempotency keys, batches, priorities), then defer one Procrastinate job per row with
  the row's id (:data:`TASK`);
* the task claims *that* row by id with the same conditional ``UPDATE`` and lease token,
  runs it through :func:`~roadworthy.jobs.execute.execute_job` (one item per job) and
  completes it. A duplicate delivery (a known idempotency key deferred twice, or a retry
  of a job another worker finished) finds nothing to claim and returns.

So the same job function runs on both backends, ``GET /v1/jobs`` and batch counts read the
same rows, and switching backends moves no data.

A worker that dies mid-job is found by Procrastinate's heartbeats, not by the row's lease
(set long, since nothing renews it here): every live worker runs
:func:`recover_stalled`, which ends the dead worker's lease on the row and asks
Procrastinate to retry the job, so it runs again elsewhere and finishes the same item.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..pipeline import Workspace
from ..store.store import now
from ..store.tables import jobs
from .embedded import EmbeddedQueue, _job
from .execute import execute_job
from .queue import Job, JobSpec
from .worker import default_worker_id

__all__ = [
    "TASK",
    "ProcrastinateQueue",
    "conninfo",
    "ensure_schema",
    "procrastinate_worker",
    "producer_queue",
    "recover_stalled",
]

TASK = "roadworthy.run_job"


def _require() -> Any:
    try:
        import procrastinate
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "the Procrastinate queue needs procrastinate: pip install 'roadworthy[postgres]' "
            "procrastinate"
        ) from None
    return procrastinate


def conninfo(store_url: str) -> str:
    """A libpq URL for Procrastinate from the store's SQLAlchemy URL."""
    scheme, _, rest = store_url.partition("://")
    if not scheme.startswith("postgres"):
        from ..errors import ConfigError

        raise ConfigError("the Procrastinate queue needs a PostgreSQL store")
    return f"postgresql://{rest}"


def _store_url(store: Any) -> str:
    return str(store.engine.url.render_as_string(hide_password=False))


def ensure_schema(store: Any) -> None:
    """Apply Procrastinate's schema to the store's database once (it is not idempotent)."""
    if sa.inspect(store.engine).has_table("procrastinate_jobs"):
        return
    procrastinate = _require()
    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(_store_url(store)))
    )
    with app.open():
        app.schema_manager.apply_schema()


@contextlib.contextmanager
def producer_queue(store: Any, **kwargs: Any) -> Iterator[ProcrastinateQueue]:
    """A queue for synchronous producers (``run --async``, the server), open for the block."""
    procrastinate = _require()
    ensure_schema(store)
    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(_store_url(store)))
    )
    with app.open():
        yield ProcrastinateQueue(store, app, **kwargs)


class ProcrastinateQueue(EmbeddedQueue):
    """``EmbeddedQueue`` whose jobs are also handed to Procrastinate for delivery.

    ``app`` is an *open* ``procrastinate.App`` (a ``SyncPsycopgConnector`` suits the
    synchronous producers: the server and ``roadworthy run --async``).
    """

    def __init__(self, store: Any, app: Any, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.app = app

    def enqueue_many(
        self, pipeline: str, specs: list[JobSpec], *, batch_id: str | None = None
    ) -> tuple[str, list[str]]:
        batch_id, ids = super().enqueue_many(pipeline, specs, batch_id=batch_id)
        for job_id, spec in zip(ids, specs, strict=True):
            self.app.configure_task(TASK, priority=spec.priority).defer(job_id=job_id)
        return batch_id, ids

    def claim_id(self, job_id: str, worker_id: str, lease_s: float) -> Job | None:
        """Claim one named job, if it is queued or its lease expired."""
        stamp = self.clock()
        claimable = sa.and_(
            jobs.c.id == job_id,
            sa.or_(
                jobs.c.status == "queued",
                sa.and_(jobs.c.status == "running", jobs.c.lease_until < stamp),
            ),
        )
        token = str(uuid.uuid4())
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(claimable)
                .values(
                    status="running",
                    worker_id=worker_id,
                    lease_token=token,
                    lease_until=stamp + timedelta(seconds=lease_s),
                    attempts=jobs.c.attempts + 1,
                    updated_at=now(),
                )
            )
            if not result.rowcount:
                return None
            row = conn.execute(jobs.select().where(jobs.c.lease_token == token)).first()
        return _job(row._mapping) if row is not None else None

    def end_lease(self, job_id: str) -> bool:
        """End the lease of a running job whose worker is known dead, so it can be claimed."""
        stamp = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == "running")
                .values(lease_until=stamp - timedelta(seconds=1), updated_at=stamp)
            )
        return bool(result.rowcount)


async def recover_stalled(app: Any, queue: ProcrastinateQueue, stalled_after_s: float) -> int:
    """Retry the jobs of workers silent for ``stalled_after_s``; return how many.

    The row's lease is ended first: otherwise the retried delivery would find the row
    still held by the dead worker and return without running it.
    """
    stalled = await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=stalled_after_s
    )
    count = 0
    for job in stalled:
        job_id = job.task_kwargs.get("job_id")
        if isinstance(job_id, str):
            queue.end_lease(job_id)
        await app.job_manager.retry_job(job)
        count += 1
    return count


async def procrastinate_worker(
    workspace: Workspace,
    *,
    concurrency: int = 4,
    lease_s: float = 600.0,
    worker_id: str | None = None,
    wait: bool = True,
    install_signal_handlers: bool = True,
    max_attempts: int = 5,
    backoff_s: float = 5.0,
    stalled_after_s: float = 60.0,
) -> None:
    """Run a Procrastinate worker for this workspace's jobs (PostgreSQL store only).

    Procrastinate's own heartbeat watches the worker (sent several times per
    ``stalled_after_s``); the job row's lease is set long (``lease_s``) because nothing
    here renews it. Alongside the worker, a loop runs :func:`recover_stalled` twice per
    ``stalled_after_s``, so the jobs of a worker that died run again.
    """
    procrastinate = _require()
    name = worker_id or default_worker_id()
    ensure_schema(workspace.store)
    url = conninfo(_store_url(workspace.store))
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    queue = ProcrastinateQueue(workspace.store, app, max_attempts=max_attempts, backoff_s=backoff_s)
    pipelines: dict[str, Any] = {}

    async def run_job(job_id: str) -> None:
        job = queue.claim_id(job_id, name, lease_s)
        if job is None:
            return  # done, dead, or held by a live claim: a duplicate delivery
        if job.pipeline not in pipelines:
            pipelines[job.pipeline] = workspace.pipeline(job.pipeline)
        try:
            result = await execute_job(pipelines[job.pipeline], job)
        except Exception as exc:
            queue.fail(job, f"{type(exc).__name__}: {exc}")
            raise  # Procrastinate's retry strategy delivers it again
        queue.complete(job, result.item_id)

    retry = procrastinate.RetryStrategy(
        max_attempts=queue.max_attempts - 1, exponential_wait=int(queue.backoff_s)
    )
    app.task(name=TASK, retry=retry)(run_job)

    async def recovery() -> None:
        while True:
            await recover_stalled(app, queue, stalled_after_s)
            await asyncio.sleep(stalled_after_s / 2)

    async with app.open_async():
        recovering = asyncio.create_task(recovery())
        try:
            await app.run_worker_async(
                concurrency=concurrency,
                wait=wait,
                name=name,
                install_signal_handlers=install_signal_handlers,
                update_heartbeat_interval=min(10.0, stalled_after_s / 3),
                stalled_worker_timeout=stalled_after_s,
            )
        finally:
            recovering.cancel()
            await asyncio.gather(recovering, return_exceptions=True)
