"""``roadworthy ingest check`` through Typer's CliRunner on the sub-app itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from roadworthy.cli.ingest import ingest_app

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"
runner = CliRunner()


def _verdicts(output: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {Path(str(v["path"])).name: v for v in lines}


def test_all_accepted_exits_0(tmp_path: Path) -> None:
    for name in ("hello.txt", "notes.md", "rows.csv", "hello.pdf"):
        shutil.copy(DATA / name, tmp_path / name)
    result = runner.invoke(ingest_app, ["check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    verdicts = _verdicts(result.output)
    assert set(verdicts) == {"hello.txt", "notes.md", "rows.csv", "hello.pdf"}
    assert all(v["status"] == "accepted" for v in verdicts.values())
    assert verdicts["hello.pdf"]["kind"] == "pdf"
    assert verdicts["hello.txt"]["route"] == {
        "route": "default",
        "reason": "default",
        "language": "en",
        "script": "Latin",
        "label": None,
        "score": None,
    }


def test_any_rejected_exits_1_with_code_and_message() -> None:
    result = runner.invoke(
        ingest_app,
        ["check", str(DATA / "fake.pdf"), str(DATA / "ragged.csv"), str(DATA / "hello.txt")],
    )
    assert result.exit_code == 1, result.output
    verdicts = _verdicts(result.output)
    assert verdicts["fake.pdf"]["code"] == "type_mismatch"
    assert verdicts["ragged.csv"]["code"] == "malformed_csv"
    assert verdicts["hello.txt"]["status"] == "accepted"


def test_flags_changes_and_pii_are_printed(tmp_path: Path) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text("ingest:\n  screen: {injection: review, pii: redact}\n")
    (tmp_path / "pii.txt").write_text("write to jane@example.com\r\n")
    result = runner.invoke(
        ingest_app,
        [
            "check",
            "--config",
            str(config),
            "--text",
            str(DATA / "injection.txt"),
            str(tmp_path / "pii.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    verdicts = _verdicts(result.output)
    injection = verdicts["injection.txt"]
    assert injection["action"] == "review"
    assert {f["rule"] for f in injection["flags"]} >= {"instruction_override", "prompt_leak"}
    pii = verdicts["pii.txt"]
    assert pii["text"] == "write to [EMAIL]\n"
    assert [c["kind"] for c in pii["changes"]] == ["line_ending"]
    assert [p["kind"] for p in pii["pii"]] == ["email"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(ingest_app, ["check", str(tmp_path / "missing.txt")]).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(ingest_app, ["check", str(empty)]).exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("screen: {pii: redcat}\n")
    result = runner.invoke(ingest_app, ["check", "--config", str(bad), str(DATA / "hello.txt")])
    assert result.exit_code == 2
    assert runner.invoke(ingest_app, ["check"]).exit_code == 2


def test_help_comes_from_the_docstring() -> None:
    result = runner.invoke(ingest_app, ["check", "--help"])
    assert result.exit_code == 0 and "one JSON verdict per line" in result.output
