"""budget status, drill and fake-upstream, through a small Typer app of their own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import typer
from typer.testing import CliRunner

from roadworthy.cli.stack import budget_app, drill_command, fake_upstream_command
from roadworthy.config import load_project
from roadworthy.models import budget_limits
from roadworthy.store import Store
from roadworthy.store.budgets import BudgetLedger
from roadworthy.testing import Fault, load_schedule

from ..conftest import write_project

app = typer.Typer()
app.add_typer(budget_app, name="budget")
app.command("drill")(drill_command)
app.command("fake-upstream")(fake_upstream_command)
runner = CliRunner()

GOOD = {"category": "billing", "priority": "high"}
CONFIG = f"""\
storage: sqlite:///.roadworthy/state.db
providers:
  good: {{type: scripted, replies: [{{text: {json.dumps(json.dumps(GOOD))}}}]}}
  expired: {{type: scripted, replies: [{{error: AuthFailed}}]}}
models:
  a: {{provider: good, id: gpt-4o-mini, tier: small}}
  b: {{provider: expired, id: gpt-4o, tier: large}}
  c: {{provider: good, id: gpt-4.1, tier: large}}
routes:
  triage: {{fallbacks: [a, BROKEN, c], budget: daily}}
budgets:
  daily: {{limit_usd: 1, period: day, soft: [0.5]}}
  monthly: {{limit_usd: 30, period: month, scope: global, on_exceed: downgrade}}
pipelines:
  triage:
    input: {{fields: {{text: {{type: string}}}}}}
    steps:
      - generate: {{prompt: triage, route: triage, output: schemas/triage.json}}
"""


def project(tmp_path: Path, broken: bool) -> Path:
    root = write_project(tmp_path / "proj", CONFIG.replace("BROKEN", "b" if broken else "a2"))
    if not broken:
        text = (root / "roadworthy.yaml").read_text()
        text = text.replace("  c: {", "  a2: {provider: good, id: gpt-4o, tier: large}\n  c: {")
        (root / "roadworthy.yaml").write_text(text)
    (tmp_path / "in.jsonl").write_text('{"text": "charged twice"}\n{"text": "login fails"}\n')
    return root


def test_budget_status_shows_spend_and_alerts(tmp_path: Path) -> None:
    root = project(tmp_path, broken=True)
    loaded = load_project(root)
    store = Store.open(loaded.storage_url)
    ledger = BudgetLedger(store.engine)
    limits = budget_limits(loaded.config)
    reservation = ledger.reserve([limits["daily"]], Decimal("0.6"))
    ledger.settle(reservation, Decimal("0.55"))
    store.close()
    result = runner.invoke(app, ["budget", "status", "--project", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["budget"]: r for r in json.loads(result.output)["budgets"]}
    assert Decimal(rows["daily"]["spent_usd"]) == Decimal("0.55")
    assert rows["daily"]["alerts"] == [0.5] and rows["monthly"]["spent_usd"] == "0"
    table = runner.invoke(app, ["budget", "status", "--project", str(root)])
    assert table.exit_code == 0 and "daily" in table.output and "alert" in table.output


def test_drill_exits_non_zero_naming_the_broken_hop(tmp_path: Path) -> None:
    root = project(tmp_path, broken=True)
    args = ["drill", "triage", "--project", str(root), "--input", str(tmp_path / "in.jsonl")]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    (report,) = json.loads(result.output)["routes"]
    assert [(h["model"], h["ok"], h["error_class"]) for h in report["hops"]] == [
        ("a", True, None),
        ("b", False, "AuthFailed"),
        ("c", True, None),
    ]
    table = runner.invoke(app, args)
    assert table.exit_code == 1 and "AuthFailed" in table.output


def test_drill_passes_when_every_hop_answers(tmp_path: Path) -> None:
    root = project(tmp_path, broken=False)
    result = runner.invoke(
        app, ["drill", "--project", str(root), "--input", str(tmp_path / "in.jsonl")]
    )
    assert result.exit_code == 0, result.output


def test_drill_without_inputs_is_a_config_error(tmp_path: Path) -> None:
    root = project(tmp_path, broken=False)
    result = runner.invoke(app, ["drill", "--project", str(root)])
    assert result.exit_code == 2 and "no inputs to drill with" in result.output


def test_schedule_file_and_fake_upstream_command(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        "faults:\n  - {preset: rate_limited, retry_after: 2}\n  - {preset: ok, times: 2}\n"
        "cycle: true\nlimits: {rpm: 100, window_s: 1}\n"
    )
    options = load_schedule(schedule)
    assert [f.kind for f in options["schedule"]] == ["status", "ok", "ok"]
    assert options["cycle"] and options["limits"].rpm == 100
    assert isinstance(options["schedule"][1], Fault)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "import typer; from roadworthy.cli.stack import fake_upstream_command as c; typer.run(c)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--schedule", str(schedule), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        statuses = []
        for _ in range(200):  # wait for it to listen (polling, not timing)
            try:
                payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                for _ in range(3):
                    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=payload)
                    statuses.append(r.status_code)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert statuses == [429, 200, 200]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
