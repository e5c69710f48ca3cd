"""The job queue the project's config chooses: ``queue: {backend: embedded | procrastinate}``.

Producers (``roadworthy run --async``, the auto path) and ``roadworthy worker`` open the
queue here, so one line of config moves a project from the embedded table to Procrastinate
without touching pipeline code or data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .embedded import EmbeddedQueue
from .queue import JobQueue

if TYPE_CHECKING:
    from ..pipeline import Workspace

__all__ = ["open_queue"]


@contextmanager
def open_queue(workspace: Workspace) -> Iterator[JobQueue]:
    """The configured queue, open for producing jobs until the block ends."""
    config = workspace.project.config.queue
    if config.backend == "embedded":
        yield EmbeddedQueue(
            workspace.store, max_attempts=config.max_attempts, backoff_s=config.backoff_s
        )
        return
    from .procrastinate_queue import producer_queue

    with producer_queue(
        workspace.store, max_attempts=config.max_attempts, backoff_s=config.backoff_s
    ) as queue:
        yield queue
