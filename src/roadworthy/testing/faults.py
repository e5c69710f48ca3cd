"""A fault-injecting upstream that speaks the OpenAI and Anthropic chat APIs.

Tests need real sockets to prove that timeouts, resets and half-written bodies are
classified correctly; an in-process mock cannot produce a connection reset. The server
runs in a thread on 127.0.0.1 with an ephemeral port and answers each request with the
next :class:`Fault` of its schedule, or with a normal completion once the schedule is
used up::

    with FaultServer([Fault.status(429, retry_after="2"), Fault.ok("hi")]) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="test-key")
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fault", "FaultServer"]


@dataclass
class Fault:
    """What the server does with one request."""

    kind: str  # ok | status | hang | reset | body | truncate
    status_code: int = 200
    text: str = "ok"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 30.0
    usage: dict[str, Any] | None = None

    @classmethod
    def ok(cls, text: str = "ok", *, usage: dict[str, Any] | None = None) -> Fault:
        return cls("ok", text=text, usage=usage)

    @classmethod
    def status(
        cls, code: int, *, message: str = "injected failure", retry_after: str | None = None
    ) -> Fault:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = json.dumps({"error": {"message": message, "type": "injected"}}).encode()
        return cls("status", status_code=code, body=body, headers=headers)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        return cls("hang", hang_s=seconds)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def raw(cls, body: bytes, status_code: int = 200) -> Fault:
        return cls("body", status_code=status_code, body=body)

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncate")


def _openai_body(fault: Fault, model: str) -> dict[str, Any]:
    usage = fault.usage or {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": fault.text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _anthropic_body(fault: Fault, model: str) -> dict[str, Any]:
    usage = fault.usage or {"input_tokens": 12, "output_tokens": 3}
    return {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": fault.text}],
        "stop_reason": "end_turn",
        "usage": usage,
    }


class FaultServer:
    def __init__(self, schedule: Iterable[Fault] = ()) -> None:
        self.schedule: deque[Fault] = deque(schedule)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._send(200, b'{"data": []}')

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": payload}
                    )
                    fault = server.schedule.popleft() if server.schedule else Fault.ok()
                server._answer(self, fault, payload)

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self._handler = Handler
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self.schedule.extend(faults)

    def _answer(self, handler: Any, fault: Fault, payload: dict[str, Any]) -> None:
        model = str(payload.get("model", "fault-model"))
        anthropic = handler.path.endswith("/messages")
        if fault.kind == "ok":
            body = _anthropic_body(fault, model) if anthropic else _openai_body(fault, model)
            handler._send(200, json.dumps(body).encode())
        elif fault.kind in ("status", "body"):
            handler._send(fault.status_code, fault.body or b"", fault.headers)
        elif fault.kind == "hang":
            self._release.wait(fault.hang_s)
            handler.close_connection = True
        elif fault.kind == "reset":
            sock: socket.socket = handler.connection
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()
            handler.close_connection = True
        elif fault.kind == "truncate":
            handler.send_response(200)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", "500")
            handler.end_headers()
            handler.wfile.write(b'{"id": "chatcmpl-trunc", "choices": [{"mess')
            handler.wfile.flush()
            time.sleep(0.05)
            handler.close_connection = True
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
