"""``queue``: which job queue backend carries the async path, and its retry policy.

``embedded`` (the default) keeps jobs in the store's own database, SQLite or PostgreSQL,
and needs nothing else; ``procrastinate`` hands delivery to Procrastinate on PostgreSQL
for workers on many machines. Both read and write the same ``jobs`` rows and run the same
job function, so switching moves no data (see :mod:`roadworthy.jobs.procrastinate_queue`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["QueueConfig"]


class QueueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["embedded", "procrastinate"] = "embedded"
    max_attempts: int = Field(5, ge=1, description="deliveries before a job is dead")
    backoff_s: float = Field(5.0, gt=0, description="first retry delay; doubles per attempt")
    stalled_after_s: float = Field(
        60.0,
        gt=0,
        description="procrastinate: a worker silent this long is dead and its jobs are retried",
    )
