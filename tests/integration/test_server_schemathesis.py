"""Property-based API tests: schemathesis drives the app from the committed OpenAPI document.

Every operation of ``docs/openapi.json`` is called with generated requests, valid ones
(positive) and ones that break the schema (negative: wrong types, missing fields, bodies
that are not what the operation declares), and no answer may be a 5xx. The model answers
with valid JSON, so a pipeline run that gets through validation ends ``done``; a 502
would be a real failure of ours, not a legitimate upstream error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadworthy.config import load_project
from roadworthy.config.server import ServerConfig
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.server import create_app

from ..conftest import SCRIPTED_CONFIG, write_project

schemathesis = pytest.importorskip("schemathesis")

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"category": "billing", "priority": "high"}
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = write_project(tmp_path_factory.mktemp("schemathesis") / "proj", SCRIPTED_CONFIG)
    ws = Workspace(
        load_project(root),
        providers={"fake": ScriptedProvider([Reply(text=GOOD)], name="fake")},
    )
    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
    schema.app = create_app(ws, ServerConfig(auth="none"))
    yield schema
    ws.store.close()


def _check(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code < 400:
        return  # a 200 may be a stream of server-sent events
    body = response.json()
    if "item_id" not in body:
        # Every error in the documented (OpenAI) format; a pipeline run answers with the
        # item's recorded result instead (422 rejected), as documented.
        error = body["error"]
        assert isinstance(error["message"], str) and "type" in error


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(api: Any, mode: str) -> None:
    generation = schemathesis.GenerationMode(mode)
    # Random names mostly meet a 404; half the cases name the real pipeline and model,
    # so generated bodies also reach validation of the input, the model stack and the
    # queue.
    strategy = st.one_of(
        api.as_strategy(generation_mode=generation),
        *(
            api[path]["POST"].as_strategy(
                generation_mode=generation, path_parameters={"name": "triage"}
            )
            for path in ("/v1/pipelines/{name}/run", "/v1/pipelines/{name}/jobs")
        ),
        api["/v1/chat/completions"]["POST"].as_strategy(generation_mode=generation),
    )

    @SETTINGS
    @given(case=strategy, real_model=st.booleans())
    def run(case: Any, real_model: bool) -> None:
        if real_model and isinstance(case.body, dict) and "model" in case.body:
            # A configured model and no random registry prompt: the call reaches the stack.
            case.body["model"] = "cheap"
            case.body.pop("roadworthy", None)
            if not case.body.get("messages"):
                case.body["messages"] = [{"role": "user", "content": "hi"}]
            if case.headers:
                case.headers.pop("x-roadworthy-prompt", None)
        _check(case)

    run()
