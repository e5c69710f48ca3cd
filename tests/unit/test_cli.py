"""The command line: help texts, exit codes, and a batch run on a scripted provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app

from ..conftest import SCRIPTED_CONFIG, signal_state, terminal_signals, write_project

runner = CliRunner()

SCRIPTED_WITH_REPLIES = SCRIPTED_CONFIG.replace(
    "  fake: {type: scripted}",
    """  fake:
    type: scripted
    replies:
      - {when: outage, error: ProviderUnavailable}
      - {text: {category: technical, priority: high}, input_tokens: 120, output_tokens: 12}""",
)


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["runs"], ["calls"], ["migrate"]])
def test_every_command_explains_itself(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.split()) > 20


def test_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    root = write_project(tmp_path, SCRIPTED_CONFIG.replace("provider: fake", "provider: fak"))
    result = runner.invoke(app, ["check", "-p", str(root)])
    assert result.exit_code == 2
    assert "configuration error" in result.output
    assert "models.cheap.provider: unknown provider 'fak'" in result.output
    assert "Traceback" not in result.output


def test_missing_project_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROADWORTHY_PROJECT", raising=False)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2 and "no roadworthy.yaml" in result.output


def test_run_writes_results_and_summary(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", SCRIPTED_WITH_REPLIES)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "app is slow"}),
                "{broken",
                json.dumps({"id": "3", "text": "total outage"}),
                json.dumps({"id": "4", "text": "cannot export"}),
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    args = ["run", "triage", str(source), "-p", str(root), "-o", str(out)]
    assert runner.invoke(app, [*args, "--strict"]).exit_code == 1  # some items not done
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output  # every input was recorded somewhere
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["done", "rejected", "failed", "done"]
    assert rows[0]["output"] == {"category": "technical", "priority": "high"}
    for label in ("items done", "items rejected", "items failed", "input tokens", "cost"):
        assert label in result.output
    # gpt-4o-mini prices: 2 * (120 * 0.15 + 12 * 0.60) / 1e6
    assert "$0.000050" in result.output
    assert "did not finish done" in result.output

    again = runner.invoke(
        app, ["run", "triage", str(source), "-p", str(root), "-o", str(out), "--resume"]
    )
    assert "skipped" in again.output
    listing = runner.invoke(app, ["runs", "-p", str(root)])
    assert listing.exit_code == 0 and listing.output.count("triage") >= 2
    calls = runner.invoke(app, ["calls", "-p", str(root)], env={"COLUMNS": "200"})
    assert calls.exit_code == 0 and "ProviderUnavailable" in calls.output


def test_run_unknown_pipeline_exits_2(scripted_project: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    result = runner.invoke(app, ["run", "nope", str(source), "-p", str(scripted_project)])
    assert result.exit_code == 2 and "no pipeline 'nope'" in result.output


@pytest.mark.parametrize(("stop", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_leaves_every_item_ended_and_resume_finishes(
    tmp_path: Path, stop: str, code: int
) -> None:
    """A real SIGINT (Ctrl-C) or SIGTERM (a container stopping) to a real `roadworthy run`."""
    import os
    import signal
    import subprocess
    import sys

    from roadworthy.store import Store

    config = SCRIPTED_CONFIG.replace(
        "  fake: {type: scripted}",
        """  fake:
    type: scripted
    replies:
      - {when: slow, latency_s: 3600, text: {category: other, priority: low}}
      - {text: {category: technical, priority: high}}""",
    )
    root = write_project(tmp_path / "proj", config)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": "slow" if i == 3 else f"t{i}"}) for i in range(10)
        )
    )
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "roadworthy.cli.main",
        "run",
        "triage",
        str(source),
        "-p",
        str(root),
        "-o",
        str(out),
        "-c",
        "2",
    ]
    # PYTHONFAULTHANDLER: a run that does not stop is sent SIGABRT and dumps its threads
    env = {**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=terminal_signals,
    )
    try:
        for _ in range(3000):  # wait for progress (event polling, not a timing assertion)
            if out.exists() and len(out.read_text().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.01"], check=True)
        state = signal_state(proc.pid)
        proc.send_signal(getattr(signal, stop))
        try:
            output = proc.communicate(timeout=60)[0].decode()
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            dump = state + "\n" + proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"run did not stop 60 s after {stop}:\n{dump}")
    finally:
        proc.kill()
    assert proc.returncode == code, output
    assert "interrupted" in output and "Traceback" not in output
    store = Store.open(f"sqlite:///{root / '.roadworthy' / 'state.db'}")
    rows = list(store.iter_table("items"))
    assert rows and all(r["status"] in {"done", "failed"} for r in rows)
    assert any(r["error_code"] == "interrupted" for r in rows)
    assert [r["status"] for r in store.list_runs()] == ["interrupted"]
    store.close()

    # the upstream recovers: drop the hanging reply and resume
    (root / "roadworthy.yaml").write_text(config.replace("latency_s: 3600, ", ""))
    resumed = runner.invoke(
        app, ["run", "triage", str(source), "-p", str(root), "-o", str(out), "--resume"]
    )
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in lines] == list(range(1, 11))
    assert all(r["status"] == "done" for r in lines)
