"""Streaming from HTTP providers (Anthropic's event stream above all) against the fault server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadworthy import errors
from roadworthy.config import load_project
from roadworthy.pipeline import Workspace
from roadworthy.providers.anthropic import AnthropicProvider
from roadworthy.providers.base import CompletionRequest, Message, ResponseFormat
from roadworthy.providers.openai import OpenAIProvider
from roadworthy.providers.streaming import StreamSink, streaming
from roadworthy.testing.faults import Fault, FaultServer

from ..conftest import SCRIPTED_CONFIG, write_project

pytestmark = pytest.mark.integration

REQUEST = CompletionRequest(
    messages=(Message("system", "be brief"), Message("user", "hello there")),
    model="claude-3-5-haiku-20241022",
    timeout_s=10,
)


def drained(sink: StreamSink) -> list[str | None]:
    return [sink.queue.get_nowait() for _ in range(sink.queue.qsize())]


async def test_text_deltas_reach_the_sink_as_they_come_with_usage() -> None:
    with FaultServer([Fault.ok("three small words")]) as server:
        provider = AnthropicProvider(base_url=server.url, api_key="k")
        sink = StreamSink()
        with streaming(sink):
            completion = await provider.complete(REQUEST)
        await provider.aclose()
        sent = server.requests[0]
    assert sent["path"] == "/v1/messages" and sent["json"]["stream"] is True
    assert drained(sink) == ["three", " small", " words"]
    assert completion.text == "three small words" and completion.finish_reason == "end_turn"
    assert completion.request_id == "msg_fault"
    assert completion.usage.input_tokens and completion.usage.output_tokens == 3
    assert not completion.usage.estimated


async def test_forced_tool_streams_json_pieces_that_join_into_the_answer() -> None:
    answer = json.dumps({"category": "billing", "priority": "high"})
    request = CompletionRequest(
        messages=REQUEST.messages,
        model=REQUEST.model,
        timeout_s=10,
        response_format=ResponseFormat(schema={"type": "object"}),
    )
    with FaultServer([Fault.ok(answer)]) as server:
        provider = AnthropicProvider(base_url=server.url, api_key="k")
        sink = StreamSink()
        with streaming(sink):
            completion = await provider.complete(request)
        await provider.aclose()
    pieces = drained(sink)
    assert len(pieces) > 1 and "".join(p or "" for p in pieces) == answer
    assert completion.parsed == {"category": "billing", "priority": "high"}
    assert json.loads(completion.text) == completion.parsed
    assert completion.finish_reason == "tool_use"


async def test_cut_before_and_after_the_first_byte() -> None:
    faults = [Fault.stream_cut("never sent", after=0), Fault.stream_cut("sent then cut", after=1)]
    with FaultServer(faults) as server:
        provider = AnthropicProvider(base_url=server.url, api_key="k")
        for committed in (False, True):
            sink = StreamSink()
            with streaming(sink), pytest.raises(errors.ProviderUnavailable) as failed:
                await provider.complete(REQUEST)
            # cut after text reached the client: no fallback may follow, so not retryable
            assert sink.committed is committed and failed.value.retryable is not committed
        await provider.aclose()


async def test_refusal_and_an_upstream_that_ignores_stream() -> None:
    whole = {
        "id": "msg_whole",
        "type": "message",
        "model": REQUEST.model,
        "content": [{"type": "text", "text": "all at once"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    faults = [Fault.content_filter(), Fault.raw(json.dumps(whole).encode())]
    with FaultServer(faults) as server:
        provider = AnthropicProvider(base_url=server.url, api_key="k")
        with streaming(StreamSink()), pytest.raises(errors.ContentFiltered):
            await provider.complete(REQUEST)
        sink = StreamSink()
        with streaming(sink):
            completion = await provider.complete(REQUEST)
        await provider.aclose()
    assert drained(sink) == ["all at once"]
    assert completion.text == "all at once" and completion.request_id == "msg_whole"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_stream_past_its_deadline_is_a_timeout(kind: str) -> None:
    request = CompletionRequest(messages=REQUEST.messages, model=REQUEST.model, timeout_s=0.3)
    with FaultServer([Fault.slow_stream("one two three four five six", 0.2)]) as server:
        provider = (
            AnthropicProvider(base_url=server.url, api_key="k")
            if kind == "anthropic"
            else OpenAIProvider(base_url=server.url + "/v1", api_key="k")
        )
        sink = StreamSink()
        with streaming(sink), pytest.raises(errors.Timeout) as failed:
            await provider.complete(request)
        await provider.aclose()
    assert "did not finish within 0.30s" in str(failed.value)
    assert sink.committed  # pieces went out before the deadline: no fallback after them


def test_run_async_closes_http_clients_in_their_own_loop(tmp_path: Path) -> None:
    """Each asyncio.run gets its client and closes it before its loop ends."""
    answer = json.dumps({"category": "billing", "priority": "high"})
    with FaultServer([Fault.ok(answer), Fault.ok(answer)]) as server:
        config = SCRIPTED_CONFIG.replace(
            "  fake: {type: scripted}",
            f"  fake: {{type: openai, base_url: '{server.url}/v1', api_key_env: null}}",
        )
        with Workspace(load_project(write_project(tmp_path / "proj", config))) as ws:
            for text in ("first", "second"):  # a second loop reopens what the first closed
                assert ws.run_sync("triage", {"text": text}).status == "done"
                provider = ws.provider("fake")
                assert isinstance(provider, OpenAIProvider) and provider._client is None
        assert len(server.requests) == 2
