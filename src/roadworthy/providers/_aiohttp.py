"""An httpx transport over aiohttp: the same client API, a much cheaper request.

The HTTP providers speak httpx; this module only swaps what sits under it, through
httpx's transport seam. Measured with ``bench/gateway.py``'s setup on one core, the
gateway spent about twice the CPU per upstream call on httpx's default transport
(httpcore on anyio) as on this one: httpcore checks every pooled connection (a
``getpeername`` and a ``poll`` each) on every request and runs each one through anyio's
cancel scopes; aiohttp's connector and C parser do neither.

:func:`make_client` uses it when aiohttp is installed (the ``[server]`` extra brings it)
and the provider was given no transport of its own. aiohttp's failures are mapped to the
httpx exceptions that httpcore raises for the same event, so :mod:`._http` classifies
them exactly as before: a refused connection is a ``ConnectError``, a socket timeout a
``ConnectTimeout``/``ReadTimeout``, a server that hangs up before or during the answer a
``RemoteProtocolError``, a reset a ``ReadError``. (The ``httpx-aiohttp`` package does the
same job but maps a server disconnect to ``ConnectTimeout``, which would turn an outage
into a timeout here.)
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ._wire import Answer, WirePool, decoded
from ._wire import available as wire_available

__all__ = ["AiohttpClient", "AiohttpTransport", "make_client"]

try:
    import aiohttp
except ImportError:  # pragma: no cover - the [server] extra installs it
    aiohttp = None  # type: ignore[assignment]


def make_client(
    timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """The providers' client: on aiohttp unless a transport was given or aiohttp is missing."""
    if transport is None and aiohttp is not None:
        return AiohttpClient(timeout=timeout)
    return httpx.AsyncClient(timeout=timeout, transport=transport)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """Re-raise aiohttp's exceptions as the httpx ones httpcore uses for the same event."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # refused, unreachable, DNS
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc)) from exc
    except aiohttp.ServerTimeoutError as exc:  # sock_read: no byte within the read timeout
        raise httpx.ReadTimeout(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or headers
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except aiohttp.ClientOSError as exc:  # reset while sending or reading
        raise httpx.ReadError(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise httpx.NetworkError(str(exc)) from exc


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives (streamed answers are not buffered)."""

    def __init__(self, response: Any) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (created on first use, in the running loop) behind httpx."""

    def __init__(self, *, max_connections: int = 100, keepalive_s: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: Any = None
        self._env_proxies = urllib.request.getproxies()
        self._proxies: dict[tuple[str, str, int | None], str | None] = {}

    def _open(self) -> Any:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive_s,
            ssl=httpx.create_ssl_context(),  # the same CA bundle httpx verifies with
        )
        # trust_env=False: aiohttp would re-read the proxy variables and ~/.netrc on every
        # request; httpx reads the proxy variables once per client and ignores .netrc, so
        # the proxies are resolved here the httpx way, once per origin (see _proxy).
        return aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy for ``url`` from HTTP(S)_PROXY / NO_PROXY, looked up once per origin."""
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxies:
            proxy = self._env_proxies.get(url.scheme)
            if proxy and urllib.request.proxy_bypass(url.host):
                proxy = None
            self._proxies[origin] = proxy
        return self._proxies[origin]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        try:
            body: bytes | None = request.content or None
        except httpx.RequestNotRead:
            body = await request.aread() or None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        with _mapped():
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body,
                allow_redirects=False,
                proxy=self._proxy(request.url) if self._env_proxies else None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpClient(httpx.AsyncClient):
    """An httpx client on :class:`AiohttpTransport`, with a short path for JSON posts.

    :meth:`post_json` (``post(url, json=..., headers=...)`` in httpx's terms), the one call
    of the providers' hot path, skips httpx: the same body bytes (httpx's compact JSON
    encoding), the same headers (the client's defaults, then the call's), the same
    timeouts and exception mapping, answered with the status, raw headers and decoded
    body. It goes over :class:`._wire.WirePool` where it can (plain or TLS origins with no
    proxy, headers that can go on the wire) and over aiohttp otherwise. That skips
    httpx's request building, auth, redirect and cookie handling, which none of the
    providers use, and aiohttp's general request machinery; bench/gateway.py measured
    each at about as much CPU as everything else a proxied call costs. Every other call
    (streams included) is plain httpx on aiohttp.
    """

    def __init__(self, *, timeout: httpx.Timeout) -> None:
        self._aiohttp = AiohttpTransport()
        super().__init__(timeout=timeout, transport=self._aiohttp)
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._wire = (
            WirePool(
                connect_timeout=timeout.connect,
                read_timeout=timeout.read,
                default_headers=dict(self.headers.items()),
            )
            if wire_available()
            else None
        )

    async def post_json(self, url: str, payload: Any, headers: dict[str, str]) -> Answer:
        """POST ``payload`` as JSON; the status, raw headers and (decoded) body."""
        body = json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
        transport = self._aiohttp
        proxy = transport._proxy(httpx.URL(url)) if transport._env_proxies else None
        if self._wire is not None and proxy is None:
            target = self._wire.target(url)
            data = None if target is None else self._wire.request_bytes(target, body, headers)
            if target is not None and data is not None:
                return await self._wire.post(target, data)
        merged = dict(self.headers.items())
        merged.update({k.lower(): v for k, v in headers.items()})
        merged.setdefault("content-type", "application/json")
        merged["accept-encoding"] = "gzip, deflate"  # what decoded() undoes
        if transport._session is None:
            transport._session = transport._open()
        with _mapped():
            response = await transport._session.request(
                "POST",
                url,
                headers=merged,
                data=body,
                allow_redirects=False,
                proxy=proxy,
                timeout=self._aiohttp_timeout,
            )
            try:
                content = await response.read()
            finally:
                response.release()
        return response.status, list(response.raw_headers), decoded(response.raw_headers, content)

    async def post(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        payload = kwargs.get("json")
        if payload is None or not isinstance(url, str) or set(kwargs) - {"json", "headers"}:
            return await super().post(url, **kwargs)
        status, headers, content = await self.post_json(url, payload, kwargs.get("headers") or {})
        return httpx.Response(
            status_code=status,
            headers=[(k, v) for k, v in headers if k.lower() != b"content-encoding"],
            content=content,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._wire is not None:
            await self._wire.aclose()
        await super().aclose()
