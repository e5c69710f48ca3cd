"""A worker: claim jobs, run them through their pipelines, keep their leases alive.

``Worker.run(stop)`` claims up to ``concurrency`` jobs at a time. Each job in flight has a
heartbeat that extends its lease every third of the lease, so only a dead (or frozen)
worker's jobs are re-delivered. When ``stop`` is set the worker claims nothing more and
waits for the jobs in flight; when ``stop_now`` is set too (a second Ctrl-C, or the drain
time is over) it cancels them and *releases* them: back to queued, the attempt not
counted, their half-done items finished by whoever claims them next (see
:mod:`.execute`).

The drain is bounded (``drain_s``): an orchestrator sends SIGKILL after its own grace
period anyway, and a job released on time is picked up at once instead of waiting for its
lease to run out. A drain that overruns logs where every job in flight is stuck (task
stacks and thread stacks) before releasing them, because a stuck drain is a bug to find,
not only to survive.

Database calls are synchronous (SQLAlchemy Core), so they run in a thread to keep a busy
SQLite writer from stalling the event loop that the pipelines' model calls share.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import io
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..pipeline import ItemResult, Pipeline, Workspace
from ..secrets import redact
from .embedded import EmbeddedQueue
from .execute import execute_job
from .queue import Job

__all__ = ["Worker", "WorkerStats", "default_worker_id"]

log = logging.getLogger("roadworthy.jobs")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        workspace: Workspace,
        queue: EmbeddedQueue,
        *,
        concurrency: int = 4,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        pipelines: list[str] | None = None,
        worker_id: str | None = None,
        on_result: Callable[[Job, ItemResult], None] | None = None,
        drain_s: float | None = None,
    ) -> None:
        self.workspace = workspace
        self.queue = queue
        self.concurrency = max(1, concurrency)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.pipelines = pipelines
        self.worker_id = worker_id or default_worker_id()
        self.on_result = on_result
        self.drain_s = drain_s
        self.stats = WorkerStats()
        self._pipelines: dict[str, Pipeline] = {}

    def _pipeline(self, name: str) -> Pipeline:
        if name not in self._pipelines:
            self._pipelines[name] = self.workspace.pipeline(name)
        return self._pipelines[name]

    async def run(self, stop: asyncio.Event, stop_now: asyncio.Event | None = None) -> WorkerStats:
        """Work until ``stop`` is set, then drain (or release, once ``stop_now`` is set)."""
        stop_now = stop_now or asyncio.Event()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            if not await _acquire_unless(slots, stop):
                break
            job = await asyncio.to_thread(
                self.queue.claim, self.worker_id, self.lease_s, pipelines=self.pipelines
            )
            if job is None:
                slots.release()
                await _wait_any(stop, self.poll_s)
                continue
            task = asyncio.create_task(self._handle(job))
            tasks.add(task)

            def done(finished: asyncio.Task[None]) -> None:
                tasks.discard(finished)
                slots.release()

            task.add_done_callback(done)
        if tasks:
            log.info("draining %d job(s) in flight", len(tasks))
            deadline = None if self.drain_s is None else time.monotonic() + self.drain_s
            waiter: asyncio.Task[object] = asyncio.create_task(stop_now.wait())
            pending: set[asyncio.Task[object]] = {*tasks, waiter}
            while tasks and not stop_now.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    log.warning(
                        "drain overran %gs; releasing %d job(s). Where they were:\n%s",
                        self.drain_s,
                        len(tasks),
                        _stacks(tasks),
                    )
                    break
                await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                pending = {t for t in pending if not t.done()}
            waiter.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    async def _handle(self, job: Job) -> None:
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            try:
                pipeline = self._pipeline(job.pipeline)
            except ConfigError as exc:  # unknown pipeline or broken config: will not heal
                await asyncio.to_thread(self.queue.fail, job, f"config error: {exc}", dead=True)
                self.stats.failed += 1
                return
            result = await execute_job(pipeline, job)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self.queue.release, job))
            self.stats.released += 1
            raise
        except Exception as exc:  # the store or the worker itself failed: try again later
            error = redact(f"{type(exc).__name__}: {exc}")
            log.warning("job %s failed: %s", job.id, error)
            await asyncio.to_thread(self.queue.fail, job, error)
            self.stats.failed += 1
            return
        finally:
            beat.cancel()
        if await asyncio.to_thread(self.queue.complete, job, result.item_id):
            self.stats.done += 1
            self.stats.statuses[result.status] = self.stats.statuses.get(result.status, 0) + 1
            if self.on_result is not None:
                self.on_result(job, result)
            await asyncio.to_thread(self._finish_batch, job.batch_id)
        else:
            self.stats.lost += 1  # lease lost to another worker; its item is the same row

    def _finish_batch(self, batch_id: str) -> None:
        counts = self.queue.batch_counts(batch_id)
        if not counts["queued"] and not counts["running"]:
            self.queue.store.finish_run(batch_id, "finished")

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await asyncio.to_thread(self.queue.heartbeat, job, self.lease_s):
                log.warning("job %s: lease lost to another worker", job.id)
                return


async def _acquire_unless(slots: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take a slot, or give up when ``stop`` is set first (all slots may stay busy)."""
    acquire = asyncio.create_task(slots.acquire())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not acquire.done():
        acquire.cancel()
        await asyncio.gather(acquire, return_exceptions=True)
    if acquire.cancelled():
        return False
    if stop.is_set():
        slots.release()
        return False
    return True


def _stacks(tasks: set[asyncio.Task[None]]) -> str:
    """Every stuck task's coroutine stack, then every thread's (a blocked store call shows)."""
    out = io.StringIO()
    for task in tasks:
        out.write(f"{task.get_name()}:\n")
        # Task.print_stack shows only the task's own frame; follow the awaits down instead.
        awaited: object = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                out.write(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    with contextlib.suppress(io.UnsupportedOperation, ValueError):
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    return out.getvalue()


async def _wait_any(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
