"""The embedded job queue: a ``jobs`` table in the store's own database.

It works on SQLite (one machine, the default) and PostgreSQL alike, because every state
change is a single conditional ``UPDATE``:

* ``claim`` updates the most urgent claimable row (queued and due, or running with an
  expired lease) *and* re-checks that condition in the same statement, stamping a fresh
  ``lease_token``; the claimant reads its job back by that token. Two workers racing for
  one row cannot both win: the loser's ``UPDATE`` matches nothing. On PostgreSQL the
  candidate sub-select adds ``FOR UPDATE SKIP LOCKED`` so racing workers take different
  rows instead of queueing behind one; SQLite serialises writers anyway.
* ``heartbeat``, ``complete``, ``fail`` and ``release`` only match the row while it is
  running under the caller's token, so a worker that lost its lease cannot touch a job
  another worker now holds.
* A lease that expires counts as a failed attempt: a job that keeps killing its workers
  goes ``dead`` after ``max_attempts`` with a last error that says so, instead of being
  re-delivered forever (Celery's visibility-timeout loop, see docs/decisions.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..store import Store
from ..store.store import now
from ..store.tables import JOB_STATUSES, jobs
from .queue import Job, JobSpec, backoff_delay

__all__ = ["EmbeddedQueue"]


class EmbeddedQueue:
    """:class:`~roadworthy.jobs.queue.JobQueue` on the store's database."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 5,
        backoff_s: float = 5.0,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.clock = clock

    # -- producing ----------------------------------------------------------------------

    def new_batch(self, pipeline: str, source: str | None = None) -> str:
        return self.store.start_run(pipeline, source or "queue", {"queued": True})

    def enqueue(
        self,
        pipeline: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        batch_id: str | None = None,
    ) -> str:
        spec = JobSpec(payload, idempotency_key=idempotency_key, priority=priority)
        _, ids = self.enqueue_many(pipeline, [spec], batch_id=batch_id)
        return ids[0]

    def enqueue_many(
        self, pipeline: str, specs: list[JobSpec], *, batch_id: str | None = None
    ) -> tuple[str, list[str]]:
        """Queue ``specs``; a spec whose idempotency key is known yields the known job.

        Each job is inserted in its own transaction so that a key taken by a concurrent
        producer (a unique violation) costs only that row: it is read back instead.
        """
        if batch_id is None:
            batch_id = self.new_batch(pipeline)
        ids: list[str] = []
        with self.engine.connect() as conn:
            next_line = (
                conn.execute(
                    sa.select(sa.func.max(jobs.c.line_no)).where(jobs.c.batch_id == batch_id)
                ).scalar()
                or 0
            ) + 1
        for spec in specs:
            line_no = spec.line_no if spec.line_no is not None else next_line
            next_line = max(next_line, line_no) + 1
            ids.append(self._insert(pipeline, batch_id, line_no, spec))
        return batch_id, ids

    def _insert(self, pipeline: str, batch_id: str, line_no: int, spec: JobSpec) -> str:
        if spec.idempotency_key is not None:
            known = self._by_key(spec.idempotency_key)
            if known is not None:
                return known
        job_id = str(uuid.uuid4())
        stamp = self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    jobs.insert().values(
                        id=job_id,
                        pipeline=pipeline,
                        batch_id=batch_id,
                        line_no=line_no,
                        payload=spec.payload,
                        status="queued",
                        priority=spec.priority,
                        idempotency_key=spec.idempotency_key,
                        attempts=0,
                        max_attempts=self.max_attempts,
                        backoff_s=self.backoff_s,
                        run_after=stamp,
                        created_at=stamp,
                        updated_at=stamp,
                    )
                )
        except sa.exc.IntegrityError:
            if spec.idempotency_key is None:
                raise  # (batch_id, line_no) taken: a caller bug, not a race to paper over
            known = self._by_key(spec.idempotency_key)
            if known is None:
                raise
            return known
        return job_id

    def _by_key(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(jobs.c.id).where(jobs.c.idempotency_key == key)).scalar()
        return str(value) if value is not None else None

    # -- consuming ----------------------------------------------------------------------

    def claim(
        self, worker_id: str, lease_s: float, *, pipelines: list[str] | None = None
    ) -> Job | None:
        stamp = self.clock()
        expired = sa.and_(jobs.c.status == "running", jobs.c.lease_until < stamp)
        claimable = sa.or_(sa.and_(jobs.c.status == "queued", jobs.c.run_after <= stamp), expired)
        if pipelines:
            claimable = sa.and_(claimable, jobs.c.pipeline.in_(pipelines))
        token = str(uuid.uuid4())
        with self.engine.begin() as conn:
            # Jobs that used their last attempt and then lost the lease are dead letters.
            conn.execute(
                jobs.update()
                .where(expired, jobs.c.attempts >= jobs.c.max_attempts)
                .values(
                    status="dead",
                    lease_until=None,
                    lease_token=None,
                    finished_at=stamp,
                    updated_at=stamp,
                    last_error=sa.func.coalesce(jobs.c.last_error + "; ", "")
                    + "lease expired on the last attempt (worker died or stopped heartbeating)",
                )
            )
            candidate = (
                sa.select(jobs.c.id)
                .where(claimable)
                .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.line_no)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            result = conn.execute(
                jobs.update()
                .where(jobs.c.id == candidate, claimable)
                .values(
                    status="running",
                    worker_id=worker_id,
                    lease_token=token,
                    lease_until=stamp + timedelta(seconds=lease_s),
                    attempts=jobs.c.attempts + 1,
                    updated_at=stamp,
                )
            )
            if not result.rowcount:
                return None
            row = conn.execute(jobs.select().where(jobs.c.lease_token == token)).first()
        return _job(row._mapping) if row is not None else None

    def _held(self, job: Job) -> sa.ColumnElement[bool]:
        return sa.and_(
            jobs.c.id == job.id, jobs.c.status == "running", jobs.c.lease_token == job.lease_token
        )

    def heartbeat(self, job: Job, lease_s: float) -> bool:
        stamp = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(self._held(job))
                .values(lease_until=stamp + timedelta(seconds=lease_s), updated_at=stamp)
            )
        return bool(result.rowcount)

    def complete(self, job: Job, item_id: str | None) -> bool:
        stamp = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(self._held(job))
                .values(
                    status="done",
                    item_id=item_id,
                    lease_until=None,
                    lease_token=None,
                    finished_at=stamp,
                    updated_at=stamp,
                )
            )
        return bool(result.rowcount)

    def fail(
        self, job: Job, error: str, *, retry_at: datetime | None = None, dead: bool = False
    ) -> str:
        stamp = self.clock()
        if dead or job.attempts >= job.max_attempts:
            values: dict[str, Any] = {"status": "dead", "finished_at": stamp}
        else:
            if retry_at is None:
                retry_at = stamp + timedelta(seconds=backoff_delay(job.backoff_s, job.attempts))
            values = {"status": "queued", "run_after": retry_at}
        values.update(last_error=error[:4000], lease_until=None, lease_token=None, updated_at=stamp)
        with self.engine.begin() as conn:
            result = conn.execute(jobs.update().where(self._held(job)).values(**values))
        if not result.rowcount:
            current = self.get(job.id)
            return current.status if current is not None else "missing"
        return str(values["status"])

    def release(self, job: Job) -> bool:
        stamp = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(self._held(job))
                .values(
                    status="queued",
                    attempts=jobs.c.attempts - 1,
                    run_after=stamp,
                    lease_until=None,
                    lease_token=None,
                    worker_id=None,
                    updated_at=stamp,
                )
            )
        return bool(result.rowcount)

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(jobs.select().where(jobs.c.id == job_id)).first()
        return _job(row._mapping) if row is not None else None

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(jobs.c.status, sa.func.count())
                .where(jobs.c.batch_id == batch_id)
                .group_by(jobs.c.status)
            )
            for status, count in rows:
                counts[str(status)] = int(count)
        return counts

    def batch_jobs(self, batch_id: str) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                jobs.select().where(jobs.c.batch_id == batch_id).order_by(jobs.c.line_no)
            )
            return [_job(r._mapping) for r in rows]


def _aware(value: Any) -> Any:
    """SQLite hands back naive datetimes; every stamp written here is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _job(row: Any) -> Job:
    fields = {name: _aware(row[name]) for name in Job.__dataclass_fields__}
    return Job(**fields)
