"""``roadworthy runs`` and ``roadworthy calls``: read the store from a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..store import Store
from .common import console, handle_errors, load
from .summary import format_cost, print_summary

__all__ = ["calls_command", "runs_command"]

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]


@handle_errors
def runs_command(
    limit: Annotated[int, typer.Option(help="How many recent runs.")] = 10,
    run_id: Annotated[str | None, typer.Option("--run", help="Show one run's summary.")] = None,
    project: ProjectOpt = None,
) -> None:
    """List recent batch runs, or summarise one with --run ID (a prefix is enough)."""
    store = Store.open(load(project).storage_url)
    try:
        runs = store.list_runs(limit=500 if run_id else limit)
        if run_id:
            match = [r for r in runs if str(r["id"]).startswith(run_id)]
            if not match:
                console.print(f"no run starting with {run_id!r}")
                raise typer.Exit(1)
            print_summary(console, store.run_summary(str(match[0]["id"])), unpriced=[])
            return
        table = Table(title="runs")
        for col in ("id", "pipeline", "status", "started", "source"):
            table.add_column(col)
        for r in runs:
            table.add_row(
                str(r["id"])[:8],
                str(r["pipeline"]),
                str(r["status"]),
                str(r["started_at"])[:19],
                str(r["source"] or ""),
            )
        console.print(table)
    finally:
        store.close()


@handle_errors
def calls_command(
    run_id: Annotated[str | None, typer.Option("--run", help="Only calls of this run.")] = None,
    trace: Annotated[str | None, typer.Option(help="Only calls of this trace id.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent calls.")] = 20,
    project: ProjectOpt = None,
) -> None:
    """Show the call ledger: one row per model call with tokens, cost, latency and status."""
    store = Store.open(load(project).storage_url)
    try:
        if run_id and len(run_id) < 36:
            full = [r["id"] for r in store.list_runs(500) if str(r["id"]).startswith(run_id)]
            run_id = str(full[0]) if full else run_id
        rows = store.list_calls(run_id=run_id, trace_id=trace, limit=limit)
        table = Table(title="calls (newest first)")
        for col in ("id", "trace", "model", "in", "out", "cached", "cost", "ms", "status"):
            table.add_column(
                col, justify="right" if col in ("in", "out", "cached", "ms") else "left"
            )
        for r in rows:
            table.add_row(
                str(r["id"]),
                str(r["trace_id"])[:8],
                f"{r['provider']}/{r['model']}",
                str(r["input_tokens"]),
                str(r["output_tokens"]),
                str(r["cached_read_tokens"]),
                format_cost(r["cost_usd"]),
                f"{r['latency_ms']:.0f}",
                str(r["status"]) + (f" {r['error_class']}" if r["error_class"] else ""),
            )
        console.print(table)
    finally:
        store.close()
