"""The README's two commands stay true: CI runs the second one verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    assert "roadworthy run support-triage" in commands[0]


def test_readme_routes_example_is_valid_config(tmp_path: Path) -> None:
    from roadworthy.config import load_project

    readme = (ROOT / "README.md").read_text()
    block = next(b.split("```", 1)[0] for b in readme.split("```yaml")[1:] if "routes:" in b)
    config = (
        "providers:\n  local: {type: local}\n  openai: {type: openai}\n"
        "models:\n"
        "  smol: {provider: local, id: smollm2-135m-instruct, tier: small, context_window: 2048}\n"
        "  gpt-mini: {provider: openai, id: gpt-4o-mini, tier: medium, context_window: 128000}\n"
        + block
    )
    (tmp_path / "roadworthy.yaml").write_text(config)
    project = load_project(tmp_path)
    assert set(project.config.routes) == {"triage"}
