"""`roadworthy prompts`: sync, list, show, diff, promote, rollback, history."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from roadworthy.cli.main import app

from ..conftest import PROMPT, SCRIPTED_CONFIG, write_project

runner = CliRunner(env={"COLUMNS": "200", "ROADWORTHY_ACTOR": "tester"})


def invoke(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["prompts", *args, "-p", str(root)])
    return result.exit_code, result.output


def test_prompt_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    root = write_project(
        tmp_path, SCRIPTED_CONFIG, prompt=PROMPT + "samples:\n  - {text: my invoice is wrong}\n"
    )
    code, out = invoke(root, "sync")
    assert code == 0 and "new       triage v1" in out and "triage@production -> v1" in out
    path = root / "prompts" / "triage.yaml"
    path.write_text(
        path.read_text().replace(
            "Classify the ticket.", "Classify this support ticket by category and priority."
        )
    )
    code, out = invoke(root, "list")
    assert "changed, not synced" in out
    code, out = invoke(root, "sync")
    assert code == 0 and "new       triage v2" in out

    code, out = invoke(root, "diff", "triage", "1", "2")
    assert "-  content: Classify the ticket." in out
    assert "+  content: Classify this support ticket by category and priority." in out
    assert "rendered tokens on 1 samples:" in out and "(+" in out

    code, out = invoke(root, "promote", "triage", "2", "--label", "production", "--why", "clearer")
    assert code == 0 and "triage@production: v1 -> v2" in out
    code, out = invoke(root, "rollback", "triage", "--why", "regressed")
    assert code == 0 and "v2 -> v1 (rolled back)" in out
    code, out = invoke(root, "history", "triage")
    assert "clearer" in out and "regressed" in out and "tester" in out

    code, out = invoke(root, "show", "triage@2", "--vars", '{"text": "{{ 1 + 1 }}"}')
    assert code == 0 and "Ticket: {{ 1 + 1 }}" in out
    code, out = invoke(root, "show", "triage", "--sample", "1")
    assert code == 0 and "Ticket: my invoice is wrong" in out and "tokens rendered" in out
    code, out = invoke(root, "promote", "triage", "9")
    assert code == 2 and "has no version 9" in out


def test_sync_refuses_broken_files_and_syncs_the_rest(tmp_path: Path) -> None:
    root = write_project(tmp_path, SCRIPTED_CONFIG)
    (root / "prompts" / "broken.yaml").write_text("id: broken\ntext: '{{ missing }}'\n")
    code, out = invoke(root, "sync")
    assert code == 1
    assert "new       triage v1" in out
    assert "broken.yaml:2: the template uses variable 'missing'" in out


def test_run_notes_an_edited_but_unsynced_prompt(tmp_path: Path) -> None:
    config = SCRIPTED_CONFIG.replace(
        "  fake: {type: scripted}",
        "  fake:\n    type: scripted\n    replies:\n      - {text: {category: other, priority: low}}",
    )
    root = write_project(tmp_path / "p", config)
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hi"}\n')
    first = runner.invoke(app, ["run", "triage", str(source), "-p", str(root)])
    assert first.exit_code == 0 and "differs from" not in first.output
    path = root / "prompts" / "triage.yaml"
    path.write_text(path.read_text().replace("Classify the ticket.", "Classify it."))
    second = runner.invoke(app, ["run", "triage", str(source), "-p", str(root)])
    assert "prompts/triage.yaml differs from triage@production (v1)" in second.output
