"""Tables shared by commands that report on runs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..store import RunSummary

__all__ = ["format_cost", "print_summary"]


def format_cost(value: object) -> str:
    if value is None:
        return "unknown"
    return f"${float(str(value)):.6f}"


def print_summary(
    console: Console, summary: RunSummary, *, unpriced: list[str], resumed: int = 0
) -> None:
    table = Table(
        title=f"run {summary.run_id[:8]} · {summary.pipeline} · {summary.status}", min_width=56
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for status, count in sorted(summary.items_by_status.items()):
        table.add_row(f"items {status}", str(count))
    if resumed:
        table.add_row("items skipped (done before, --resume)", str(resumed))
    table.add_row("model calls", f"{summary.calls} ({summary.failed_calls} failed)")
    table.add_row("input tokens", str(summary.input_tokens))
    table.add_row("cached input tokens", str(summary.cached_read_tokens))
    table.add_row("output tokens", str(summary.output_tokens))
    cost = format_cost(summary.cost_usd)
    if summary.calls_without_cost:
        cost += f" (+ {summary.calls_without_cost} calls of unknown cost)"
    table.add_row("cost", cost)
    table.add_row("item latency p50", _ms(summary.p50_ms))
    table.add_row("item latency p95", _ms(summary.p95_ms))
    console.print(table)
    for name in unpriced:
        console.print(f"[yellow]warning[/]: no price for model {name!r}; its cost is unknown")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
