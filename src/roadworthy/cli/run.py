"""``roadworthy run``: process a JSONL file through a pipeline."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..pipeline import BatchOutcome, ItemResult, Workspace, count_inputs, run_file
from .common import EXIT_CONFIG, console, err_console, handle_errors, load
from .summary import print_summary

__all__ = ["run_command"]

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
        bool, typer.Option("--resume", help="Skip inputs whose item already finished done.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 unless every item finished done.")
    ] = False,
    project: ProjectOpt = None,
) -> None:
    """Run every line of INPUT.jsonl through PIPELINE and print a summary.

    Each input ends as done, rejected (bad line, failed validation) or failed (model or
    output error), with the reason stored. Ctrl-C stops cleanly; rerun with --resume to
    continue where it stopped. Exit codes: 0 when every input was recorded (whatever its
    status; with --strict, only when all are done), 1 with --strict when some are not
    done, 2 for configuration errors, 130 when interrupted.
    """
    if not input_path.is_file():
        err_console.print(f"[red]input file not found:[/] {input_path}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = load(project)
    total = count_inputs(input_path)
    workspace = Workspace(loaded)
    run_ids: list[str] = []
    outcome: BatchOutcome | None = None
    interrupted = False
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
            outcome = asyncio.run(
                run_file(
                    pipe,
                    input_path,
                    output=out,
                    concurrency=concurrency or pipe.default_concurrency(),
                    resume=resume,
                    on_result=on_result,
                    run_id_callback=run_ids.append,
                )
            )
        except KeyboardInterrupt:
            interrupted = True
    if not run_ids:
        raise typer.Exit(1)
    summary = workspace.store.run_summary(run_ids[0])
    resumed = outcome.resumed if outcome is not None else 0
    print_summary(console, summary, unpriced=workspace.unpriced_models, resumed=resumed)
    if interrupted:
        err_console.print("[yellow]interrupted[/]: rerun with --resume to continue")
        raise typer.Exit(130)
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
