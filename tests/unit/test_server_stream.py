"""Streaming chat through the model stack, in-process, with scripted providers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadworthy.config import load_project
from roadworthy.config.server import ServerConfig
from roadworthy.models.context import KeyPolicy, api_key, bind
from roadworthy.models.fallback import Hop
from roadworthy.models.ratelimit import RateLimiter, RateLimitPolicy
from roadworthy.models.router import Router
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import Capabilities, Completion, CompletionRequest, Message
from roadworthy.providers.streaming import StreamSink, streaming
from roadworthy.server import create_app

from ..conftest import copied, write_project

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  a: {type: scripted}
  b: {type: scripted}
models:
  first: {provider: a, id: model-a, tier: small}
  second: {provider: b, id: model-b, tier: medium}
routes:
  chat: {tiers: [small], fallbacks: [second], retry: {max_attempts: 2, base_delay_s: 0}}
"""

ASK = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def make(tmp_path: Path, a: list[Reply], b: list[Reply]) -> tuple[httpx.AsyncClient, Workspace]:
    root = write_project(tmp_path / "proj", CONFIG)
    ws = Workspace(
        load_project(root),
        providers={"a": ScriptedProvider(a, name="a"), "b": ScriptedProvider(b, name="b")},
    )
    app = create_app(ws, ServerConfig(auth="none"))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, ws


def events(body: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON data events and the raw lines (for ``[DONE]`` and ``event:``)."""
    lines = [ln for ln in body.split("\n") if ln]
    data = [ln[6:] for ln in lines if ln.startswith("data: ") and ln != "data: [DONE]"]
    return [json.loads(d) for d in data], lines


def content(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]


async def test_pieces_are_forwarded_as_they_stream(tmp_path: Path) -> None:
    client, ws = make(tmp_path, [Reply(text="one two three")], [])
    resp = await client.post("/v1/chat/completions", json=ASK)
    assert resp.status_code == 200, resp.text
    chunks, lines = events(resp.text)
    assert content(chunks) == ["one", " two", " three"]
    assert lines[-1] == "data: [DONE]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (call,) = copied(ws).list_calls()
    assert call["status"] == "ok" and call["ttft_ms"] is not None
    assert call["usage_estimated"] is False


async def test_retry_and_fallback_happen_before_the_first_byte(tmp_path: Path) -> None:
    client, ws = make(
        tmp_path,
        [Reply(error="ProviderUnavailable", times=2)],
        [Reply(text="from b")],
    )
    resp = await client.post("/v1/chat/completions", json=ASK)
    assert resp.status_code == 200, resp.text
    chunks, lines = events(resp.text)
    assert "".join(content(chunks)) == "from b" and lines[-1] == "data: [DONE]"
    calls = sorted(copied(ws).list_calls(), key=lambda c: c["id"])
    assert [(c["model"], c["status"], c["attempt"]) for c in calls] == [
        ("model-a", "error", 1),
        ("model-a", "error", 2),
        ("model-b", "ok", 1),
    ]


async def test_failure_after_the_first_byte_neither_retries_nor_falls_back(
    tmp_path: Path,
) -> None:
    client, ws = make(
        tmp_path,
        [Reply(text="half an answer", error="ProviderUnavailable", cut_after=1)],
        [Reply(text="must not be used")],
    )
    resp = await client.post("/v1/chat/completions", json=ASK)
    assert resp.status_code == 200  # the stream had started
    chunks, lines = events(resp.text)
    assert content(chunks) == ["half"]
    assert "event: error" in lines and "data: [DONE]" not in lines
    assert chunks[-1]["error"]["code"] == "ProviderUnavailable"
    (call,) = copied(ws).list_calls()  # one attempt: no retry, no hop to model-b
    assert call["model"] == "model-a" and call["status"] == "error"


async def test_failure_before_the_first_byte_is_an_http_error(tmp_path: Path) -> None:
    client, _ = make(tmp_path, [Reply(error="BadRequest")], [])
    resp = await client.post("/v1/chat/completions", json=ASK)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "upstream_bad_request"


async def test_scripted_provider_streams_into_a_bound_sink() -> None:
    provider = ScriptedProvider([Reply(text="a b", error="Timeout", cut_after=1)])
    request = CompletionRequest(messages=(Message("user", "x"),), model="m")
    sink = StreamSink()
    with streaming(sink), pytest.raises(Exception) as failed:
        await provider.complete(request)
    assert sink.committed and sink.queue.get_nowait() == "a"
    assert getattr(failed.value, "retryable", True) is False  # committed: not retryable
    # Without a sink the same reply is a plain, retryable failure.
    provider = ScriptedProvider([Reply(text="a b", error="Timeout", cut_after=1)])
    with pytest.raises(Exception) as plain:
        await provider.complete(request)
    assert getattr(plain.value, "retryable", False) is True


class CallsAJudge:
    """A model that, like a semantic-cache audit, calls another route on the way."""

    name = "outer"

    def __init__(self, judge: Router, answer: ScriptedProvider) -> None:
        self.judge = judge
        self.answer = answer

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(streaming=True)

    async def complete(self, request: CompletionRequest) -> Completion:
        await self.judge.complete(request)
        return await self.answer.complete(request)

    async def aclose(self) -> None:
        return None


async def test_a_route_called_on_the_way_neither_streams_nor_counts() -> None:
    judge = Router("judge", fallbacks=[Hop(ScriptedProvider([Reply(text="judge verdict")]), "j")])
    answer = ScriptedProvider([Reply(text="the answer")])
    outer = Router("outer", fallbacks=[Hop(CallsAJudge(judge, answer), "m")])
    request = CompletionRequest(messages=(Message("user", "x"),), model="m")
    sink = StreamSink()
    limiter = RateLimiter("key:k", RateLimitPolicy(rpm=1))
    with streaming(sink), bind(api_key, KeyPolicy(id="k", limiter=limiter)):
        completion = await outer.complete(request)
    assert completion.text == "the answer"
    pieces = [sink.queue.get_nowait() for _ in range(sink.queue.qsize())]
    assert "".join(pieces) == "the answer"  # the judge's text never reached the client
    assert limiter.wait_s() > 0  # one request counted, and it was the caller's
