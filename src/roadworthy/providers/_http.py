"""The one place where HTTP failures become roadworthy errors.

Both HTTP providers send requests through :func:`post_json`, so status codes, transport
errors, hangs and bodies that are not JSON are classified the same way everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from ..errors import (
    AuthFailed,
    BadRequest,
    ContentFiltered,
    ContextTooLong,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RoadworthyError,
    Timeout,
)
from ..secrets import read_secret, redact
from ._aiohttp import AiohttpClient, make_client
from .base import Completion, CompletionRequest
from .streaming import StreamSink, current_sink

_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceeds the context window",
    "context window",
)
_FILTER_HINTS = ("content_filter", "content management policy", "safety system", "content policy")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("type") or json.dumps(err)[:300]
            return str(msg)
        return str(err)[:300]
    return str(payload)[:300]


def classify_status(
    status: int, body: bytes, headers: httpx.Headers, *, provider: str, model: str
) -> ProviderError:
    """Map an HTTP error response to the taxonomy."""
    detail = redact(_error_text(body))
    lowered = detail.lower()
    kw: dict[str, Any] = {"provider": provider, "model": model, "status_code": status}
    where = f"{provider} returned HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        ms = headers.get("retry-after-ms")
        if retry_after is None and ms:
            try:
                retry_after = float(ms) / 1000
            except ValueError:
                retry_after = None
        return RateLimited(f"{where}: rate limited: {detail}", retry_after=retry_after, **kw)
    if status in (401, 403):
        return AuthFailed(f"{where}: authentication failed: {detail}", **kw)
    if status == 404:
        return NotFound(f"{where}: model or endpoint not found: {detail}", **kw)
    if status == 413 or any(h in lowered for h in _CONTEXT_HINTS):
        return ContextTooLong(f"{where}: request does not fit the context window: {detail}", **kw)
    if any(h in lowered for h in _FILTER_HINTS):
        return ContentFiltered(f"{where}: blocked by the provider's content filter", **kw)
    if status in (408, 504):
        return Timeout(f"{where}: upstream timed out: {detail}", **kw)
    if status >= 500 or status == 529:
        return ProviderUnavailable(f"{where}: {detail}", **kw)
    return BadRequest(f"{where}: {detail}", **kw)


def _json_object(body: bytes, not_json: str, *, provider: str, model: str) -> dict[str, Any]:
    """The body as a JSON object, or :class:`MalformedResponse` saying what it was instead."""
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponse(f"{provider} {not_json}", provider=provider, model=model) from None
    if not isinstance(data, dict):
        raise MalformedResponse(
            f"{provider} returned JSON that is not an object", provider=provider, model=model
        )
    return data


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str],
    provider: str,
    model: str,
    total_timeout_s: float | None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """POST ``payload`` and return the decoded JSON object, or raise a classified error.

    The total deadline is enforced around the whole exchange, because httpx's timeouts
    apply per read: a server that trickles bytes would otherwise never time out.
    """
    kw: dict[str, Any] = {"provider": provider, "model": model}

    async def exchange() -> tuple[int, bytes, httpx.Headers | list[tuple[bytes, bytes]]]:
        if isinstance(client, AiohttpClient):
            status, raw, content = await client.post_json(url, payload, headers)
            return status, content, raw
        response = await client.post(url, json=payload, headers=headers)
        return response.status_code, response.content, response.headers

    try:
        if total_timeout_s is not None:
            # asyncio.timeout, not wait_for: on 3.11 wait_for runs the coroutine in a new task
            async with asyncio.timeout(total_timeout_s):
                status, body, resp_headers = await exchange()
        else:
            status, body, resp_headers = await exchange()
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Timeout(f"{provider} did not answer in time ({type(exc).__name__})", **kw) from None
    except httpx.RemoteProtocolError as exc:
        raise ProviderUnavailable(
            f"{provider} closed the connection: {redact(str(exc))}", **kw
        ) from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(
            f"{provider} unreachable: {type(exc).__name__}: {redact(str(exc))}", **kw
        ) from None
    if status >= 400:
        raise classify_status(
            status, body, httpx.Headers(resp_headers), provider=provider, model=model
        )
    data = _json_object(body, f"returned a body that is not JSON ({len(body)} bytes)", **kw)
    if check is not None:
        check(data)
    return data


async def stream_sse(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str],
    provider: str,
    model: str,
    last: Callable[[dict[str, Any]], bool] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """POST ``payload`` and yield the JSON object of each server-sent event until ``[DONE]``.

    ``last`` says which event ends a stream that has no ``[DONE]`` marker (Anthropic's
    ``message_stop``); that event is yielded, then the stream is done.

    Failures are classified as :func:`post_json` classifies them, with one addition: a
    stream that ends without ``[DONE]`` was cut (a reset, a crashed upstream), which is a
    :class:`ProviderUnavailable`, never a short but clean answer. An upstream that ignores
    ``stream`` and answers with one JSON body yields that body once. The caller enforces
    the total deadline, since it spans the caller's own work between events.
    """
    kw: dict[str, Any] = {"provider": provider, "model": model}
    where = "unreachable"
    try:
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            where = "broke off mid-stream"
            if response.status_code >= 400:
                body = await response.aread()
                raise classify_status(
                    response.status_code, body, response.headers, provider=provider, model=model
                )
            if "text/event-stream" not in response.headers.get("content-type", ""):
                body = await response.aread()
                yield _json_object(
                    body, "answered a stream request with neither events nor JSON", **kw
                )
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, ``event:`` lines
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    raise MalformedResponse(
                        f"{provider} sent a stream event that is not JSON: {redact(data[:100])}",
                        **kw,
                    ) from None
                if not isinstance(event, dict):
                    raise MalformedResponse(
                        f"{provider} sent a stream event that is not an object", **kw
                    )
                if "error" in event:
                    raise ProviderUnavailable(
                        f"{provider} failed mid-stream: {redact(_error_text(data.encode()))}", **kw
                    )
                yield event
                if last is not None and last(event):
                    return
    except httpx.TimeoutException as exc:
        raise Timeout(f"{provider} stream stalled ({type(exc).__name__})", **kw) from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(
            f"{provider} {where}: {type(exc).__name__}: {redact(str(exc))}", **kw
        ) from None
    raise ProviderUnavailable(f"{provider} stream ended without its end marker: it was cut", **kw)


class HttpProvider:
    """Shared plumbing of the HTTP providers: client, key, timeouts, one request path.

    Subclasses say how a request becomes a payload and headers, and how a body becomes a
    :class:`Completion`; sending and failure classification happen here, once.
    """

    endpoint = ""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        api_key_env: str | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float,
        context_window: int | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or (read_secret(api_key_env) if api_key_env else None)
        self._total_timeout_s = total_timeout_s
        self._context_window = context_window
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        """The client for the running event loop.

        An httpx client is bound to the loop it first ran on; a provider reused from a
        second ``asyncio.run`` (scripts, ``Workspace.run_sync``, workers) gets a new one
        instead of failing with "Event loop is closed".
        """
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = make_client(self._timeout, self._transport)
            self._client_loop = loop
        return self._client

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _payload(self, request: CompletionRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, data: dict[str, Any], request: CompletionRequest) -> Completion:
        raise NotImplementedError

    async def _stream(self, request: CompletionRequest, sink: StreamSink) -> Completion:
        """The call made as a stream, each text delta sent to ``sink`` as it arrives.

        Here, for an API without streaming: one whole answer, which the server then sends
        as a stream itself.
        """
        return await self._call(request)

    def _deadline_s(self, request: CompletionRequest) -> float:
        return request.timeout_s if request.timeout_s is not None else self._total_timeout_s

    @contextlib.asynccontextmanager
    async def _stream_deadline(self, request: CompletionRequest) -> AsyncIterator[None]:
        """The whole stream within the request's deadline, else :class:`Timeout`."""
        timeout = self._deadline_s(request)
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError:
            raise Timeout(
                f"{self.name} stream did not finish within {timeout:.2f}s",
                provider=self.name,
                model=request.model,
            ) from None

    def _events(
        self,
        request: CompletionRequest,
        payload: dict[str, Any],
        last: Callable[[dict[str, Any]], bool] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The server-sent events of ``payload`` posted to this provider's endpoint."""
        return stream_sse(
            self._http(),
            self._base_url + self.endpoint,
            payload,
            headers={"content-type": "application/json", **self._headers()},
            provider=self.name,
            model=request.model,
            last=last,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        sink = current_sink()
        if sink is None:
            return await self._call(request)
        try:
            return await self._stream(request, sink)
        except RoadworthyError as exc:
            sink.committed_failure(exc)
            raise

    async def _call(self, request: CompletionRequest) -> Completion:
        """One request, one JSON answer."""
        timeout = self._deadline_s(request)
        data = await post_json(
            self._http(),
            self._base_url + self.endpoint,
            self._payload(request),
            headers={"content-type": "application/json", **self._headers()},
            provider=self.name,
            model=request.model,
            total_timeout_s=timeout,
        )
        return self._parse(data, request)

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
