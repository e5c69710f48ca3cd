"""The evaluation runner end to end: gate, baseline regression, cache, reports, promotion."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

from typer.testing import CliRunner

from roadworthy.cli.main import app
from roadworthy.store import Store

from ..conftest import write_project

CATEGORIES = ["billing", "technical", "other"]

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake:
    type: scripted
    replies:
      - {when: "Classify badly", text: {category: other, priority: low}}
      - {when: "about billing", text: {category: billing, priority: high}}
      - {when: "about technical", text: {category: technical, priority: high}}
      - {when: "about other", text: {category: other, priority: low}}
models:
  cheap: {provider: fake, id: gpt-4o-mini}
pipelines:
  triage:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, model: cheap, output: schemas/triage.json}
"""

PROMPT = """\
id: triage
variables: {text: {type: string}}
messages:
  - {role: system, content: "Classify the ticket."}
  - {role: user, content: "{{ text }}"}
evaluation: {suite: triage, thresholds: {category: 0.5}}
"""

SUITE = """\
name: triage
dataset: data.jsonl
prompt: triage@production
pipeline: triage
scorers:
  - {name: schema, type: json-schema, schema: ../schemas/triage.json}
  - {name: category, type: label-match, field: category}
gate:
  thresholds:
    schema: {min_pass_rate: 0.95}
  baseline: {alpha: 0.05, min_effect: 0.1, min_examples: 20}
"""


def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "proj", CONFIG, prompt=PROMPT)
    (root / "evals").mkdir()
    (root / "evals" / "suite.yaml").write_text(SUITE)
    lines = []
    for n in range(30):
        category = CATEGORIES[n % 3]
        lines.append(
            json.dumps(
                {
                    "id": f"ex-{n}",
                    "vars": {"text": f"Ticket {n} about {category}"},
                    "expected": {"category": category},
                    "tags": ["smoke"] if n < 5 else [],
                }
            )
        )
    (root / "evals" / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root


runner = CliRunner(env={"COLUMNS": "200", "ROADWORTHY_ACTOR": "ci"})


def evaluate(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["eval", str(root / "evals" / "suite.yaml"), "-p", str(root), *args]
    )
    return result.exit_code, result.output


def test_worse_prompt_fails_the_gate_and_identical_one_passes(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out = evaluate(
        root,
        "--json",
        str(tmp_path / "r.json"),
        "--junit",
        str(tmp_path / "r.xml"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert code == 0, out
    assert "gate passed" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summaries"]["category"]["pass_rate"]["value"] == 1.0
    assert report["prompt"] == {"ref": "triage@production", "id": "triage", "version": 1}
    cases = ET.parse(tmp_path / "r.xml").getroot().findall(".//testcase")
    assert len(cases) == 30 * 2 + 1
    assert "ex-0" in (tmp_path / "r.html").read_text()

    # an identical prompt: everything from the cache, no significant difference, passes
    code, out = evaluate(root, "--baseline", "latest")
    assert code == 0, out
    assert "30 results (30 from cache)" in out and "no significant difference" in out

    # a deliberately worse version fails against the production baseline
    path = root / "prompts" / "triage.yaml"
    path.write_text(path.read_text().replace("Classify the ticket.", "Classify badly."))
    assert runner.invoke(app, ["prompts", "sync", "-p", str(root)]).exit_code == 0
    code, out = evaluate(root, "--prompt", "triage@2", "--baseline", "triage@production")
    assert code == 1, out
    assert "regression against the baseline" in out
    assert "category: pass rate 0.333 is below 0.500" in out  # the prompt's own criterion

    # ... and cannot go to production without --force and a reason
    promote = runner.invoke(app, ["prompts", "promote", "triage", "2", "-p", str(root)])
    assert promote.exit_code == 2 and "failed its gate" in promote.output
    forced = runner.invoke(
        app, ["prompts", "promote", "triage", "2", "--force", "--why", "hotfix", "-p", str(root)]
    )
    assert forced.exit_code == 0, forced.output
    store = Store.open(f"sqlite:///{root / '.roadworthy' / 'state.db'}")
    last = store.prompts.history("triage", "production")[-1]
    assert last.reason is not None and last.reason.startswith("FORCED past evaluation")


def test_dry_run_and_subset(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out = evaluate(root, "--subset", "smoke", "--dry-run")
    assert code == 0 and "5 examples x 1 repeats: 5 model calls" in out
    code, out = evaluate(root, "--subset", "smoke", "--repeats", "2")
    assert code == 0 and "10 results" in out
    code, out = evaluate(root, "--subset", "nope")
    assert code == 2 and "nope" in out


def test_calibrate_reports_judge_agreement_with_human_labels(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "cal",
        CONFIG.replace(
            '      - {when: "Classify badly"',
            '      - {when: "Grade the response", text: {reason: ok, score: 5}}\n'
            '      - {when: "Classify badly"',
        ).replace(
            "models:\n",
            "models:\n  judge: {provider: fake, id: judge-model, price: {input: 1, output: 2}}\n",
        ),
        prompt=PROMPT,
    )
    (root / "evals").mkdir()
    (root / "evals" / "suite.yaml").write_text(
        "name: cal\ndataset: data.jsonl\npipeline: triage\nprompt: triage@production\n"
        "judge: {model: judge}\n"
        "scorers:\n  - {name: judged, type: llm-rubric, value: The category is right.}\n"
    )
    rows = [
        {
            "id": f"h{n}",
            "vars": {"text": f"Ticket about billing {n}"},
            "criteria": ["billing"],
            "human_label": "pass" if n < 8 else "fail",
        }
        for n in range(10)
    ]
    (root / "evals" / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app, ["eval", "calibrate", str(root / "evals" / "suite.yaml"), "-p", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert "judged: 10 labelled examples (0 skipped), accuracy 0.800" in result.output
    assert "Cohen's kappa 0.000" in result.output
