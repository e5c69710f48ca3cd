"""Broken configs and the exact messages users see for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.errors import ConfigError
from roadworthy.pipeline.workspace import check_prompts
from roadworthy.prompts import load_prompts

from ..conftest import SCRIPTED_CONFIG, write_project

GOOD = SCRIPTED_CONFIG

CASES = [
    pytest.param(
        GOOD.replace("  fake: {type: scripted}", "  fake: {type: scripted, ech: true}"),
        ["roadworthy.yaml:3: providers.fake.ech: unknown key 'ech' (hint: did you mean 'echo'?)"],
        id="unknown-key-with-suggestion",
    ),
    pytest.param(
        GOOD.replace("    tier: small\n", "    tier: small\n    context_window: lots\n"),
        [
            "roadworthy.yaml:9: models.cheap.context_window: Input should be a valid integer, "
            "unable to parse string as an integer, got 'lots'"
        ],
        id="wrong-type",
    ),
    pytest.param(
        GOOD.replace("provider: fake", "provider: fak"),
        [
            "roadworthy.yaml:6: models.cheap.provider: unknown provider 'fak' (hint: did you mean 'fake'?)"
        ],
        id="missing-provider",
    ),
    pytest.param(
        GOOD.replace("model: cheap", "model: cheep"),
        [
            "roadworthy.yaml:15: pipelines.triage.steps[0].generate.model: unknown model 'cheep' "
            "(hint: did you mean 'cheap'?)"
        ],
        id="unknown-model-in-pipeline",
    ),
    pytest.param(
        GOOD.replace("  fake: {type: scripted}", "  fake: {type: opnai}"),
        [
            "roadworthy.yaml:3: providers.fake: unknown type 'opnai' "
            "(hint: one of openai, anthropic, local, scripted)"
        ],
        id="unknown-provider-type",
    ),
    pytest.param(
        GOOD.replace("  fake: {type: scripted}", "  fake: {type: openai, api_key: sk-live-123456}"),
        [
            "roadworthy.yaml:3: providers.fake.api_key: unknown key 'api_key' (hint: secrets never "
            "go in roadworthy.yaml; put the key in an environment variable and name it with "
            "api_key_env)"
        ],
        id="literal-api-key",
    ),
    pytest.param(
        GOOD.replace("    id: gpt-4o-mini\n", ""),
        ["roadworthy.yaml:5: models.cheap.id: required key is missing"],
        id="missing-required",
    ),
    pytest.param(
        GOOD.replace("output: schemas/triage.json", "output: schemas/none.json"),
        [
            "roadworthy.yaml:15: pipelines.triage.steps[0].generate.output: schema file "
            "'schemas/none.json' not found"
        ],
        id="missing-schema-file",
    ),
    pytest.param(
        GOOD.replace("provider: fake", "provider: fak").replace("model: cheap", "model: cheep"),
        [
            "roadworthy.yaml:6: models.cheap.provider: unknown provider 'fak' (hint: did you mean 'fake'?)",
            "roadworthy.yaml:15: pipelines.triage.steps[0].generate.model: unknown model 'cheep' "
            "(hint: did you mean 'cheap'?)",
        ],
        id="every-problem-at-once",
    ),
    pytest.param(
        "providers:\n  fake: {type: scripted\n",
        ["roadworthy.yaml:3: invalid YAML: expected ',' or '}', but got '<stream end>'"],
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("config", "expected"), CASES)
def test_broken_config_messages(tmp_path: Path, config: str, expected: list[str]) -> None:
    root = write_project(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        load_project(root)
    prefix = str(root / "roadworthy.yaml").removesuffix("roadworthy.yaml")
    assert [p.replace(prefix, "") for p in info.value.problems] == expected


def test_good_config_loads_and_resolves_sqlite_path(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, GOOD))
    assert project.storage_url == f"sqlite:///{tmp_path.resolve()}/.roadworthy/state.db"
    assert set(load_prompts(project.root).prompts) == {"triage"}


def test_storage_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADWORTHY_STORAGE", "postgresql://db.example/rw")
    project = load_project(write_project(tmp_path, GOOD))
    assert project.storage_url == "postgresql://db.example/rw"


def test_pipeline_referring_to_missing_prompt(tmp_path: Path) -> None:
    root = write_project(tmp_path, GOOD.replace("prompt: triage", "prompt: triag@production"))
    project = load_project(root)
    problems = check_prompts(project, load_prompts(root))
    assert problems == [
        f"{root}/roadworthy.yaml: pipelines.triage.steps[0].generate.prompt: no prompt with id "
        "'triag' in prompts/ (hint: did you mean 'triage'?)"
    ]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            "id: triage\nvariables: {text: {type: string}}\nmessages:\n  - role: bot\n    content: hi\n",
            "triage.yaml:4: messages[0].role: Input should be 'system', 'user' or 'assistant', got 'bot'",
        ),
        (
            "id: triage\nmessages:\n  - role: user\n    content: '{{ txt }}'\n",
            "triage.yaml:3: the template uses variable 'txt', which 'variables' does not declare",
        ),
        (
            "id: triage\nvariables: {text: {type: str}}\ntext: '{{ text }}'\n",
            "triage.yaml:2: variables.text.type: Input should be 'string', 'integer', 'number', "
            "'boolean', 'list', 'object' or 'any', got 'str'",
        ),
        (
            "id: triage\nmessages:\n  - include: house-style\n",
            "triage.yaml:3: partial 'house-style' not found in prompts/partials/",
        ),
        (
            "variables: {}\ntext: hello\n",
            "triage.yaml:1: id: required key is missing",
        ),
        (
            "id: triage\ntext: '{% if %}'\n",
            "triage.yaml:2: template syntax error: Expected an expression, got 'end of statement "
            "block' (template line 1)",
        ),
    ],
    ids=[
        "bad-role",
        "undeclared-variable",
        "unknown-type",
        "missing-partial",
        "missing-id",
        "syntax",
    ],
)
def test_bad_prompt_files_are_refused_with_file_and_line(
    tmp_path: Path, prompt: str, expected: str
) -> None:
    root = write_project(tmp_path, GOOD, prompt=prompt)
    folder = load_prompts(root)
    assert [p.replace(f"{root}/prompts/", "") for p in folder.problems] == [expected]
    assert folder.prompts == {}


def test_duplicate_prompt_ids_refuse_the_second_file(tmp_path: Path) -> None:
    root = write_project(tmp_path, GOOD)
    (root / "prompts" / "zzz.yaml").write_text((root / "prompts" / "triage.yaml").read_text())
    folder = load_prompts(root)
    assert folder.problems == [
        f"{root}/prompts/zzz.yaml:1: id 'triage' is already used by {root}/prompts/triage.yaml"
    ]
    assert set(folder.prompts) == {"triage"}
