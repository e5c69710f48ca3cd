"""The HTTP service through httpx's ASGI transport: auth, pipeline runs, chat, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadworthy.config import load_project
from roadworthy.config.server import ServerConfig
from roadworthy.errors import ProviderUnavailable
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.server import create_app
from roadworthy.server.chat import sse_stream
from roadworthy.server.openapi import openapi_document
from roadworthy.store.keys import KeyStore

from ..conftest import SCRIPTED_CONFIG, copied, write_project

GOOD = {"category": "billing", "priority": "high"}
ROOT = Path(__file__).resolve().parents[2]

CONFIG = (
    SCRIPTED_CONFIG
    + """\
  lenient:
    input:
      fields:
        text: {type: string, max_chars: 500}
    steps:
      - generate: {prompt: triage, model: cheap, output: schemas/triage.json}
    on_failure: [escalate]
"""
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", CONFIG)


def make(
    project: Path, replies: list[Reply], settings: ServerConfig | None = None
) -> tuple[httpx.AsyncClient, Workspace, str]:
    ws = Workspace(
        load_project(project), providers={"fake": ScriptedProvider(replies, name="fake")}
    )
    _, token = KeyStore(ws.store.engine).create("tests", ("run",))
    app = create_app(ws, settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"authorization": f"Bearer {token}"},
    )
    return client, ws, token


async def test_health_and_ready(project: Path) -> None:
    client, _, _ = make(project, [])
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers={"authorization": ""})
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_readyz_is_503_when_migrations_are_behind(project: Path) -> None:
    client, ws, _ = make(project, [])
    with ws.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0005'")
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and "0005" in ready.json()["reason"]


async def test_pipeline_run_done_is_recorded(project: Path) -> None:
    client, ws, _ = make(project, [Reply(text=GOOD)])
    resp = await client.post("/v1/pipelines/triage/run", json={"input": {"text": "charged twice"}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "done" and body["output"] == GOOD
    assert body["deadline_s"] == 60.0
    assert float(resp.headers["x-roadworthy-overhead-ms"]) >= 0
    item = ws.store.get_item(body["item_id"])
    assert item is not None and item["status"] == "done"
    (call,) = copied(ws).list_calls()
    assert call["trace_id"] == body["trace_id"] == resp.headers["x-roadworthy-trace-id"]


async def test_pipeline_run_escalates_with_ticket(project: Path) -> None:
    client, _, _ = make(project, [Reply(error="ProviderUnavailable")])
    resp = await client.post(
        "/v1/pipelines/lenient/run", json={"input": {"text": "x"}, "deadline_s": 5}
    )
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "escalated"
    assert body["review"]["id"] and body["deadline_s"] == 5


async def test_pipeline_run_rejected_failed_and_unknown(project: Path) -> None:
    client, _, _ = make(project, [Reply(error="ProviderUnavailable")])
    rejected = await client.post("/v1/pipelines/triage/run", json={"input": {}})
    assert rejected.status_code == 422 and rejected.json()["error"]["code"] == "missing_field"
    failed = await client.post("/v1/pipelines/triage/run", json={"input": {"text": "x"}})
    assert failed.status_code == 502 and failed.json()["status"] == "failed"
    unknown = await client.post("/v1/pipelines/nope/run", json={"input": {"text": "x"}})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "pipeline_not_found"


async def test_auth_missing_bad_and_scope(project: Path) -> None:
    client, ws, _ = make(project, [Reply(text=GOOD)])
    url = "/v1/pipelines/triage/run"
    data = {"input": {"text": "x"}}
    missing = await client.post(url, json=data, headers={"authorization": ""})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    bad = await client.post(url, json=data, headers={"authorization": "Bearer rw_abc_def"})
    assert bad.status_code == 401
    keys = KeyStore(ws.store.engine)
    key, token = keys.create("admin", ("admin",))
    ok = await client.post(url, json=data, headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert keys.revoke(key.prefix)
    client2 = create_app(ws, ServerConfig(key_cache_s=0))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=client2), base_url="http://t"
    ) as c:
        revoked = await c.post(url, json=data, headers={"authorization": f"Bearer {token}"})
    assert revoked.status_code == 401


async def test_dev_mode_needs_no_key(project: Path) -> None:
    client, _, _ = make(project, [Reply(text=GOOD)], ServerConfig(auth="none"))
    resp = await client.post(
        "/v1/pipelines/triage/run", json={"input": {"text": "x"}}, headers={"authorization": ""}
    )
    assert resp.status_code == 200


def test_keys_are_stored_hashed(project: Path) -> None:
    ws = Workspace(load_project(project))
    keys = KeyStore(ws.store.engine)
    key, token = keys.create("app", ("run",))
    with ws.store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM api_keys").all()
    assert token not in json.dumps([list(map(str, r)) for r in rows])
    assert keys.verify(token) == key
    assert keys.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.verify("garbage") is None


async def test_chat_completion_is_recorded(project: Path) -> None:
    client, ws, _ = make(project, [Reply(text="hello there", input_tokens=5, output_tokens=2)])
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "cheap"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 2
    (call,) = copied(ws).list_calls()
    assert call["status"] == "ok" and call["step"] == "chat"
    assert call["trace_id"] == resp.headers["x-roadworthy-trace-id"]
    assert float(resp.headers["x-roadworthy-overhead-ms"]) >= 0


async def test_chat_renders_registry_prompt_and_json_mode(project: Path) -> None:
    client, ws, _ = make(project, [Reply(text=GOOD)])
    provider = ws.provider("fake")
    assert isinstance(provider, ScriptedProvider)
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "cheap",
            "messages": [],
            "response_format": {"type": "json_object"},
            "roadworthy": {"prompt": "triage", "variables": {"text": "refund please"}},
        },
    )
    assert resp.status_code == 200, resp.text
    assert json.loads(resp.json()["choices"][0]["message"]["content"]) == GOOD
    request = provider.requests[0]
    assert request.messages[1].content == "Ticket: refund please"
    assert request.response_format is not None
    (call,) = copied(ws).list_calls()
    assert call["prompt_id"] == "triage" and call["prompt_version"] == 1
    header = await client.post(
        "/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-roadworthy-prompt": "nope"},
    )
    assert header.status_code == 404 and header.json()["error"]["code"] == "prompt_not_found"


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (Reply(error="RateLimited", retry_after=7), 429, "rate_limited"),
        (Reply(error="ProviderUnavailable"), 502, "ProviderUnavailable"),
        (Reply(error="Timeout"), 504, "upstream_timeout"),
        (Reply(error="AuthFailed"), 502, "AuthFailed"),
        (Reply(error="ContextTooLong"), 400, "context_length_exceeded"),
    ],
)
async def test_chat_upstream_errors_in_openai_format(
    project: Path, reply: Reply, status: int, code: str
) -> None:
    client, ws, _ = make(project, [reply])
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    if status == 429:
        assert resp.headers["retry-after"] == "7"
    assert copied(ws).list_calls()[0]["status"] == "error"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}}, 404),
        ({"json": {"messages": [{"role": "user", "content": "x"}]}}, 400),
        ({"json": {"model": "cheap", "messages": []}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"x" * 5000, "headers": {"content-type": "application/json"}}, 413),
    ],
)
async def test_bad_requests_get_the_right_status(
    project: Path, kwargs: dict[str, Any], status: int
) -> None:
    client, _, _ = make(project, [], ServerConfig(max_body_bytes=4096))
    resp = await client.post("/v1/chat/completions", **kwargs)
    assert resp.status_code == status, resp.text
    assert "message" in resp.json()["error"]
    assert (await client.get("/healthz")).status_code == 200  # still serving


@pytest.mark.parametrize("value", ["0.001", "0", "-3", "soon", "nan"])
async def test_deadline_header_must_be_a_usable_number_of_seconds(
    project: Path, value: str
) -> None:
    client, ws, _ = make(project, [Reply(text="x")])
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-roadworthy-deadline-s": value},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "header.x-roadworthy-deadline-s"
    assert copied(ws).list_calls() == []  # refused before any model call


async def test_unknown_path_is_openai_shaped_404(project: Path) -> None:
    client, _, _ = make(project, [])
    resp = await client.get("/v1/nothing")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


async def test_chat_stream_ends_with_done(project: Path) -> None:
    client, _, _ = make(project, [Reply(text="a streamed answer")])
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "cheap",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    lines = [ln[6:] for ln in resp.text.split("\n") if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(ln) for ln in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a streamed answer"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_stream_failing_before_first_byte_is_an_http_error(project: Path) -> None:
    client, _, _ = make(project, [Reply(error="ProviderUnavailable")])
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "ProviderUnavailable"


async def test_stream_failing_after_first_byte_ends_with_error_event() -> None:
    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"choices": [{"delta": {"content": "half"}}]}
        raise ProviderUnavailable("connection reset")

    out = [part async for part in sse_stream(events())]
    assert out[0].startswith(b"data: ")
    assert out[-1].startswith(b"event: error\n")
    assert b"[DONE]" not in b"".join(out)
    assert json.loads(out[-1].split(b"data: ", 1)[1])["error"]["code"] == "ProviderUnavailable"


def test_committed_openapi_document_matches_the_app() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is stale: run "
        "`python -m roadworthy.server.openapi > docs/openapi.json` and commit it"
    )
