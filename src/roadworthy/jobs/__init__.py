"""The job queue: the async path of issue 9.

``JobQueue`` (:mod:`.queue`) is the contract; ``EmbeddedQueue`` (:mod:`.embedded`) keeps
jobs in the store's own database (SQLite or PostgreSQL); ``execute_job``
(:mod:`.execute`) turns at-least-once delivery into one item per job; ``Worker``
(:mod:`.worker`) runs them, as ``roadworthy worker`` does; ``open_queue``
(:mod:`.backends`) opens the backend ``queue.backend`` names. The batch path of
``roadworthy run`` is :mod:`.batch_run` over the provider batch APIs of :mod:`.batch`.
"""

from __future__ import annotations

from .backends import open_queue
from .embedded import EmbeddedQueue
from .execute import execute_job, item_for_job
from .queue import Job, JobQueue, JobSpec, backoff_delay
from .worker import Worker, WorkerStats, default_worker_id

__all__ = [
    "EmbeddedQueue",
    "Job",
    "JobQueue",
    "JobSpec",
    "Worker",
    "WorkerStats",
    "backoff_delay",
    "default_worker_id",
    "execute_job",
    "item_for_job",
    "open_queue",
]
