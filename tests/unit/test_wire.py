"""The hot-path HTTP/1.1 client against a raw server on loopback that answers byte for byte.

Each test scripts the exact bytes of the answers (chunked, gzip, close-delimited, an
informational answer first, garbage, a cut body), so what is checked is the client's
reading of the wire, not a framework's idea of it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from roadworthy.providers._aiohttp import AiohttpClient
from roadworthy.providers._wire import WirePool


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body


class Upstream:
    """A keep-alive loopback server: each request read whole, answered with the next script."""

    def __init__(self) -> None:
        self.scripts: list[bytes] = []
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                writer.write(self.scripts.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with Upstream() as server:
        yield server


def pool(read_timeout: float | None = 2.0) -> WirePool:
    return WirePool(connect_timeout=1.0, read_timeout=read_timeout, default_headers={})


async def post(wire: WirePool, url: str, body: bytes = b'{"x":1}') -> tuple[int, bytes]:
    target = wire.target(url)
    assert target is not None
    data = wire.request_bytes(target, body, {"content-type": "application/json"})
    assert data is not None
    status, _, content = await wire.post(target, data)
    return status, content


async def test_connections_are_kept_alive_and_reused(upstream: Upstream) -> None:
    upstream.scripts = [answer(b'{"n":1}'), answer(b'{"n":2}'), answer(b'{"n":3}')]
    wire = pool()
    assert [await post(wire, upstream.url) for _ in range(3)] == [
        (200, b'{"n":1}'),
        (200, b'{"n":2}'),
        (200, b'{"n":3}'),
    ]
    assert upstream.connections == 1
    request = upstream.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-length: 7\r\n" in request and request.endswith(b'\r\n\r\n{"x":1}')
    await wire.aclose()


async def test_chunked_gzip_and_informational_answers(upstream: Upstream) -> None:
    chunked = (
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    zipped = answer(gzip.compress(b'{"z":true}'), "content-encoding: gzip")
    informational = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"{}")
    upstream.scripts = [chunked, zipped, informational]
    wire = pool()
    assert await post(wire, upstream.url) == (200, b'{"a":1}')
    assert await post(wire, upstream.url) == (200, b'{"z":true}')
    assert await post(wire, upstream.url) == (200, b"{}")
    assert upstream.connections == 1
    await wire.aclose()


async def serve(handler: Callable[..., object]) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"


async def test_a_body_delimited_by_the_close_is_read_to_the_end() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"z" * 5000)
        await writer.drain()
        writer.close()

    server, url = await serve(closing)
    wire = pool()
    assert await post(wire, url, b"") == (200, b"z" * 5000)
    assert not wire._open  # not kept: the server closed it
    server.close()
    await wire.aclose()


async def test_silence_past_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    server, url = await serve(silent)
    wire = pool(read_timeout=0.2)
    with pytest.raises(httpx.ReadTimeout):
        await post(wire, url, b"")
    assert not wire._open
    server.close()
    await wire.aclose()


async def test_a_refused_connection_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await post(pool(), f"http://127.0.0.1:{port}/v1/x")


async def test_an_abandoned_exchange_closes_its_connection() -> None:
    asked = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()  # the request went out on a pooled connection; now it is abandoned
        await asyncio.sleep(5)

    server, url = await serve(slow)
    wire = pool()
    task = asyncio.create_task(post(wire, url, b""))
    await asyncio.wait_for(asked.wait(), 5)
    assert len(wire._open) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not wire._open and not any(wire._idle.values())
    server.close()
    await wire.aclose()


def test_what_cannot_go_on_the_wire_is_left_to_httpx() -> None:
    wire = pool()
    target = wire.target("http://127.0.0.1:9/v1/x?a=1")
    assert target is not None and target.head.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\n")
    assert wire.request_bytes(target, b"", {"authorization": "Bearer a\r\nx-evil: 1"}) is None
    assert wire.request_bytes(target, b"", {"x-name": "caf\u00e9\u2603"}) is None
    assert wire.target("ftp://example.com/x") is None
    assert wire.target("http://user:pw@example.com/x") is None
    ipv6 = wire.target("https://[::1]:8443/v1")
    assert ipv6 is not None and b"host: [::1]:8443\r\n" in ipv6.head
    assert ipv6.origin == ("https", "::1", 8443)


async def test_the_client_posts_json_over_the_pool_and_httpx_reads_the_same(
    upstream: Upstream,
) -> None:
    """``post_json`` and httpx-style ``post`` give the same answer; both reuse one connection."""
    payload = {"model": "m", "messages": [{"role": "user", "content": "caf\u00e9"}]}
    echoed = answer(gzip.compress(b'{"ok":1}'), "content-encoding: gzip", "x-request-id: r1")
    upstream.scripts = [echoed, echoed]
    client = AiohttpClient(timeout=httpx.Timeout(2.0))
    status, headers, body = await client.post_json(upstream.url, payload, {"x-k": "v"})
    assert (status, body) == (200, b'{"ok":1}') and (b"x-request-id", b"r1") in headers
    response = await client.post(upstream.url, json=payload, headers={"x-k": "v"})
    assert response.status_code == 200 and response.json() == {"ok": 1}
    assert response.headers["x-request-id"] == "r1"
    assert upstream.connections == 1
    sent = upstream.requests[0]
    assert sent.endswith(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    assert b"x-k: v\r\n" in sent and b"accept-encoding: gzip, deflate\r\n" in sent
    await client.aclose()


async def test_an_upgrade_answer_is_a_protocol_error() -> None:
    async def upgrading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n"
        )
        await reader.read()

    server, url = await serve(upgrading)
    with pytest.raises(httpx.RemoteProtocolError):
        await post(pool(), url, b"")
    server.close()


async def test_a_body_that_trickles_in_resets_the_read_timeout() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        for piece in b"slow!":
            await asyncio.sleep(0.1)
            writer.write(bytes([piece]))
        await reader.read()

    server, url = await serve(trickle)
    wire = pool(read_timeout=0.3)  # the whole answer takes longer; no gap does
    assert await post(wire, url, b"") == (200, b"slow!")
    (connection,) = wire._open
    assert connection._timer is None  # no read-deadline check left behind
    server.close()
    await wire.aclose()


def test_urls_that_need_encoding_are_left_to_httpx() -> None:
    wire = pool()
    assert wire.target("http://127.0.0.1:9/v1/a b") is None
    assert wire.target("http://127.0.0.1:9/v1/caf\u00e9") is None
    assert wire.target("http://b\u00fccher.example/v1") is None


async def reconnects(
    extra: bytes = b"", later: bytes | None = None
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Post twice to a server that answers ``ok`` (plus ``extra`` in the same write), then
    after 50 ms sends ``later`` or, for None, closes; the second post must find a new
    connection. The connections the server saw and the first answer's headers.
    """
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(b"ok") + extra)
        await writer.drain()
        await asyncio.sleep(0.05)
        if later is None:
            writer.close()  # the server's own idle timeout, while the client keeps it pooled
            return
        writer.write(later)
        await reader.read()  # until the client hangs up

    server, url = await serve(handler)
    wire = pool()
    target = wire.target(url)
    assert target is not None
    data = wire.request_bytes(target, b"", {})
    assert data is not None
    status, headers, body = await wire.post(target, data)
    assert (status, body) == (200, b"ok")
    await asyncio.sleep(0.2)
    assert await post(wire, url, b"") == (200, b"ok")
    server.close()
    await wire.aclose()
    return connections, headers


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    connections, _ = await reconnects()
    assert connections == 2  # a new connection, not the dead one


async def test_an_idle_connection_that_receives_bytes_is_not_reused() -> None:
    connections, _ = await reconnects(
        later=b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"
    )
    assert connections == 2


async def test_bytes_after_an_answer_in_the_same_segment_retire_the_connection() -> None:
    # an answer and the start of another in one write: the second must not leak into
    # the first (its headers) nor leave the parser mid-message for the next request
    extra = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 9\r\n\r\nHTT"
    connections, headers = await reconnects(extra=extra)
    assert connections == 2
    assert not any(name.lower() == b"content-encoding" for name, _ in headers)


@pytest.mark.parametrize(
    ("raw", "error", "exchange_failed"),
    [
        (b"garbage\r\n\r\n", httpx.RemoteProtocolError, True),
        (b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"cut', httpx.RemoteProtocolError, True),
        # read to the end, so the connection itself was fine; its body was not
        (answer(b"not gzip", "content-encoding: gzip"), httpx.RemoteProtocolError, False),
        (answer(b"x", "content-encoding: br"), httpx.RemoteProtocolError, False),
    ],
    ids=["not-http", "cut-body", "corrupt-gzip", "unasked-encoding"],
)
async def test_broken_answers_raise_what_httpx_would(
    raw: bytes, error: type[Exception], exchange_failed: bool
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    server, url = await serve(cut)
    wire = pool()
    with pytest.raises(error):
        await post(wire, url, b"")
    if exchange_failed:
        assert not wire._open  # a failed exchange never goes back to the pool
    server.close()
    await wire.aclose()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_origins_are_verified_and_pooled(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    upstream = Upstream()
    server = await asyncio.start_server(upstream._handle, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    url = f"https://localhost:{port}/v1/chat/completions"
    upstream.scripts = [answer(b"1"), answer(b"2")]
    trusting = ssl.create_default_context(cafile=str(cert))
    wire = WirePool(connect_timeout=2.0, read_timeout=2.0, default_headers={}, ssl_context=trusting)
    assert await post(wire, url) == (200, b"1")
    assert await post(wire, url) == (200, b"2")
    assert upstream.connections == 1
    assert upstream.requests[0].startswith(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost:"
    )
    await wire.aclose()
    # the default context (httpx's CA bundle) refuses a certificate nobody vouched for
    with pytest.raises(httpx.ConnectError):
        await post(pool(), url)
    server.close()
