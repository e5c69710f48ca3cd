"""``roadworthy run`` on the batch and auto paths, and ``roadworthy batches``.

The sync and async paths live in :mod:`.run`; this module adds the two that mix in a
provider batch API. Both write one run, so ``runs``, the summary table and the output file
(one line per input, in input order, read back from the store) look the same whatever path
an item took.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from ..config.paths import PathName, choose_path
from ..errors import InputRejected
from ..jobs import JobQueue, JobSpec
from ..jobs.batch_run import BatchPath, open_batch_runs
from ..pipeline import ItemResult, Pipeline, Workspace
from ..pipeline.batch import _decode, _lines
from ..store.tables import review_items
from .common import console, err_console, handle_errors, load
from .summary import print_summary

__all__ = ["batches_command", "run_auto", "run_batch", "write_results"]


# SIGTERM stops a run as Ctrl-C does (see Workspace.run_async)
_STOP = (signal.SIGTERM,)


def run_batch(
    workspace: Workspace,
    name: str,
    path: Path,
    *,
    output: Path | None,
    strict: bool,
    resume: bool,
    poll_interval_s: float | None,
) -> None:
    """Send the file through the provider's batch API and wait for every answer.

    With ``resume``, the newest unfinished batch run of this pipeline over the same file is
    picked up: its provider batches are polled, not submitted again.
    """
    with ExitStack() as stack:
        stack.callback(workspace.close)
        pipe = workspace.pipeline(name)
        batch = BatchPath(workspace, pipe, poll_interval_s=poll_interval_s)
        store = workspace.store
        source = str(path.resolve())
        run_id: str | None = None
        if resume:
            earlier = [r for r in open_batch_runs(store, name) if r["source"] == source]
            if earlier:
                run_id = str(earlier[0]["id"])
                err_console.print(
                    f"resuming batch run {run_id}: {earlier[0]['batches']} provider batch(es) "
                    f"still submitted, {earlier[0]['open_items']} item(s) open",
                    highlight=False,
                )
            else:
                err_console.print("no unfinished batch run of this file: starting a new one")
        try:
            if run_id is not None:
                outcome = workspace.run_async(batch.resume(run_id), interrupt_on=_STOP)
            else:
                run_id = store.start_run(name, source, {"path": "batch"})
                err_console.print(
                    f"batch run {run_id}: sending to {batch.model.name} "
                    f"({batch.model.config.provider}) at the batch price",
                    highlight=False,
                )
                outcome = workspace.run_async(batch.run(run_id, _lines(path)), interrupt_on=_STOP)
        except KeyboardInterrupt:
            assert run_id is not None
            store.finish_run(run_id, "interrupted")
            err_console.print(
                "[yellow]interrupted[/]: the provider keeps working on submitted batches; "
                f"`roadworthy run {name} {path} --batch --resume` collects them without "
                "paying twice",
                highlight=False,
            )
            raise typer.Exit(130) from None
        err_console.print(
            f"{outcome.submitted} provider batch(es) submitted, {outcome.resumed} resumed",
            highlight=False,
        )
        _finish(workspace, pipe, run_id, output=output, strict=strict)


def run_auto(
    workspace: Workspace,
    name: str,
    path: Path,
    *,
    queue: JobQueue,
    output: Path | None,
    strict: bool,
    concurrency: int | None,
    poll_interval_s: float | None,
) -> None:
    """Route each line by the pipeline's ``path`` rule, all in one run.

    Async lines are queued first (so workers start on them), sync and batch lines run
    here at the same time, then the queued ones are followed until they finish.
    """
    with ExitStack() as stack:
        stack.callback(workspace.close)
        pipe = workspace.pipeline(name)
        store = workspace.store
        run_id = store.start_run(name, str(path.resolve()), {"path": "auto"})
        groups: dict[PathName, list[tuple[int, Any, bytes]]] = {
            "sync": [],
            "async": [],
            "batch": [],
        }
        for line_no, raw in _lines(path):
            try:
                data = _decode(raw)
            except InputRejected as exc:
                pipe.reject(exc, raw=raw, run_id=run_id, line_no=line_no, key=f"line:{line_no}")
                continue
            groups[choose_path(pipe.config, data)].append((line_no, data, raw))
        counts = ", ".join(f"{len(v)} {k}" for k, v in groups.items())
        err_console.print(f"run {run_id}: {counts}", highlight=False)
        batch = (
            BatchPath(workspace, pipe, poll_interval_s=poll_interval_s) if groups["batch"] else None
        )
        specs = [JobSpec(data, line_no=line_no) for line_no, data, _ in groups["async"]]
        if specs:
            queue.enqueue_many(name, specs, batch_id=run_id)

        async def here() -> None:
            gate = asyncio.Semaphore(concurrency or pipe.default_concurrency())

            async def one(line_no: int, data: Any) -> None:
                async with gate:
                    await pipe.run(data, run_id=run_id, line_no=line_no)

            work: list[Awaitable[object]] = [
                one(line_no, data) for line_no, data, _ in groups["sync"]
            ]
            if batch is not None:
                lines = [(line_no, raw) for line_no, _, raw in groups["batch"]]
                work.append(batch.run(run_id, lines, finish=False))
            await asyncio.gather(*work)

        try:
            workspace.run_async(here(), interrupt_on=_STOP)
            if specs:
                err_console.print(
                    f"following {len(specs)} queued job(s); `roadworthy worker` runs them"
                )
                while any(queue.batch_counts(run_id)[s] for s in ("queued", "running")):
                    time.sleep(0.5)
        except KeyboardInterrupt:
            store.finish_run(run_id, "interrupted")
            err_console.print("[yellow]interrupted[/]: queued jobs and provider batches go on")
            raise typer.Exit(130) from None
        store.finish_run(run_id, "finished")
        _finish(workspace, pipe, run_id, output=output, strict=strict)


def _finish(
    workspace: Workspace, pipe: Pipeline, run_id: str, *, output: Path | None, strict: bool
) -> None:
    summary = workspace.store.run_summary(run_id)
    print_summary(console, summary, unpriced=workspace.unpriced_models)
    if output is not None:
        write_results(pipe, run_id, output)
        console.print(f"results written to {output}")
    unfinished = sum(v for k, v in summary.items_by_status.items() if k != "done")
    if unfinished:
        err_console.print(
            f"[yellow]{unfinished} item(s) did not finish done[/]; their reasons are in the "
            "output file and the store"
        )
        if strict:
            raise typer.Exit(1)


def write_results(pipe: Pipeline, run_id: str, output: Path) -> None:
    """One line per item of the run, in input order, as the sync path writes them."""
    with pipe.store.engine.connect() as conn:
        reviews = {
            str(item_id): str(review_id)
            for review_id, item_id in conn.execute(
                sa.select(review_items.c.id, review_items.c.item_id).where(
                    review_items.c.item_id.is_not(None)
                )
            )
        }
    with output.open("w", encoding="utf-8") as handle:
        for row in pipe.store.items_for_run(run_id):
            result = ItemResult(
                status=row["status"],
                item_id=row["id"],
                output=row["output"],
                reason=row["reason"],
                error_code=row["error_code"],
                error_field=row["error_field"],
                line_no=row["line_no"],
                next_attempt_at=row["next_attempt_at"],
                review_id=reviews.get(str(row["id"])),
            )
            handle.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")


@handle_errors
def batches_command(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only runs of this pipeline.")
    ] = None,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")] = None,
) -> None:
    """List batch-path runs that have not finished, with their provider batches.

    A run is listed when its process died or was interrupted while the provider worked;
    `roadworthy run PIPELINE FILE --batch --resume` picks it up, polling the batches it
    submitted instead of paying for them again.
    """
    from ..store import Store

    loaded = load(project)
    store = Store.open(loaded.storage_url)
    try:
        found = open_batch_runs(store, pipeline)
        if not found:
            console.print("no unfinished batch runs")
            return
        table = Table("run", "pipeline", "source", "status", "provider batches", "open items")
        for run in found:
            table.add_row(
                str(run["id"]),
                str(run["pipeline"]),
                str(run["source"]),
                str(run["status"]),
                str(run["batches"]),
                str(run["open_items"]),
            )
        console.print(table)
    finally:
        store.close()
