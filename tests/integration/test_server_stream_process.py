"""Real streaming through ``roadworthy serve``: the official OpenAI SDK with ``stream=True``
against a real server process whose upstream is a fault-injecting OpenAI-compatible server.

Covers a clean stream, a fallback before the first byte, a stream cut after its first byte
(an explicit error, never a clean finish, and no second model), a stream without a usage
event, and a client that abandons its stream half-way (the upstream call is stopped and
recorded as cancelled, and the server keeps serving).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadworthy.store import Store
from roadworthy.testing.faults import Fault, FaultServer

from ..conftest import copied, create_key, serving, write_project

openai = pytest.importorskip("openai")

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key_env: null}}
  claude: {{type: anthropic, base_url: "{url}", api_key_env: null}}
models:
  first: {{provider: up, id: model-a, tier: small}}
  second: {{provider: up, id: model-b, tier: medium}}
  haiku: {{provider: claude, id: claude-3-5-haiku-20241022, tier: large}}
routes:
  chat: {{tiers: [small], fallbacks: [second], retry: {{max_attempts: 1}}}}
"""


class Served:
    def __init__(self, base: str, token: str, root: Path, upstream: FaultServer) -> None:
        self.base = base
        self.token = token
        self.root = root
        self.upstream = upstream
        self.client = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0)

    def calls(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        store = Store.open(f"sqlite:///{self.root / '.roadworthy' / 'state.db'}")
        try:
            return list(reversed(copied(store).list_calls(trace_id=trace_id, limit=100)))
        finally:
            store.close()

    def stream(self, text: str = "hi", model: str = "chat", **kw: Any) -> Any:
        return self.client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], stream=True, **kw
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with FaultServer() as upstream:
        root = write_project(tmp_path / "proj", CONFIG.format(url=upstream.url))
        token = create_key(root, "sdk")
        with serving(root) as base:
            yield Served(base, token, root, upstream)


def _text(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_forwards_upstream_events_and_records_usage(served: Served) -> None:
    served.upstream.push(Fault.ok("streamed from the upstream"))
    raw = served.stream(stream_options={"include_usage": True})
    chunks = list(raw.parse())
    assert _text(chunks) == "streamed from the upstream"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 4  # one event per upstream word: forwarded, not re-chunked
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    (call,) = served.calls(raw.headers["x-roadworthy-trace-id"])
    assert call["status"] == "ok" and call["model"] == "model-a"
    assert call["output_tokens"] == 4 and call["usage_estimated"] is False
    assert call["ttft_ms"] is not None
    assert served.upstream.requests[-1]["json"]["stream"] is True


def test_anthropic_upstream_streams_through_the_openai_endpoint(served: Served) -> None:
    served.upstream.push(Fault.ok("streamed by the messages api"))
    raw = served.stream(model="haiku", stream_options={"include_usage": True})
    chunks = list(raw.parse())
    assert _text(chunks) == "streamed by the messages api"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 5  # one OpenAI chunk per Anthropic text delta, not one replay
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    sent = served.upstream.requests[-1]
    assert sent["path"] == "/v1/messages" and sent["json"]["stream"] is True
    (call,) = served.calls(raw.headers["x-roadworthy-trace-id"])
    assert call["status"] == "ok" and call["model"] == "claude-3-5-haiku-20241022"
    assert call["output_tokens"] == 5 and call["usage_estimated"] is False


def test_stream_without_usage_event_is_counted_and_marked(served: Served) -> None:
    served.upstream.push(Fault("ok", text="no usage here", stream_usage=False))
    raw = served.stream()
    assert _text(raw.parse()) == "no usage here"
    (call,) = served.calls(raw.headers["x-roadworthy-trace-id"])
    assert call["status"] == "ok" and call["usage_estimated"] is True
    assert call["output_tokens"] == 3


def test_stream_falls_back_before_the_first_byte(served: Served) -> None:
    served.upstream.push(Fault.status(503), Fault.ok("from the fallback"))
    raw = served.stream()
    assert _text(raw.parse()) == "from the fallback"
    calls = served.calls(raw.headers["x-roadworthy-trace-id"])
    assert [(c["model"], c["status"], c["fallback_depth"]) for c in calls] == [
        ("model-a", "error", 0),
        ("model-b", "ok", 1),
    ]


def test_stream_cut_after_first_byte_ends_with_an_error(served: Served) -> None:
    served.upstream.push(Fault.stream_cut("partial answer then a reset", after=1))
    served.upstream.push(Fault.ok("a fallback must not run"))
    raw = served.stream()
    seen: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["partial"]
    assert "stream" in str(failed.value.message)
    (call,) = served.calls(raw.headers["x-roadworthy-trace-id"])
    assert call["status"] == "error" and call["error_class"] == "ProviderUnavailable"
    assert len(served.upstream.requests) == 1  # no fallback, no retry after the first byte
    # The raw bytes: an error event, and no [DONE].
    served.upstream.schedule.clear()
    served.upstream.push(Fault.stream_cut("again cut", after=1))
    body = httpx.post(
        f"{served.base}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers={"authorization": f"Bearer {served.token}"},
        timeout=30,
    ).text
    assert "event: error" in body and "data: [DONE]" not in body


def test_abandoned_stream_stops_the_upstream_and_is_recorded(served: Served) -> None:
    words = " ".join(f"w{n}" for n in range(200))
    served.upstream.push(Fault.slow_stream(words, chunk_delay_s=0.05))
    with httpx.stream(
        "POST",
        f"{served.base}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers={"authorization": f"Bearer {served.token}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        trace = response.headers["x-roadworthy-trace-id"]
        got = []
        for line in response.iter_lines():
            if line.startswith("data:") and '"content":" w' in line:
                got.append(line)
            if len(got) == 3:
                break  # we are half-way: more is coming, and we hang up
        assert len(got) == 3
    for _ in range(600):  # polls until the server notices; no assertion on how long
        calls = served.calls(trace)
        if calls and served.upstream.streams_abandoned:
            break
        time.sleep(0.05)
    (call,) = served.calls(trace)
    assert call["status"] == "cancelled" and call["error_class"] == "Cancelled"
    assert call["usage_estimated"] is True and call["output_tokens"] >= 3
    assert served.upstream.streams_abandoned == 1
    # The server keeps serving.
    served.upstream.push(Fault.ok("still here"))
    reply = served.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "still here"
