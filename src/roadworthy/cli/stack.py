"""Commands for the model stack: budget status, fallback drills, the fake upstream.

The lead registers them in ``cli/main.py``::

    app.add_typer(budget_app, name="budget")
    app.command("drill")(drill_command)
    app.command("fake-upstream")(fake_upstream_command)
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ..models import budget_limits, run_drill
from ..models.drill import DrillReport
from ..pipeline.generate import GenerateRunner
from ..pipeline.workspace import Workspace
from ..store import Store
from ..store.budgets import BudgetLedger, DrillLog
from ..testing.faults import FaultServer, load_schedule
from .common import console, handle_errors, load

__all__ = ["budget_app", "drill_command", "fake_upstream_command"]

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

budget_app = typer.Typer(
    help="Budgets: spend against limits per day and month.", no_args_is_help=True
)


@budget_app.command("status")
@handle_errors
def budget_status_command(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Show each budget's spend, reservations and alerts for the current period."""
    loaded = load(project)
    limits = budget_limits(loaded.config)
    store = Store.open(loaded.storage_url)
    try:
        ledger = BudgetLedger(store.engine)
        rows = ledger.status(list(limits.values()))
        alerts = ledger.alerts(limit=10)
    finally:
        store.close()
    scopes = {name: b.scope for name, b in loaded.config.budgets.items()}
    if as_json:
        out = [
            {
                "budget": r.name,
                "scope": scopes[r.name],
                "period": r.period,
                "limit_usd": str(r.limit_usd),
                "spent_usd": str(r.spent_usd),
                "reserved_usd": str(r.reserved_usd),
                "used_share": round(r.used_share, 4),
                "on_exceed": r.on_exceed,
                "alerts": r.alerts,
            }
            for r in rows
        ]
        console.print_json(json.dumps({"budgets": out}))
        return
    if not rows:
        console.print("no budgets configured (add a `budgets:` section to roadworthy.yaml)")
        return
    table = Table("budget", "scope", "period", "spent", "reserved", "limit", "used", "on exceed")
    for r in rows:
        used = f"{r.used_share:.0%}"
        style = "red" if r.used_share >= 1 else ("yellow" if r.alerts else "")
        table.add_row(
            r.name,
            scopes[r.name],
            r.period,
            f"${r.spent_usd:.4f}",
            f"${r.reserved_usd:.4f}",
            f"${r.limit_usd}",
            f"[{style}]{used}[/]" if style else used,
            r.on_exceed,
        )
    console.print(table)
    for alert in alerts:
        console.print(
            f"[yellow]alert[/] {alert['budget']} passed {alert['threshold']:.0%} of its limit "
            f"for {alert['period']} (at {alert['created_at']:%Y-%m-%d %H:%M} UTC)"
        )


def _samples(ws: Workspace, route: str, inputs: Path | None, limit: int) -> list[Any]:
    """(runner, variables) pairs: from --input, else the prompt's own samples."""
    for pname in ws.project.config.pipelines:
        for runner in ws.pipeline(pname).steps:
            if not isinstance(runner, GenerateRunner) or runner.step.route != route:
                continue
            if inputs is not None:
                lines = [ln for ln in inputs.read_text(encoding="utf-8").splitlines() if ln.strip()]
                variables = [json.loads(ln) for ln in lines[:limit]]
            else:
                resolved = ws.prompts.resolve(runner.step.prompt)
                variables = list(resolved.doc.samples[:limit])
            if variables:
                return [runner, variables]
    raise ConfigError(
        f"route {route!r}: no inputs to drill with (hint: pass --input FILE.jsonl, or add "
        "samples to the prompt of a pipeline step that uses the route)"
    )


@handle_errors
def drill_command(
    route: Annotated[str | None, typer.Argument(help="Route to drill (default: all).")] = None,
    inputs: Annotated[
        Path | None, typer.Option("--input", help="JSONL of step variables to send.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Inputs per hop.")] = 3,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Force each fallback hop of each route in turn, on real inputs; exit 1 if one fails.

    The hops before the drilled one are made to fail without being called, with an error
    the drilled hop is configured to take over on. Results are stored; the last result
    per hop is shown here and kept for the dashboard.
    """
    loaded = load(project)
    names = [route] if route is not None else sorted(loaded.config.routes)
    if route is not None and route not in loaded.config.routes:
        raise ConfigError(f"no route {route!r} (known: {', '.join(names) or 'none'})")
    ws = Workspace(loaded)
    reports: list[DrillReport] = []
    try:

        async def go() -> None:
            for name in names:
                runner, variables = _samples(ws, name, inputs, limit)
                requests, variants, check = runner.drill_inputs(variables)
                reports.append(
                    await run_drill(
                        ws.route(name),
                        requests,
                        recorder=ws.stack.drill_recorder,
                        check=check,
                        variants=variants,
                    )
                )
            await ws.aclose()

        asyncio.run(go())
        latest = DrillLog(ws.store.engine).latest()
    finally:
        ws.close()
    if as_json:
        console.print_json(json.dumps({"routes": [r.to_json() for r in reports]}))
    else:
        table = Table("route", "hop", "model", "status", "error")
        for row in latest:
            if row["route"] in names:
                ok = row["status"] == "ok"
                table.add_row(
                    row["route"],
                    str(row["hop"]),
                    row["model_name"],
                    "[green]ok[/]" if ok else "[red]failed[/]",
                    row["error_class"] or "",
                )
        console.print(table)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def fake_upstream_command(
    schedule: Annotated[
        Path | None, typer.Option("--schedule", help="YAML/JSON fault schedule.")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any).")] = 8089,
) -> None:
    """Serve an OpenAI-compatible upstream that fails on a schedule, until Ctrl-C.

    The schedule lists faults (429 with and without Retry-After, 5xx, hangs, resets,
    malformed or truncated bodies, slow first byte, context-length errors, content
    filters) in order or as a seeded mix, and may set the server's own RPM/TPM limits.
    """
    try:
        options = load_schedule(schedule) if schedule is not None else {}
    except (OSError, ValueError, TypeError) as exc:
        console.print(f"[red]bad schedule[/]: {exc}")
        raise typer.Exit(2) from None
    server = FaultServer(**options, port=port, keep_requests=False).start()
    console.print(f"fake upstream on {server.url}/v1 (Ctrl-C to stop)", highlight=False)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        console.print(f"served: {dict(server.served)}")
