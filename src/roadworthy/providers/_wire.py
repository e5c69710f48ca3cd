"""A keep-alive HTTP/1.1 client for the one exchange on a gateway's hot path.

A model call through ``roadworthy serve`` is, for the gateway, a JSON body posted to one
upstream and a JSON answer read back whole. Measured in ``bench/gateway.py`` on one core,
aiohttp's general machinery for that exchange (request and response objects, multidict
headers, URL objects, payload writers, a timer per read) plus the ``httpx.Response``
built around its answer was about a third of the CPU the gateway spent on a call. This
module does only that exchange: the request head formatted once per target and written
with the body in one ``write``, the answer parsed by httptools (llhttp, the parser
uvicorn serves with) into a status, raw headers and the body, the connection back into a
per-origin pool. Streams, proxies and every other request stay on httpx and aiohttp.

Failures are raised as the httpx exceptions the providers already classify, the same
mapping :mod:`._aiohttp` applies to aiohttp's: refused or unreachable is
``ConnectError``, no connection within the connect timeout ``ConnectTimeout``, no byte
within the read timeout ``ReadTimeout``, a reset ``ReadError``, a close before the answer
ended or an answer that is not HTTP ``RemoteProtocolError``. A failed or abandoned
exchange closes its connection; only a connection whose answer was read to the end and
that the server keeps alive goes back to the pool, and an idle one is dropped after
``keepalive_s``, shorter than the servers' own idle limits (uvicorn's is 5 s), so a
request is rarely sent on a connection the server is closing.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["Answer", "WirePool", "available", "decoded"]

try:
    import httptools
except ImportError:  # pragma: no cover - the [server] extra installs it
    httptools = None  # type: ignore[assignment]

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, raw headers (as sent) and the body, decoded if it came gzip- or deflate-encoded."""

_Origin = tuple[str, str, int]


def available() -> bool:
    return httptools is not None


@dataclass(frozen=True, slots=True)
class _Target:
    origin: _Origin
    head: bytes  # request line and Host header


class _Connection(asyncio.Protocol):
    """One connection: at most one exchange at a time, answers parsed as they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.last_read = 0.0
        self.answered = False  # this exchange's answer is complete
        self.tainted = False  # bytes came after it: the framing can no longer be trusted
        self._timer: asyncio.TimerHandle | None = None
        self._start_message()

    def _start_message(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.keep_alive = False
        self.framed = False  # a Content-Length or a chunked body: its end is in the data

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            # bytes nobody asked for (a 408 before an idle close, say): the connection's
            # framing can no longer be trusted, so it is never used again
            self.tainted = True
            self.close()
            return
        self.last_read = time.monotonic()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(httpx.RemoteProtocolError(f"the answer is not valid HTTP/1.1: {exc!r}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if exc is not None:
            self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
        elif self.headers_done and not self.framed:
            self.keep_alive = False
            self._finish()  # a body that ends where the connection does
        else:
            self._fail(
                httpx.RemoteProtocolError(
                    "the server closed the connection before the answer ended"
                )
            )

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.answered:
            self.tainted = True  # a second message in the bytes that ended the first

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.answered:
            return
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and value.lower().rstrip().endswith(b"chunked")
        ):
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.answered:
            return
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if not self.answered:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.answered:
            return
        if 100 <= self.status < 200:
            self._start_message()  # an informational answer; the real one follows
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._finish()

    # -- the exchange -----------------------------------------------------------------

    def _finish(self) -> None:
        self.answered = True
        if self.waiter is not None and not self.waiter.done():
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.waiter.set_result((self.status, list(self.headers), body))

    def reusable(self) -> bool:
        """Whether the next request may go on this connection."""
        return (
            self.keep_alive
            and not self.closed
            and not self.tainted
            and self.transport is not None
            # an answer that came before the whole request was written leaves the rest
            # queued: the server may never read it
            and self.transport.get_write_buffer_size() == 0
        )

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    async def exchange(self, data: bytes, read_timeout: float | None) -> Answer:
        """Send one request and wait for its whole answer."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._start_message()
        self.answered = False
        waiter: asyncio.Future[Answer] = loop.create_future()
        self.waiter = waiter
        self.last_read = time.monotonic()
        self.transport.write(data)
        if read_timeout is not None:
            self._timer = loop.call_later(read_timeout, self._read_deadline, read_timeout)
        try:
            return await waiter
        finally:
            self.waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _read_deadline(self, read_timeout: float) -> None:
        """Fail the exchange if nothing arrived for ``read_timeout``, else look again later."""
        if self.waiter is None or self.waiter.done():
            return
        quiet = time.monotonic() - self.last_read
        if quiet >= read_timeout:
            self._fail(httpx.ReadTimeout(f"no data for {read_timeout:.1f}s"))
            self.close()
        else:
            self._timer = asyncio.get_running_loop().call_later(
                read_timeout - quiet, self._read_deadline, read_timeout
            )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class WirePool:
    """Keep-alive connections per origin, at most ``max_connections`` each, for JSON posts."""

    def __init__(
        self,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        default_headers: Mapping[str, str],
        max_connections: int = 100,
        keepalive_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._defaults = {k.lower(): v for k, v in default_headers.items()}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._slots: dict[_Origin, asyncio.Semaphore] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl = ssl_context
        self._open: set[_Connection] = set()

    def target(self, url: str) -> _Target | None:
        """The parsed URL, or None for one this client leaves to httpx."""
        target = self._targets.get(url)
        if target is not None:
            return target
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            shown = f"{shown}:{parts.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not (_visible_ascii(path) and _visible_ascii(shown)):
            return None  # httpx percent-encodes what may not go on the wire as it is
        head = f"POST {path} HTTP/1.1\r\nhost: {shown}\r\n".encode("ascii")
        target = _Target((parts.scheme, host, port), head)
        if len(self._targets) < 256:
            self._targets[url] = target
        return target

    def request_bytes(
        self, target: _Target, body: bytes, headers: Mapping[str, str]
    ) -> bytes | None:
        """The whole request, or None when a header cannot go on the wire as it is."""
        merged = dict(self._defaults)
        merged["content-type"] = "application/json"
        for name, value in headers.items():
            merged[name.lower()] = value
        merged.pop("host", None)
        merged["accept-encoding"] = "gzip, deflate"  # only what decoded() undoes
        merged["content-length"] = str(len(body))
        lines = []
        for name, value in merged.items():
            if not (_safe(name) and _safe(value)):
                return None
            lines.append(f"{name}: {value}\r\n")
        try:
            head = "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            return None
        return b"".join((target.head, head, b"\r\n", body))

    async def post(self, target: _Target, data: bytes) -> Answer:
        """Send ``data`` (from :meth:`request_bytes`) to ``target``'s origin; the answer."""
        origin = target.origin
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self.max_connections)
        async with slots:
            connection = self._take(origin) or await self._connect(origin)
            try:
                status, headers, body = await connection.exchange(data, self.read_timeout)
            except BaseException:
                self._discard(connection)
                raise
            if connection.reusable():
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(connection)
            else:
                self._discard(connection)
        return status, headers, decoded(headers, body)

    def _take(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive_s):
            self._discard(idle.pop(0))  # the oldest first: past their keep-alive
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            self._discard(connection)
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        scheme, host, port = origin
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()  # the CA bundle httpx verifies with
            tls = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}") from exc
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            self._discard(connection)
        self._idle.clear()


def _visible_ascii(text: str) -> bool:
    """Printable ASCII without spaces: what a request target or host may hold as it is."""
    return all("!" <= ch <= "~" for ch in text)


def _safe(text: str) -> bool:
    """No CR, LF or NUL: nothing that could end a header line or the head early."""
    return "\r" not in text and "\n" not in text and "\0" not in text


def decoded(headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    encoding = b""
    for name, value in headers:
        if name.lower() == b"content-encoding":
            encoding = value.strip().lower()
    if not body or encoding in (b"", b"identity"):
        return body
    try:
        if encoding == b"gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some send it
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(
            f"the answer's {encoding.decode()} body is corrupt"
        ) from exc
    raise httpx.RemoteProtocolError(f"the answer came {encoding.decode()}-encoded, not as asked")
