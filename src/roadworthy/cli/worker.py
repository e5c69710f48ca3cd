"""``roadworthy worker``: run queued jobs until told to stop."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..jobs import EmbeddedQueue, Worker, WorkerStats
from ..pipeline import Workspace
from .common import console, err_console, handle_errors, load

__all__ = ["worker_command"]


@handle_errors
def worker_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Jobs in flight at once.")
    ] = 4,
    pipeline: Annotated[
        list[str] | None,
        typer.Option("--pipeline", help="Only run jobs of this pipeline (repeatable)."),
    ] = None,
    lease_s: Annotated[
        float,
        typer.Option("--lease", min=0.5, help="Seconds a claim holds a job without a heartbeat."),
    ] = 60.0,
    poll_s: Annotated[
        float, typer.Option("--poll", min=0.01, help="Seconds between looks at an empty queue.")
    ] = 1.0,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="Name in the jobs table (default host:pid).")
    ] = None,
    drain_s: Annotated[
        float,
        typer.Option(
            "--drain-timeout",
            min=0,
            help="Seconds to finish jobs in flight after SIGTERM before releasing them.",
        ),
    ] = 60.0,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")] = None,
) -> None:
    """Run jobs from the queue (`roadworthy run --async`, POST /v1/pipelines/NAME/jobs).

    The queue is the one `queue.backend` names: the embedded jobs table (default) or
    Procrastinate on PostgreSQL. Delivery is at least once and each job still ends with
    exactly one item. SIGTERM or Ctrl-C stops claiming and finishes the jobs in flight
    (releasing what is still running after --drain-timeout); a second one releases them
    back to the queue at once. Exits 0 after a clean stop.
    """
    loaded = load(project)
    workspace = Workspace(loaded)
    try:
        for name in pipeline or []:
            workspace.pipeline(name)  # an unknown name is a usage error, before any claim
        settings = loaded.config.queue
        if settings.backend == "procrastinate":
            _procrastinate(workspace, concurrency, pipeline, worker_id)
            return
        queue = EmbeddedQueue(
            workspace.store, max_attempts=settings.max_attempts, backoff_s=settings.backoff_s
        )
        worker = Worker(
            workspace,
            queue,
            concurrency=concurrency,
            lease_s=lease_s,
            poll_s=poll_s,
            pipelines=pipeline or None,
            worker_id=worker_id,
            drain_s=drain_s,
        )
        err_console.print(
            f"worker {worker.worker_id}: concurrency {concurrency}, lease {lease_s:g}s"
            + (f", pipelines {', '.join(pipeline)}" if pipeline else ""),
            highlight=False,
        )
        stats = workspace.run_async(_serve(worker))
        console.print(
            f"worker stopped: {stats.done} done, {stats.failed} failed, "
            f"{stats.released} released, {stats.lost} lost to other workers",
            highlight=False,
        )
    finally:
        workspace.close()


def _procrastinate(
    workspace: Workspace, concurrency: int, pipelines: list[str] | None, worker_id: str | None
) -> None:
    """A Procrastinate worker: its own signal handling, heartbeats and stalled-job recovery."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # see _serve
    from ..jobs.procrastinate_queue import procrastinate_worker

    if pipelines:
        raise ConfigError(
            "--pipeline filters the embedded queue only; Procrastinate workers run every "
            "pipeline's jobs (hint: drop --pipeline, or use queue.backend: embedded)"
        )
    settings = workspace.project.config.queue
    err_console.print(
        f"procrastinate worker: concurrency {concurrency}, stalled after "
        f"{settings.stalled_after_s:g}s",
        highlight=False,
    )
    workspace.run_async(
        procrastinate_worker(
            workspace,
            concurrency=concurrency,
            worker_id=worker_id,
            max_attempts=settings.max_attempts,
            backoff_s=settings.backoff_s,
            stalled_after_s=settings.stalled_after_s,
        )
    )
    console.print("worker stopped", highlight=False)


async def _serve(worker: Worker) -> WorkerStats:
    stop, stop_now = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            err_console.print("stopping now: releasing jobs in flight")
            stop_now.set()
        else:
            err_console.print("stopping: finishing jobs in flight (signal again to release)")
            stop.set()

    # A blocked signal mask is inherited from whatever started us (a supervisor, a test
    # runner's thread): unblock the stop signals, or a worker could never be stopped.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await worker.run(stop, stop_now)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
