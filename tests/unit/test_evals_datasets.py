"""Dataset loading in three formats, line-numbered errors, subsets, promptfoo import."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from roadworthy.errors import ConfigError
from roadworthy.evals import (
    Output,
    ScorerSpec,
    build_scorer,
    load_dataset,
    load_promptfoo_tests,
)
from roadworthy.evals.datasets import examples_from

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = ROOT / "examples" / "support-triage"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_jsonl_loads_with_ids_tags_and_targets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "d.jsonl",
        """
        {"id": "a1", "vars": {"text": "hi"}, "expected": "greeting", "tags": ["smoke", "lang:en"]}

        // comments and blank lines are skipped
        {"vars": {"text": "hola"}, "reference": "hello", "tags": ["lang:es"], "human_label": true}
        """,
    )
    ds = load_dataset(path)
    assert len(ds) == 2 and ds.format == "jsonl" and ds.name == "d"
    first, second = ds.examples
    assert first.id == "a1" and first.where == f"{path}:1"
    assert second.id.startswith("ex-") and second.where == f"{path}:4"
    assert second.human_label is True and second.tag_value("lang") == "es"
    assert ds.tag_values("lang") == Counter({"en": 1, "es": 1})
    # ids without an explicit one are content hashes: stable across reordering
    again = load_dataset(_write(tmp_path, "e.jsonl", path.read_text().splitlines()[3] + "\n"))
    assert again.examples[0].id == second.id


def test_jsonl_collects_every_problem_with_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad.jsonl",
        """
        {"id": "ok", "vars": {"text": "fine"}, "expected": "x"}
        {"id": "ok", "vars": {"text": "dup"}, "expected": "x"}
        {"vars": {"text": "t"}, "expeted": "x"}
        {"input": "t", "expected": "x"}
        {not json
        {"vars": {"text": "t"}}
        {"vars": {"text": "t"}, "expected": "x", "tags": ["edge case"]}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_dataset(path)
    assert info.value.problems == [
        f"{path}:2: duplicate id 'ok' (first at {path}:1)",
        f"{path}:3: unknown key 'expeted' (hint: did you mean 'expected'?)",
        f"{path}:3: nothing to score against (hint: give 'expected', 'reference', 'criteria' or 'assert')",
        f"{path}:4: unknown key 'input' (hint: input variables go under 'vars')",
        f"{path}:4: vars: required key is missing (the input variables)",
        f"{path}:5: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:6: nothing to score against (hint: give 'expected', 'reference', 'criteria' or 'assert')",
        f"{path}:7: tags: 'edge case' must be one word without spaces or commas",
    ]


def test_yaml_list_and_mapping_forms_with_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "d.yaml",
        """
        name: triage-mini
        description: two examples
        examples:
          - id: y1
            vars: {text: "charged twice"}
            expected: {category: billing, priority: high}
            tags: [smoke]
          - id: y2
            vars: {text: "dark mode?"}
            criteria: [polite, short]
        """,
    )
    ds = load_dataset(path)
    assert ds.name == "triage-mini" and ds.description == "two examples"
    assert ds.examples[1].criteria == ("polite", "short")
    assert ds.examples[1].where == f"{path}:8"

    bad = _write(
        tmp_path,
        "bad.yaml",
        """
        exampels: []
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_dataset(bad)
    assert info.value.problems[0] == (
        f"{bad}:1: unknown top-level key 'exampels' (hint: did you mean 'examples'?)"
    )

    listed = _write(
        tmp_path,
        "list.yml",
        """
        - vars: {q: one}
          expected: "1"
        - vars: {q: two}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_dataset(listed)
    assert info.value.problems == [
        f"{listed}:3: nothing to score against (hint: give 'expected', 'reference', "
        "'criteria' or 'assert')"
    ]


def test_csv_columns_become_vars_and_expected_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "d.csv",
        """
        id,text,expected.category,expected.priority,tags
        c1,"Charged twice, please refund",billing,high,smoke;lang:en
        c2,"App crashes
        on start",technical,urgent,lang:en
        """,
    )
    ds = load_dataset(path)
    assert [e.id for e in ds] == ["c1", "c2"]
    assert ds.examples[0].vars == {"text": "Charged twice, please refund"}
    assert ds.examples[0].expected == {"category": "billing", "priority": "high"}
    assert ds.examples[0].tags == ("smoke", "lang:en")
    assert ds.examples[1].vars["text"] == "App crashes\non start"

    bad = _write(
        tmp_path,
        "bad.csv",
        """
        id,text,expected
        b1,hello,"{not json"
        b2,only-two-cells
        b3,fine,ok
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_dataset(bad)
    assert info.value.problems == [
        f"{bad}:2: expected: invalid JSON: Expecting property name enclosed in double quotes",
        f"{bad}:2: nothing to score against (hint: give 'expected', 'reference', "
        "'criteria' or 'assert')",
        f"{bad}:3: 2 cells, but the header has 3 columns",
    ]


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset format '.txt'"):
        load_dataset(tmp_path / "x.txt")
    with pytest.raises(ConfigError, match="file not found"):
        load_dataset(tmp_path / "missing.jsonl")


def test_subsets_by_tag() -> None:
    ds = examples_from(
        [
            {"id": "1", "vars": {"t": "a"}, "expected": "x", "tags": ["smoke", "lang:en"]},
            {"id": "2", "vars": {"t": "b"}, "expected": "x", "tags": ["lang:de"]},
            {"id": "3", "vars": {"t": "c"}, "expected": "x", "tags": ["smoke", "adversarial"]},
        ]
    )
    assert ds.subset("smoke").ids == ["1", "3"]
    assert ds.subset(["smoke", "lang:en"], match="all").ids == ["1"]
    assert ds.subset("smoke", exclude="adversarial").ids == ["1"]
    with pytest.raises(
        ConfigError, match=r"no example has tag 'smok' \(hint: did you mean 'smoke'\?\)"
    ):
        ds.subset("smok")
    assert ds.fingerprint() == examples_from([e.to_json() for e in ds]).fingerprint()


# ---------------------------------------------------------------- promptfoo


PROMPTFOO = """
description: imported
prompts: [prompt.txt]
defaultTest:
  vars: {tone: polite}
  assert:
    - type: is-json
tests:
  - description: refund ticket
    vars: {text: "charged twice"}
    assert:
      - type: contains
        value: billing
      - type: not-icontains
        value: urgent
      - type: regex
        value: "\\"priority\\":\\\\s*\\"(high|urgent)\\""
      - type: llm-rubric
        value: mentions a refund
      - type: latency
        threshold: 2500
  - vars: {text: "dark mode"}
    metadata: {id: pf-dark, tags: [smoke]}
    assert:
      - {type: contains-any, value: [feature_request, other]}
      - {type: starts-with, value: "{"}
"""


def test_promptfoo_import_maps_assertions_and_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "promptfooconfig.yaml", PROMPTFOO)
    ds = load_dataset(path)  # auto-detected by the 'tests:' key
    assert ds.format == "promptfoo" and len(ds) == 2
    first, second = ds.examples
    assert first.vars == {"tone": "polite", "text": "charged twice"}
    assert [a["type"] for a in first.assertions] == [
        "is-json",
        "contains",
        "not-icontains",
        "regex",
        "latency",
    ]
    assert first.assertions[-1] == {"type": "latency", "max_s": 2.5}
    assert first.criteria == ("mentions a refund",)
    assert first.metadata["description"] == "refund ticket"
    assert second.id == "pf-dark" and second.tags == ("promptfoo", "smoke")

    # the imported assertions build and score like native ones
    out = Output(text='{"category": "billing", "priority": "high"}', latency_s=0.4)
    results = [
        build_scorer(ScorerSpec.parse(a, where=first.where))(first, out) for a in first.assertions
    ]
    assert [r.passed for r in results] == [True, True, True, True, True]


def test_promptfoo_unsupported_assertions_name_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "pf.yaml",
        """
        tests:
          - vars: {text: a}
            assert:
              - type: javascript
                value: output.length > 3
              - type: similar
                value: hello
          - vars: {text: "file://big.txt"}
            options: {transform: "output.trim()"}
            assert:
              - type: equals
                value: x
          - vars: {text: [a, b]}
            threshold: 0.5
            assert:
              - type: icontain
                value: x
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_promptfoo_tests(path)
    problems = info.value.problems
    assert problems[0] == (
        f"{path}:4: assert type 'javascript' is not supported: roadworthy does not run "
        "javascript assertions (hint: rewrite it as a Python scorer with @scorer)"
    )
    assert problems[1].startswith(f"{path}:6: assert type 'similar' is not supported")
    assert f"{path}:9: options.transform runs JavaScript" in problems[2]
    assert problems[3] == f"{path}:8: vars.text: file:// values are not supported; inline it"
    assert problems[4].startswith(f"{path}:14: test key 'threshold' is not supported")
    assert problems[5].startswith(f"{path}:13: vars.text: a list expands into several tests")
    assert problems[6] == (
        f"{path}:16: assert type 'icontain' is not supported (hint: did you mean 'icontains'?)"
    )


def test_promptfoo_follows_file_test_lists(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "tests.yaml",
        """
        - vars: {text: hello}
          assert: [{type: equals, value: hi}]
        """,
    )
    path = _write(tmp_path, "promptfooconfig.yaml", "tests: file://tests.yaml\n")
    ds = load_promptfoo_tests(path)
    assert ds.examples[0].assertions == ({"type": "equals", "value": "hi"},)
    assert ds.examples[0].where == f"{(tmp_path / 'tests.yaml').resolve()}:1"


# ---------------------------------------------------------------- the example dataset


def test_support_triage_dataset_is_valid_and_balanced() -> None:
    ds = load_dataset(TRIAGE / "evals" / "support-triage.jsonl")
    assert len(ds) >= 150
    schema = json.loads((TRIAGE / "schemas" / "triage.json").read_text())
    categories = schema["properties"]["category"]["enum"]
    priorities = schema["properties"]["priority"]["enum"]
    cats = Counter(e.expected["category"] for e in ds)
    pris = Counter(e.expected["priority"] for e in ds)
    assert set(cats) == set(categories) and min(cats.values()) >= 20
    assert set(pris) == set(priorities) and min(pris.values()) >= 10
    for example in ds:
        assert set(example.expected) == {"category", "priority"}
        assert example.tag_value("category") == example.expected["category"]
        assert example.tag_value("priority") == example.expected["priority"]
        assert example.tag_value("lang") is not None
    smoke = ds.subset("smoke")
    assert 16 <= len(smoke) <= 24
    assert {e.expected["category"] for e in smoke} == set(categories)
    tags = ds.tag_counts()
    for tag in (
        "edge-case",
        "adversarial",
        "injection",
        "pii",
        "sarcasm",
        "multi-issue",
        "mixed-language",
        "long",
    ):
        assert tags[tag] >= 3, tag
    assert len(ds.tag_values("lang")) >= 6
    originals = {
        json.loads(line)["text"] for line in (TRIAGE / "tickets.jsonl").read_text().splitlines()
    }
    assert not originals & {e.vars["text"] for e in ds}


def test_support_triage_suite_scorers_build() -> None:
    suite_path = TRIAGE / "evals" / "suite.yaml"
    suite = yaml.safe_load(suite_path.read_text())
    assert suite["prompt"] == "ticket-triage@production"
    assert suite["pipeline"] == "support-triage"
    assert (suite_path.parent / suite["dataset"]).is_file()
    scorers = [build_scorer(s, base_dir=suite_path.parent) for s in suite["scorers"]]
    assert [s.name for s in scorers] == ["schema", "category", "priority"]
    ds = load_dataset(suite_path.parent / suite["dataset"])
    example = ds.examples[0]
    good = Output(parsed={"summary": "Overcharged", **example.expected})
    assert all(s(example, good).passed for s in scorers)
