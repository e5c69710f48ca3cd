"""The path rule: choose_path per item, and the config errors for bad rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app
from roadworthy.config import load_project
from roadworthy.config.model import PipelineConfig
from roadworthy.config.paths import choose_path, item_chars, item_priority
from roadworthy.errors import ConfigError

from ..conftest import SCRIPTED_CONFIG, write_project

STEP = [{"generate": {"prompt": "triage", "model": "cheap"}}]


def pipeline(path: object) -> PipelineConfig:
    return PipelineConfig.model_validate({"steps": STEP, "path": path})


AUTO = {
    "mode": "auto",
    "priority_field": "urgency",
    "rules": [
        {"priority_at_least": 5, "path": "sync"},
        {"chars_over": 20, "chars_at_most": 100, "path": "async"},
        {"chars_over": 100, "path": "batch"},
    ],
    "default": "async",
}


@pytest.mark.parametrize("word", ["sync", "async", "batch"])
def test_a_fixed_path_is_taken_by_every_item(word: str) -> None:
    config = pipeline(word)
    assert config.path.mode == word
    assert choose_path(config, {"text": "x" * 10_000, "urgency": 9}) == word


def test_the_default_path_is_sync() -> None:
    assert choose_path(PipelineConfig.model_validate({"steps": STEP}), {"text": "hi"}) == "sync"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"text": "x" * 500, "urgency": 7}, "sync"),  # first rule wins over size
        ({"text": "x" * 500, "urgency": 4.5}, "batch"),
        ({"text": "x" * 50}, "async"),  # no priority: priority rules never match
        ({"text": "x" * 500, "urgency": True}, "batch"),  # a boolean is not a priority
        ({"text": "x" * 500, "urgency": "9"}, "batch"),  # nor is a string
        ({"text": "short"}, "async"),  # the default
        ({"a": "x" * 60, "b": ["y" * 60]}, "batch"),  # characters of every string value
    ],
)
def test_auto_takes_the_first_matching_rule(item: dict[str, object], expected: str) -> None:
    assert choose_path(pipeline(AUTO), item) == expected


def test_size_and_priority_of_an_item() -> None:
    assert item_chars({"text": "abc", "meta": {"k": "de"}, "n": 5}) == 5
    assert item_chars("héllo") == 5
    assert item_priority({"p": 3}, "p") == 3.0
    assert item_priority({"p": None}, "p") is None
    assert item_priority(["p"], "p") is None


def _config(path_block: str, steps: str | None = None) -> str:
    config = SCRIPTED_CONFIG + path_block
    if steps is not None:
        config = config.replace(
            "      - generate: {prompt: triage, model: cheap, output: schemas/triage.json}\n",
            steps,
        )
    return config


def _problems(tmp_path: Path, config: str) -> list[str]:
    root = write_project(tmp_path / "proj", config)
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    return caught.value.problems


def test_auto_without_rules_names_the_line_and_hints(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, _config("    path: auto\n"))
    assert problem.endswith(
        "roadworthy.yaml:16: pipelines.triage.path: mode auto needs rules (hint: rules: "
        "[{priority_at_least: 5, path: sync}], or a fixed path such as path: async)"
    )


def test_bad_rules_are_reported_together(tmp_path: Path) -> None:
    block = """\
    path:
      mode: auto
      rules:
        - {path: sync}
        - {priority_at_least: 5, priority_below: 3, path: async}
        - {chars_over: 10, chars_at_most: 10, path: sync}
"""
    problems = _problems(tmp_path, _config(block))
    assert [p.split("roadworthy.yaml:")[1] for p in problems] == [
        "19: pipelines.triage.path.rules[0]: a rule needs a condition (hint: priority_at_least, "
        "priority_below, chars_over or chars_at_most; use default for the catch-all)",
        "20: pipelines.triage.path.rules[1]: no priority is at least 5 and below 3",
        "21: pipelines.triage.path.rules[2]: no size is over 10 and at most 10 characters",
    ]


def test_rules_on_a_fixed_path_and_unknown_words(tmp_path: Path) -> None:
    block = """\
    path:
      mode: sync
      rules: [{chars_over: 5, path: async}]
"""
    (problem,) = _problems(tmp_path, _config(block))
    assert "pipelines.triage.path.rules: rules only apply to mode auto, not 'sync'" in problem
    (problem,) = _problems(tmp_path, _config("    path: bacth\n"))
    assert problem.endswith(
        ":16: pipelines.triage.path: Input should be 'sync', 'async', 'batch' or 'auto', "
        "got 'bacth'"
    )


def test_batch_refuses_a_provider_without_a_batch_api(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, _config("    path: batch\n"))
    assert problem.endswith(
        "pipelines.triage.steps[0].generate.model: path batch: model 'cheap' is served by a "
        "scripted provider, which has no batch API (hint: an openai or anthropic provider)"
    )


def test_batch_refuses_multi_step_pipelines_even_when_only_auto_reaches_it(
    tmp_path: Path,
) -> None:
    steps = (
        "      - generate: {prompt: triage, model: cheap, name: first}\n"
        "      - generate: {prompt: triage, model: cheap, name: second}\n"
    )
    block = """\
    path:
      mode: auto
      rules: [{chars_over: 1000, path: batch}]
"""
    (problem,) = _problems(tmp_path, _config(block, steps))
    assert "pipelines.triage.steps: path batch: the batch path runs pipelines of exactly one " in (
        problem
    )
    assert "(hint: run multi-step pipelines on path sync or async)" in problem


def test_cli_refuses_two_paths_at_once(scripted_project: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hi"}\n')
    result = CliRunner().invoke(
        app, ["run", "triage", str(source), "-p", str(scripted_project), "--async", "--batch"]
    )
    assert result.exit_code == 2
    assert "choose one path" in result.output


def test_cli_batch_on_a_scripted_model_is_a_config_error(
    scripted_project: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hi"}\n')
    result = CliRunner().invoke(
        app, ["run", "triage", str(source), "-p", str(scripted_project), "--batch"]
    )
    assert result.exit_code == 2, result.output
    assert "no batch API" in result.output
    assert "Traceback" not in result.output
