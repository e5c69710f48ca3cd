"""A fault-injecting upstream that speaks the OpenAI and Anthropic chat APIs.

Tests need real sockets to prove that timeouts, resets and half-written bodies are
classified correctly; an in-process mock cannot produce a connection reset. The server
runs in a thread on 127.0.0.1 with an ephemeral port and answers each request with the
next :class:`Fault` of its schedule, or with a normal completion once the schedule is
used up::

    with FaultServer([Fault.status(429, retry_after="2"), Fault.ok("hi")]) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="test-key")

Beyond a fixed list, a schedule can repeat (``cycle``), draw faults from a seeded ``mix``
of presets, and enforce the server's own RPM/TPM limits (answering 429 with Retry-After
when a client goes over), which is what the rate-limit benchmark and the whole-stack
tests run against. :func:`load_schedule` reads the same from a YAML/JSON file for
``roadworthy fake-upstream --schedule FILE``::

    faults: [{preset: rate_limited}, {preset: ok, times: 3}, {preset: error_503}]
    cycle: true
    mix: {ok: 0.8, error_503: 0.1, reset: 0.1}   # instead of faults, with seed
    limits: {rpm: 600, tpm: 100000, window_s: 60}
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PRESETS", "Fault", "FaultServer", "UpstreamLimits", "load_schedule"]


@dataclass
class Fault:
    """What the server does with one request."""

    kind: str  # ok | status | hang | reset | body | truncate | slow | reset_mid_body
    status_code: int = 200
    text: str = "ok"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 30.0
    usage: dict[str, Any] | None = None
    finish_reason: str = "stop"
    delay_s: float = 0.0  # before the first byte of the answer

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

    @classmethod
    def slow(cls, delay_s: float, text: str = "ok") -> Fault:
        """A normal answer whose first byte comes after ``delay_s``."""
        return cls("slow", text=text, delay_s=delay_s)

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Headers and half a body, then a TCP reset."""
        return cls("reset_mid_body")

    @classmethod
    def context_length(cls, window: int = 2048) -> Fault:
        return cls.status(
            400,
            message=f"This model's maximum context length is {window} tokens. However, your "
            "messages resulted in more tokens.",
        )

    @classmethod
    def content_filter(cls) -> Fault:
        """The request refused by the provider's safety system (HTTP 400)."""
        return cls.status(400, message="The response was filtered due to the content_filter policy")

    @classmethod
    def filtered_output(cls) -> Fault:
        """A 200 whose choice ends with ``finish_reason: content_filter``."""
        return cls("ok", text="", finish_reason="content_filter")

    @classmethod
    def preset(cls, name: str, **kw: Any) -> Fault:
        """A named fault, as schedule files and mixes name them (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown fault preset {name!r} (one of {', '.join(PRESETS)})")
        fault: Fault = PRESETS[name](**kw)
        return fault


PRESETS: dict[str, Any] = {
    "ok": lambda text="ok", **kw: Fault.ok(text, **kw),
    "rate_limited": lambda retry_after="1", **_: Fault.status(429, retry_after=str(retry_after)),
    "rate_limited_no_retry_after": lambda **_: Fault.status(429),
    "error_500": lambda **_: Fault.status(500),
    "error_502": lambda **_: Fault.status(502),
    "error_503": lambda **_: Fault.status(503),
    "hang": lambda seconds=30.0, **_: Fault.hang(float(seconds)),
    "reset": lambda **_: Fault.reset(),
    "reset_mid_body": lambda **_: Fault.reset_mid_body(),
    "malformed": lambda **_: Fault.raw(b"<html>502 Bad Gateway</html>"),
    "truncated": lambda **_: Fault.truncated(),
    "slow": lambda delay_s=1.0, **_: Fault.slow(float(delay_s)),
    "context_length": lambda window=2048, **_: Fault.context_length(int(window)),
    "content_filter": lambda **_: Fault.content_filter(),
    "filtered_output": lambda **_: Fault.filtered_output(),
}


@dataclass(frozen=True)
class UpstreamLimits:
    """The server's own limits, enforced over a sliding window like a real provider's."""

    rpm: int | None = None
    tpm: int | None = None
    window_s: float = 60.0


def _prompt_tokens(payload: dict[str, Any]) -> int:
    messages = payload.get("messages") or []
    chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    return max(1, chars // 4)


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
                "finish_reason": fault.finish_reason,
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
    def __init__(
        self,
        schedule: Iterable[Fault] = (),
        *,
        port: int = 0,
        cycle: bool = False,
        mix: dict[str, float] | None = None,
        seed: int = 0,
        limits: UpstreamLimits | None = None,
        usage_from_request: bool = False,
        keep_requests: bool = True,
    ) -> None:
        self.schedule: deque[Fault] = deque(schedule)
        self.requests: list[dict[str, Any]] = []
        self.cycle = cycle
        self.mix = mix
        self.rng = random.Random(seed)
        self.limits = limits
        self.usage_from_request = usage_from_request or limits is not None
        self.keep_requests = keep_requests
        self.served: Counter[str] = Counter()
        self.limited = 0  # 429s answered because a client went over RPM/TPM
        self.billed_tokens = 0
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
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
                    if server.keep_requests:
                        server.requests.append(
                            {"path": self.path, "headers": dict(self.headers), "json": payload}
                        )
                    over = server._over_limit(payload)
                    fault = over or server._next_fault()
                    server.served[fault.kind if over is None else "limited"] += 1
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
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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

    def _next_fault(self) -> Fault:
        if self.schedule:
            fault = self.schedule.popleft()
            if self.cycle:
                self.schedule.append(fault)
            return fault
        if self.mix:
            names = list(self.mix)
            (name,) = self.rng.choices(names, weights=[self.mix[n] for n in names])
            return Fault.preset(name)
        return Fault.ok()

    def _over_limit(self, payload: dict[str, Any]) -> Fault | None:
        """A 429 with the wait until capacity, when this request would pass a limit."""
        if self.limits is None:
            return None
        now = time.monotonic()
        window = self.limits.window_s
        while self._window and self._window[0][0] <= now - window:
            self._window_tokens -= self._window.popleft()[1]
        tokens = _prompt_tokens(payload) + int(payload.get("max_tokens") or 0)
        wait = 0.0
        rpm, tpm = self.limits.rpm, self.limits.tpm
        if rpm is not None and len(self._window) >= rpm:
            wait = self._window[len(self._window) - rpm][0] + window - now
        if tpm is not None and self._window and self._window_tokens + tokens > tpm:
            excess, freed = self._window_tokens + tokens - tpm, 0
            for at, used in self._window:
                freed += used
                if freed >= excess:
                    wait = max(wait, at + window - now)
                    break
        if wait > 0:
            self.limited += 1
            fault = Fault.status(
                429, message="Rate limit reached for requests", retry_after=str(math.ceil(wait))
            )
            fault.headers["retry-after-ms"] = str(int(wait * 1000) + 1)
            return fault
        self._window.append((now, tokens))
        self._window_tokens += tokens
        return None

    def _answer(self, handler: Any, fault: Fault, payload: dict[str, Any]) -> None:
        model = str(payload.get("model", "fault-model"))
        anthropic = handler.path.endswith("/messages")
        if fault.kind in ("ok", "slow"):
            if fault.delay_s:
                self._release.wait(fault.delay_s)
            if self.usage_from_request and fault.usage is None:
                prompt = _prompt_tokens(payload)
                completion = max(1, len(fault.text.split()))
                fault = Fault(
                    fault.kind,
                    text=fault.text,
                    finish_reason=fault.finish_reason,
                    usage={"input_tokens": prompt, "output_tokens": completion}
                    if anthropic
                    else {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                )
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
        elif fault.kind == "reset_mid_body":
            handler.send_response(200)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", "500")
            handler.end_headers()
            handler.wfile.write(b'{"id": "chatcmpl-reset", "choices": [{"mess')
            handler.wfile.flush()
            sock = handler.connection
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


def load_schedule(path: str | Path) -> dict[str, Any]:
    """Read a schedule file into :class:`FaultServer` keyword arguments."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a schedule is a mapping (faults, cycle, mix, seed, limits)")
    unknown = set(raw) - {"faults", "cycle", "mix", "seed", "limits"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    faults: list[Fault] = []
    for entry in raw.get("faults") or []:
        entry = dict(entry)
        times = int(entry.pop("times", 1))
        name = entry.pop("preset")
        faults.extend(Fault.preset(name, **entry) for _ in range(times))
    mix = raw.get("mix")
    for name in mix or {}:
        if name not in PRESETS:
            raise ValueError(f"{path}: unknown fault preset {name!r} in mix")
    limits = raw.get("limits")
    return {
        "schedule": faults,
        "cycle": bool(raw.get("cycle", False)),
        "mix": mix,
        "seed": int(raw.get("seed", 0)),
        "limits": UpstreamLimits(**limits) if limits else None,
    }
