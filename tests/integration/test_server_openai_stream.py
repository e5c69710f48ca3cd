"""The OpenAI-compatible provider's streaming path against a real fault-injecting server."""

from __future__ import annotations

import pytest

from roadworthy import errors
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.providers.openai import OpenAIProvider
from roadworthy.providers.streaming import StreamSink, streaming
from roadworthy.testing.faults import Fault, FaultServer

REQUEST = CompletionRequest(messages=(Message("user", "hello"),), model="m", timeout_s=10)


def drained(sink: StreamSink) -> list[str | None]:
    return [sink.queue.get_nowait() for _ in range(sink.queue.qsize())]


async def test_stream_reports_usage_and_pieces() -> None:
    with FaultServer([Fault.ok("three small words")]) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="k")
        sink = StreamSink()
        with streaming(sink):
            completion = await provider.complete(REQUEST)
        await provider.aclose()
        sent = server.requests[0]["json"]
    assert drained(sink) == ["three", " small", " words"]
    assert completion.text == "three small words" and completion.finish_reason == "stop"
    assert completion.usage.output_tokens == 3 and not completion.usage.estimated
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_upstream_that_ignores_stream_is_sent_whole() -> None:
    body = b'{"id": "x", "choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}'
    with FaultServer([Fault.raw(body)]) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="k")
        sink = StreamSink()
        with streaming(sink):
            completion = await provider.complete(REQUEST)
        await provider.aclose()
    assert drained(sink) == ["whole"] and completion.text == "whole"
    assert completion.usage.estimated  # no usage in the body: counted, and said so


async def test_failures_before_and_after_the_first_byte() -> None:
    faults = [
        Fault.status(429, retry_after="3"),
        Fault.stream_cut("never sent", after=0),
        Fault.stream_cut("sent then cut", after=1),
    ]
    with FaultServer(faults) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="k")
        for expected, retryable, committed in (
            (errors.RateLimited, True, False),
            (errors.ProviderUnavailable, True, False),
            (errors.ProviderUnavailable, False, True),
        ):
            sink = StreamSink()
            with streaming(sink), pytest.raises(expected) as failed:
                await provider.complete(REQUEST)
            assert failed.value.retryable is retryable and sink.committed is committed
        await provider.aclose()
    assert isinstance(failed.value, errors.ProviderUnavailable)
