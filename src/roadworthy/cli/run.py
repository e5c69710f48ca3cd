"""``roadworthy run``: process a JSONL file through a pipeline."""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import Project
from ..errors import InputRejected
from ..jobs import JobQueue, JobSpec
from ..jobs.backends import open_queue
from ..pipeline import BatchOutcome, ItemResult, Workspace, count_inputs, run_file
from ..pipeline.batch import _decode, _lines
from .common import EXIT_CONFIG, console, err_console, handle_errors, load
from .run_paths import run_auto, run_batch, write_results
from .summary import print_summary

__all__ = ["run_command"]


class PathMode(StrEnum):
    sync = "sync"
    async_ = "async"
    batch = "batch"
    auto = "auto"


ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: nearest with roadworthy.yaml)."),
]


@handle_errors
def run_command(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name from roadworthy.yaml.")],
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT.jsonl", help="One JSON object per line.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write one result line per input here.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=256,
            help="Items in flight at once (default 4, or 1 for an in-process model).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Skip inputs whose item already finished done (sync), or pick up the "
            "unfinished batch run of this file (batch). Refused on async and auto.",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 unless every item finished done.")
    ] = False,
    async_: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Queue the lines as jobs for `roadworthy worker` and follow the batch "
            "(Ctrl-C stops following; the jobs stay queued).",
        ),
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Send the lines through the model's provider batch API at its discount and "
            "wait for the answers (with --resume: pick up an interrupted batch run).",
        ),
    ] = False,
    path: Annotated[
        PathMode | None,
        typer.Option(
            "--path",
            help="Override the pipeline's `path` rule: sync, async, batch or auto.",
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            "--poll-interval",
            min=0,
            help="Seconds between batch status polls (default: pipelines.NAME.batch).",
        ),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Run every line of INPUT.jsonl through PIPELINE and print a summary.

    The pipeline's `path` rule (or --path, --async, --batch) says how: sync runs here,
    async queues jobs for `roadworthy worker`, batch goes through the provider's batch
    API at its discount, auto routes each line by size and priority. Each input ends as
    done, rejected (bad line, failed validation) or failed (model or output error), with
    the reason stored. Ctrl-C stops cleanly; rerun with --resume to
    continue where it stopped. Exit codes: 0 when every input was recorded (whatever its
    status; with --strict, only when all are done), 1 with --strict when some are not
    done, 2 for configuration errors, 130 when interrupted.
    """
    if not input_path.is_file():
        err_console.print(f"[red]input file not found:[/] {input_path}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = load(project)
    mode = _mode(loaded, pipeline, path, async_=async_, batch=batch)
    if resume and mode in ("async", "auto"):
        # Ignoring the flag would start a new run and send every line again, paying twice
        # for what the earlier run's queued jobs and provider batches are still doing.
        err_console.print(
            f"[red]--resume works on the sync and batch paths, not on {mode}[/]: the queued "
            "jobs and provider batches of the earlier run keep going (`roadworthy runs` "
            "shows it); running the file again would send every line again",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    if mode == "async":
        _run_async(Workspace(loaded), pipeline, input_path, output=output, strict=strict)
        return
    if mode == "batch":
        run_batch(
            Workspace(loaded),
            pipeline,
            input_path,
            output=output,
            strict=strict,
            resume=resume,
            poll_interval_s=poll_interval,
        )
        return
    if mode == "auto":
        workspace = Workspace(loaded)
        with open_queue(workspace) as queue:
            run_auto(
                workspace,
                pipeline,
                input_path,
                queue=queue,
                output=output,
                strict=strict,
                concurrency=concurrency,
                poll_interval_s=poll_interval,
            )
        return
    total = count_inputs(input_path)
    workspace = Workspace(loaded)
    run_ids: list[str] = []
    outcome: BatchOutcome | None = None
    interrupted = 0  # the exit code when a signal stopped the run
    with ExitStack() as stack:
        stack.callback(workspace.close)
        pipe = workspace.pipeline(pipeline)
        for note in workspace.unsynced_prompt_notes(pipe):
            err_console.print(f"[yellow]note[/]: {note}", highlight=False)
        out: IO[str] | None = None
        if output is not None:
            out = stack.enter_context(output.open("w", encoding="utf-8"))
        progress = stack.enter_context(
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=err_console,
                transient=False,
            )
        )
        counts: dict[str, int] = {}
        task = progress.add_task(pipeline, total=total, status="")

        def on_result(result: ItemResult) -> None:
            counts[result.status] = counts.get(result.status, 0) + 1
            label = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            progress.update(task, advance=1, status=label)

        try:
            outcome = workspace.run_async(
                run_file(
                    pipe,
                    input_path,
                    output=out,
                    concurrency=concurrency or pipe.default_concurrency(),
                    resume=resume,
                    on_result=on_result,
                    run_id_callback=run_ids.append,
                ),
                interrupt_on=(signal.SIGTERM,),
            )
        except KeyboardInterrupt as stop:
            # 128 + the signal's number, as a shell reports a job the signal stopped
            interrupted = 143 if stop.args == ("SIGTERM",) else 130
    if not run_ids:
        raise typer.Exit(1)
    summary = workspace.store.run_summary(run_ids[0])
    resumed = outcome.resumed if outcome is not None else 0
    print_summary(console, summary, unpriced=workspace.unpriced_models, resumed=resumed)
    if interrupted:
        err_console.print("[yellow]interrupted[/]: rerun with --resume to continue")
        raise typer.Exit(interrupted)
    if output is not None:
        console.print(f"results written to {output}")
    unfinished = sum(v for k, v in summary.items_by_status.items() if k != "done")
    if unfinished:
        err_console.print(
            f"[yellow]{unfinished} item(s) did not finish done[/]; their reasons are in the "
            "output file and the store"
        )
        if strict:
            raise typer.Exit(1)


def _mode(loaded: Project, name: str, path: PathMode | None, *, async_: bool, batch: bool) -> str:
    """The path for this run: a flag if given (at most one), else the pipeline's rule."""
    chosen = [m for m, on in (("async", async_), ("batch", batch)) if on]
    if path is not None:
        chosen.append(path.value)
    if len(set(chosen)) > 1:
        err_console.print(
            f"[red]choose one path[/]: {', '.join(sorted(set(chosen)))} given together"
        )
        raise typer.Exit(EXIT_CONFIG)
    if chosen:
        return chosen[0]
    config = loaded.config.pipelines.get(name)
    return config.path.mode if config is not None else "sync"


def _run_async(
    workspace: Workspace, name: str, path: Path, *, output: Path | None, strict: bool
) -> None:
    """Queue the file as one batch, then follow it until no job is queued or running.

    The batch is a run, so its summary is the same table a synchronous run prints. Lines
    that are not JSON are rejected here, under their line number; every other line becomes
    a job whose item carries its line number, as a synchronous run's would.
    """
    with ExitStack() as stack:
        stack.callback(workspace.close)
        pipe = workspace.pipeline(name)
        queue = stack.enter_context(open_queue(workspace))
        batch_id = queue.new_batch(name, str(path))
        specs: list[JobSpec] = []
        for line_no, raw in _lines(path):
            try:
                specs.append(JobSpec(_decode(raw), line_no=line_no))
            except InputRejected as exc:
                pipe.reject(exc, raw=raw, run_id=batch_id, line_no=line_no, key=f"line:{line_no}")
        queue.enqueue_many(name, specs, batch_id=batch_id)
        err_console.print(
            f"queued {len(specs)} job(s) as batch {batch_id}; `roadworthy worker` runs them",
            highlight=False,
        )
        if not specs:
            workspace.store.finish_run(batch_id, "finished")
        elif not _follow(queue, batch_id, name, len(specs)):
            err_console.print(
                f"[yellow]stopped following[/]: batch {batch_id} stays queued "
                f"(GET /v1/batches/{batch_id})",
                highlight=False,
            )
            raise typer.Exit(130)
        workspace.store.finish_run(batch_id, "finished")  # the worker may not have yet
        summary = workspace.store.run_summary(batch_id)
        print_summary(console, summary, unpriced=workspace.unpriced_models)
        dead = queue.batch_counts(batch_id)["dead"]
        if dead:
            err_console.print(f"[red]{dead} job(s) dead[/]: see their last_error")
        if output is not None:
            write_results(pipe, batch_id, output)
            console.print(f"results written to {output}")
        unfinished = sum(v for k, v in summary.items_by_status.items() if k != "done")
        if strict and (unfinished or dead):
            raise typer.Exit(1)


def _follow(queue: JobQueue, batch_id: str, name: str, total: int) -> bool:
    """Show the batch's progress until it is finished; False on Ctrl-C."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task(name, total=total, status="")
        try:
            while True:
                counts = queue.batch_counts(batch_id)
                label = " ".join(f"{k}={v}" for k, v in counts.items() if v)
                progress.update(task, completed=counts["done"] + counts["dead"], status=label)
                if not counts["queued"] and not counts["running"]:
                    return True
                time.sleep(0.5)
        except KeyboardInterrupt:
            return False
