"""``roadworthy review``: work the human review queue from a terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ..pipeline import Workspace
from ..review import ReviewQueue
from ..store import Store
from .common import console, handle_errors, load

__all__ = ["retry_deferred_command", "review_app"]

review_app = typer.Typer(
    help=(
        "The human review queue: items escalated by a pipeline wait here for a person to "
        "approve, edit or reject the answer."
    ),
    no_args_is_help=True,
)

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]
ReviewerOpt = Annotated[
    str, typer.Option("--reviewer", "-r", envvar="ROADWORTHY_ACTOR", help="Who is reviewing.")
]


def _queue(project: Path | None) -> ReviewQueue:
    return ReviewQueue(Store.open(load(project).storage_url))


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


@review_app.command("list")
@handle_errors
def list_command(
    status: Annotated[
        str, typer.Option(help="pending, claimed, resolved or discarded.")
    ] = "pending",
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
    project: ProjectOpt = None,
) -> None:
    """List review items, oldest first, with queue depth and the age of the oldest."""
    queue = _queue(project)
    table = Table(title=f"review items: {status}")
    for col in ("id", "pipeline", "reason", "created", "claimed by"):
        table.add_column(col)
    for item in queue.list(status=status, pipeline=pipeline, limit=limit):
        table.add_row(
            item.id[:8],
            item.pipeline,
            item.reason[:80],
            str(item.created_at)[:19],
            item.claimed_by or "",
        )
    console.print(table)
    stats = queue.stats(pipeline)
    oldest = (
        f"{stats.oldest_pending_age_s:.0f} s" if stats.oldest_pending_age_s is not None else "-"
    )
    median = f"{stats.median_resolution_s:.0f} s" if stats.median_resolution_s is not None else "-"
    console.print(
        f"pending {stats.pending} · claimed {stats.claimed} · resolved {stats.resolved} · "
        f"oldest pending {oldest} · median resolution {median}"
    )
    queue.store.close()


@review_app.command("show")
@handle_errors
def show_command(
    review_id: Annotated[str, typer.Argument(metavar="ID")], project: ProjectOpt = None
) -> None:
    """Show one item: input, model output, reason, context and its trace of calls."""
    queue = _queue(project)
    item = queue.get(review_id)
    if item is None:
        raise ConfigError(f"no review item {review_id!r}")
    console.print(f"[bold]{item.id}[/] · {item.pipeline} · {item.status}", highlight=False)
    console.print(f"reason: {item.reason}", highlight=False, markup=False)
    console.print("input:", _dump(item.input), highlight=False, markup=False)
    console.print("model output:", _dump(item.output), highlight=False, markup=False)
    if item.decision:
        console.print(
            f"decision: {item.decision} by {item.reviewer} ({item.note or ''})",
            highlight=False,
            markup=False,
        )
        console.print("final output:", _dump(item.final_output), highlight=False, markup=False)
    if item.trace_id:
        calls = queue.store.list_calls(trace_id=item.trace_id)
        for call in reversed(calls):
            console.print(
                f"  call {call['id']}: {call['provider']}/{call['model']} {call['status']} "
                f"{call['error_class'] or ''} {call['latency_ms']:.0f} ms",
                highlight=False,
            )
    queue.store.close()


@review_app.command("claim")
@handle_errors
def claim_command(
    review_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="Default: the oldest pending.")
    ] = None,
    reviewer: ReviewerOpt = "reviewer",
    lease: Annotated[
        float, typer.Option(help="Lease in seconds; after it the item is free again.")
    ] = 900,
    project: ProjectOpt = None,
) -> None:
    """Claim an item so no one else works on it; exit 1 when none is free."""
    queue = _queue(project)
    item = queue.claim(reviewer, review_id=review_id, lease_s=lease)
    if item is None:
        console.print("nothing to claim")
        raise typer.Exit(1)
    console.print(
        f"claimed {item.id[:8]} until {str(item.lease_expires_at)[:19]}: {item.reason}",
        highlight=False,
        markup=False,
    )
    queue.store.close()


@review_app.command("resolve")
@handle_errors
def resolve_command(
    review_id: Annotated[str, typer.Argument(metavar="ID")],
    decision: Annotated[str, typer.Option(help="approve, edit or reject.")],
    output: Annotated[str | None, typer.Option(help="Corrected output as JSON (for edit).")] = None,
    note: Annotated[str | None, typer.Option(help="Why; kept with the decision.")] = None,
    reviewer: ReviewerOpt = "reviewer",
    project: ProjectOpt = None,
) -> None:
    """Approve, edit or reject a claimed item; the pipeline item ends with that result."""
    if decision not in ("approve", "edit", "reject"):
        raise ConfigError(f"--decision must be approve, edit or reject, not {decision!r}")
    value: Any = None
    if output is not None:
        try:
            value = json.loads(output)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--output is not valid JSON: {exc.msg}") from None
    queue = _queue(project)
    item = queue.resolve(
        review_id,
        reviewer=reviewer,
        decision=decision,  # type: ignore[arg-type]
        output=value,
        note=note,
    )
    console.print(f"{item.id[:8]} resolved: {decision}", highlight=False)
    queue.store.close()


@review_app.command("discard")
@handle_errors
def discard_command(
    review_id: Annotated[str, typer.Argument(metavar="ID")],
    note: Annotated[str, typer.Option(help="Why it is discarded.")],
    reviewer: ReviewerOpt = "reviewer",
    project: ProjectOpt = None,
) -> None:
    """Drop an item from the queue (spam, duplicate); its pipeline item ends failed with the note."""
    queue = _queue(project)
    queue.discard(review_id, reviewer=reviewer, note=note)
    console.print(f"{review_id} discarded")
    queue.store.close()


@review_app.command("export")
@handle_errors
def export_command(
    to_dataset: Annotated[Path, typer.Option("--to-dataset", help="JSONL dataset to append to.")],
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Append approved and edited items to an evaluation dataset (each correction once)."""
    queue = _queue(project)
    count = queue.export(to_dataset, pipeline=pipeline)
    console.print(f"{count} examples appended to {to_dataset}")
    queue.store.close()


@handle_errors
def retry_deferred_command(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 100,
    project: ProjectOpt = None,
) -> None:
    """Run deferred items whose retry time has come; each ends done or takes its next path."""
    workspace = Workspace(load(project))
    try:
        results = workspace.run_async(workspace.pipeline(pipeline).retry_deferred(limit=limit))
    finally:
        workspace.close()
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none due"
    console.print(f"retried {len(results)}: {summary}")
