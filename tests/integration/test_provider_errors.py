"""Each HTTP provider's failures, mapped at one boundary, against a real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from roadworthy import errors
from roadworthy.providers import (
    AnthropicProvider,
    CompletionRequest,
    Message,
    OpenAIProvider,
    ResponseFormat,
)
from roadworthy.secrets import register_secret
from roadworthy.testing import Fault, FaultServer

KEY = "sk-test-very-secret-key-0123456789"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as s:
        yield s


def make(kind: str, server: FaultServer) -> OpenAIProvider | AnthropicProvider:
    register_secret(KEY)
    if kind == "openai":
        return OpenAIProvider(
            base_url=server.url + "/v1", api_key=KEY, total_timeout_s=1.0, read_timeout_s=1.0
        )
    return AnthropicProvider(
        base_url=server.url, api_key=KEY, total_timeout_s=1.0, read_timeout_s=1.0
    )


def request() -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("system", "be brief"), Message("user", "hi")), model="m-1", max_tokens=20
    )


PROVIDERS = ["openai", "anthropic"]


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(401, message="invalid x-api-key"), errors.AuthFailed),
        (Fault.status(403), errors.AuthFailed),
        (Fault.status(404, message="model m-1 does not exist"), errors.NotFound),
        (Fault.status(400, message="bad parameter"), errors.BadRequest),
        (
            Fault.status(400, message="This model's maximum context length is 2048 tokens"),
            errors.ContextTooLong,
        ),
        (Fault.status(500), errors.ProviderUnavailable),
        (Fault.status(503), errors.ProviderUnavailable),
        (Fault.status(529, message="Overloaded"), errors.ProviderUnavailable),
        (Fault.hang(10), errors.Timeout),
        (Fault.reset(), errors.ProviderUnavailable),
        (Fault.truncated(), errors.ProviderUnavailable),
        (Fault.raw(b"<html>502 Bad Gateway</html>"), errors.MalformedResponse),
        (Fault.raw(b'{"choices": ['), errors.MalformedResponse),
        (Fault.raw(b'{"unexpected": true}'), errors.MalformedResponse),
    ],
    ids=lambda v: getattr(v, "__name__", None) or getattr(v, "kind", None),
)
async def test_failure_is_classified(
    server: FaultServer, kind: str, fault: Fault, expected: type[Exception]
) -> None:
    server.push(fault)
    provider = make(kind, server)
    with pytest.raises(expected) as info:
        await provider.complete(request())
    await provider.aclose()
    assert type(info.value) is expected
    assert KEY not in str(info.value)


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0.5", 0.5), (None, None)])
async def test_rate_limit_carries_retry_after(
    server: FaultServer, kind: str, header: str | None, seconds: float | None
) -> None:
    server.push(Fault.status(429, message="slow down", retry_after=header))
    provider = make(kind, server)
    with pytest.raises(errors.RateLimited) as info:
        await provider.complete(request())
    await provider.aclose()
    assert info.value.retry_after == seconds
    assert info.value.retryable and info.value.status_code == 429


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_key_echoed_by_upstream_is_redacted(server: FaultServer, kind: str) -> None:
    server.push(Fault.status(401, message=f"Incorrect API key provided: {KEY}"))
    provider = make(kind, server)
    with pytest.raises(errors.AuthFailed) as info:
        await provider.complete(request())
    await provider.aclose()
    assert KEY not in str(info.value) and "[REDACTED]" in str(info.value)


async def test_openai_request_shape_and_usage(server: FaultServer) -> None:
    server.push(
        Fault.ok(
            '{"a": 1}',
            usage={
                "prompt_tokens": 50,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 32},
            },
        )
    )
    provider = make("openai", server)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = CompletionRequest(
        messages=(Message("user", "hi"),),
        model="gpt-4o-mini",
        temperature=0.0,
        response_format=ResponseFormat(schema=schema),
    )
    completion = await provider.complete(req)
    await provider.aclose()
    sent = server.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["json"]["response_format"]["json_schema"]["schema"] == schema
    assert (completion.usage.input_tokens, completion.usage.cached_read_tokens) == (50, 32)
    assert completion.text == '{"a": 1}' and completion.request_id == "chatcmpl-fault"


async def test_anthropic_request_shape_and_cached_usage(server: FaultServer) -> None:
    server.push(
        Fault.ok(
            "hello",
            usage={
                "input_tokens": 10,
                "output_tokens": 4,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
            },
        )
    )
    provider = make("anthropic", server)
    completion = await provider.complete(request())
    await provider.aclose()
    sent = server.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["json"]["system"] == "be brief"
    assert [m["role"] for m in sent["json"]["messages"]] == ["user"]
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_read_tokens, usage.cache_write_tokens) == (
        130,
        100,
        20,
    )


async def test_connection_refused_is_unavailable() -> None:
    with FaultServer() as s:
        url = s.url
    provider = OpenAIProvider(base_url=url + "/v1", api_key=KEY, total_timeout_s=2)
    with pytest.raises(errors.ProviderUnavailable):
        await provider.complete(request())
    await provider.aclose()
