"""The job queue contract that every backend implements, and the job it hands out.

Delivery is at least once: a job whose worker dies (no heartbeat before the lease
deadline) is claimed again by another worker. What makes the *visible* effect exactly once
is not the queue but :func:`roadworthy.jobs.execute.execute_job`, which finds the item a
previous attempt already produced instead of creating a second one.

Every method that changes a claimed job takes the :class:`Job` returned by ``claim``: its
``lease_token`` fences the change, so a worker whose lease expired (and whose job another
worker now holds) cannot complete, fail or extend it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Job", "JobQueue", "JobSpec", "backoff_delay"]


@dataclass(frozen=True)
class JobSpec:
    """One item to enqueue; ``line_no`` defaults to the next line of its batch."""

    payload: Any
    idempotency_key: str | None = None
    priority: int = 0
    line_no: int | None = None


@dataclass(frozen=True)
class Job:
    """A job as stored: what to run, where it stands, and the lease that holds it."""

    id: str
    pipeline: str
    batch_id: str
    line_no: int
    payload: Any
    status: str
    priority: int
    idempotency_key: str | None
    attempts: int
    max_attempts: int
    backoff_s: float
    run_after: datetime
    lease_until: datetime | None
    lease_token: str | None
    worker_id: str | None
    item_id: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The public view (the server's ``GET /v1/jobs/{id}``); the lease token stays out."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "batch_id": self.batch_id,
            "status": self.status,
            "priority": self.priority,
            "idempotency_key": self.idempotency_key,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "item_id": self.item_id,
            "last_error": self.last_error,
            "run_after": self.run_after.isoformat(),
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def backoff_delay(backoff_s: float, attempts: int, cap_s: float = 3600.0) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``backoff_s``, capped."""
    return float(min(cap_s, backoff_s * 2 ** max(0, attempts - 1)))


class JobQueue(Protocol):
    """What workers, the server and ``roadworthy run --async`` need of a queue."""

    def new_batch(self, pipeline: str, source: str | None = None) -> str:
        """Open a batch (a ``runs`` row that the jobs' items belong to); return its id."""
        ...

    def enqueue(
        self,
        pipeline: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        batch_id: str | None = None,
    ) -> str:
        """Queue one job and return its id; a known idempotency key returns that job's id."""
        ...

    def enqueue_many(
        self, pipeline: str, specs: list[JobSpec], *, batch_id: str | None = None
    ) -> tuple[str, list[str]]:
        """Queue many jobs in one batch; return ``(batch_id, job ids)`` in input order."""
        ...

    def claim(
        self, worker_id: str, lease_s: float, *, pipelines: list[str] | None = None
    ) -> Job | None:
        """Take the most urgent runnable job (or one whose lease expired), or None."""
        ...

    def heartbeat(self, job: Job, lease_s: float) -> bool:
        """Extend the lease; False when the job is no longer this claim's to run."""
        ...

    def complete(self, job: Job, item_id: str | None) -> bool:
        """End the job done with the item it produced; False when the claim was lost."""
        ...

    def fail(
        self, job: Job, error: str, *, retry_at: datetime | None = None, dead: bool = False
    ) -> str:
        """Record a failed attempt: queued again (with backoff) or dead; return the status."""
        ...

    def release(self, job: Job) -> bool:
        """Give a claimed job back unfinished (shutdown); the attempt is not counted."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        """Jobs of a batch by status (every status present, zero included)."""
        ...
