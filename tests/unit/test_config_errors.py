"""Broken configs and the exact messages users see for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.errors import ConfigError

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
        GOOD.replace("prompt: triage", "prompt: nope"),
        [
            "roadworthy.yaml:15: pipelines.triage.steps[0].generate.prompt: no prompt file "
            "prompts/nope.yaml (hint: create it, or check the id)"
        ],
        id="missing-prompt-file",
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
    assert set(project.prompts) == {"triage"}


def test_storage_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROADWORTHY_STORAGE", "postgresql://db.example/rw")
    project = load_project(write_project(tmp_path, GOOD))
    assert project.storage_url == "postgresql://db.example/rw"


def test_prompt_file_errors_name_the_prompt_file(tmp_path: Path) -> None:
    root = write_project(
        tmp_path, GOOD, prompt="id: triage\nmessages:\n  - role: bot\n    content: hi\n"
    )
    with pytest.raises(ConfigError) as info:
        load_project(root)
    (problem,) = info.value.problems
    assert problem.endswith(
        "triage.yaml:3: messages[0].role: Input should be 'system', 'user' or 'assistant', got 'bot'"
    )
