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
    batches: [{status: expired, finished: 2}, {status: completed, polls: 3}]

The server also speaks the provider batch APIs, so batch code is tested offline: OpenAI's
``POST /v1/files`` (multipart, purpose=batch), ``POST /v1/batches``, ``GET
/v1/batches/{id}``, ``POST /v1/batches/{id}/cancel`` and ``GET /v1/files/{id}/content``;
Anthropic's ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``, ``.../cancel``
and ``.../results``. Each request line of a batch takes the next fault of the same schedule
when the batch finishes, so some requests in a batch can fail while others succeed. A batch
moves one step per status poll (validating -> in_progress -> completed) unless the next
:class:`BatchOutcome` queued with :meth:`FaultServer.push_batch` (or ``batches:`` in a
schedule file) says it expires or fails; :meth:`FaultServer.push_control` fails the
upload, create, poll and download calls themselves.

A chat request with ``stream: true`` is answered with server-sent events as OpenAI streams
them (one event per word, a usage event when ``stream_options.include_usage`` asks, then
``[DONE]``); :meth:`Fault.slow_stream` spaces the events out, :meth:`Fault.stream_cut`
resets the connection after some of them, and ``streams_abandoned`` counts streams whose
client hung up before the end.

``POST /v1/embeddings`` takes the next fault of the schedule like a chat call; an ``ok``
answers with :func:`fake_embedding` of each input (deterministic hashed word counts), so
remote-embedding code is tested over real HTTP without a model.
"""

from __future__ import annotations

import abc
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import random
import re
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

__all__ = [
    "PRESETS",
    "BatchOutcome",
    "Fault",
    "FaultServer",
    "UpstreamLimits",
    "fake_embedding",
    "load_schedule",
]


@dataclass
class Fault:
    """What the server does with one request."""

    kind: str  # ok | status | hang | reset | body | truncate | slow | reset_mid_body | stream_cut
    status_code: int = 200
    text: str = "ok"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 30.0
    usage: dict[str, Any] | None = None
    finish_reason: str = "stop"
    delay_s: float = 0.0  # before the first byte of the answer
    # Streaming (a request with ``stream: true``): the pause between content events, the
    # number of content events sent before a ``stream_cut`` resets the connection, and
    # whether a usage event is sent when the client asks for one.
    chunk_delay_s: float = 0.0
    cut_after: int = 1
    stream_usage: bool = True

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
    def slow_stream(cls, text: str, chunk_delay_s: float) -> Fault:
        """A normal answer; streamed, its content events come ``chunk_delay_s`` apart."""
        return cls("ok", text=text, chunk_delay_s=chunk_delay_s)

    @classmethod
    def stream_cut(cls, text: str = "a stream cut short", after: int = 1) -> Fault:
        """Streamed: ``after`` content events of ``text``, then a TCP reset (no [DONE]).

        Asked without ``stream``, the same failure half-way through a JSON body.
        """
        return cls("stream_cut", text=text, cut_after=after)

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
    "stream_cut": lambda after=1, **_: Fault.stream_cut(after=int(after)),
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


def fake_embedding(text: str, dimensions: int = 64) -> list[float]:
    """The fake upstream's embedding of ``text``: hashed word counts, L2-normalised.

    Deterministic across processes (a digest, not ``hash()``), and texts that share words
    get similar vectors, which is all a semantic cache test needs from a real model.
    """
    vec = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vec[int.from_bytes(digest, "big") % dimensions] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _embeddings_body(payload: dict[str, Any]) -> dict[str, Any]:
    raw = payload.get("input", "")
    texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
    dims = int(payload.get("dimensions") or 64)
    tokens = sum(max(1, len(t) // 4) for t in texts)
    return {
        "object": "list",
        "model": str(payload.get("model", "fault-embed")),
        "data": [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
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


@dataclass(frozen=True)
class BatchOutcome:
    """How one provider batch ends on the fake upstream.

    ``polls`` is how many status polls see it in progress first. ``expired`` lets the first
    ``finished`` request lines run and expires the rest, as a provider does when the
    24-hour window passes; ``failed`` rejects the whole batch (validation failure).
    """

    status: str = "completed"  # completed | expired | failed
    polls: int = 1
    finished: int = 0
    message: str = "injected batch failure"

    @classmethod
    def completed(cls, polls: int = 1) -> BatchOutcome:
        return cls("completed", polls=polls)

    @classmethod
    def expired(cls, finished: int = 0, polls: int = 1) -> BatchOutcome:
        return cls("expired", polls=polls, finished=finished)

    @classmethod
    def failed(cls, message: str = "injected batch failure") -> BatchOutcome:
        return cls("failed", polls=0, message=message)


@dataclass
class _Batch:
    """One batch's state on the fake upstream."""

    id: str
    api: str  # openai | anthropic
    lines: list[dict[str, Any]]
    outcome: BatchOutcome
    input_file_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    metadata: dict[str, Any] | None = None
    status: str = "validating"
    polls_left: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    results: list[dict[str, Any]] = field(default_factory=list)


_BATCH_PATH = re.compile(r"/(files|batches)(/|$)")

# Anthropic's error types by HTTP status, for batch lines that end "errored".
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
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
        batch_outcomes: Iterable[BatchOutcome] = (),
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
        self.streams_abandoned = 0  # streams whose client hung up before the end
        self.billed_tokens = 0
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.batch_outcomes: deque[BatchOutcome] = deque(batch_outcomes)
        self.control_faults: deque[Fault] = deque()  # for the files/batches calls themselves
        # batch creates carried out whose answer is then lost (504): the batch runs all
        # the same, as when a client times out after the provider created it
        self.lose_created = 0
        self._ids = itertools.count(1)
        self._headers: dict[str, str] = {}  # of the batch request being answered
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY the body waits for
            # the client's delayed ACK (~40 ms a response), which dominates batch polling.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                answer = server._batch_get(self.path)
                if answer is None:
                    self._send(200, b'{"data": []}')
                else:
                    self._send(*answer)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                answer = server._batch_post(self.path, dict(self.headers), raw)
                if answer is not None:
                    self._send(*answer)
                    return
                payload = json.loads(raw or b"{}")
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
                self,
                status: int,
                body: bytes,
                headers: dict[str, str] | None = None,
                content_type: str = "application/json",
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
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

    def push_control(self, *faults: Fault) -> None:
        """Fail the next calls to the files/batches endpoints themselves (uploads, polls).

        Only ``status`` and ``body`` faults apply there (``ok`` lets one call through); the
        per-request schedule is untouched.
        """
        with self._lock:
            self.control_faults.extend(faults)

    def _control_fault(self, path: str) -> FaultServer._Answer | None:
        if not self.control_faults or not _BATCH_PATH.search(path):
            return None
        fault = self.control_faults.popleft()
        if fault.kind == "ok":
            return None  # let this one through
        if fault.kind not in ("status", "body"):
            raise ValueError(f"control faults are status or body faults, not {fault.kind!r}")
        return fault.status_code, fault.body or b"", dict(fault.headers), "application/json"

    def push_batch(self, *outcomes: BatchOutcome) -> None:
        """Queue how the next batches end (default: each completes after one poll)."""
        with self._lock:
            self.batch_outcomes.extend(outcomes)

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
        chat = handler.path.endswith("/chat/completions")
        streamed = payload.get("stream") is True and fault.kind in ("ok", "slow", "stream_cut")
        if streamed and (chat or anthropic):
            events = (
                _AnthropicEvents(payload, model) if anthropic else _OpenAIEvents(payload, model)
            )
            self._stream(handler, fault, events)
            return
        if fault.kind == "stream_cut":
            fault = Fault.reset_mid_body()
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
            if handler.path.endswith("/embeddings"):
                body = _embeddings_body(payload)
            else:
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

    def _stream(self, handler: Any, fault: Fault, events: _Events) -> None:
        """Answer with server-sent events: one content event per word, then the end events.

        The body has no length, so the connection closes after it (HTTP/1.1 without
        chunked encoding). A client that hangs up mid-stream is counted in
        ``streams_abandoned``, which is how tests see that a gateway stopped the call.
        """
        if fault.delay_s:
            self._release.wait(fault.delay_s)
        pieces = re.findall(r"\s*\S+|\s+$", fault.text) or [""]
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            handler.wfile.write(events.start())
            for n, piece in enumerate(pieces):
                if fault.kind == "stream_cut" and n >= fault.cut_after:
                    handler.wfile.flush()
                    sock: socket.socket = handler.connection
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    sock.close()
                    return
                if n and fault.chunk_delay_s:
                    self._release.wait(fault.chunk_delay_s)
                handler.wfile.write(events.piece(piece))
                handler.wfile.flush()
            handler.wfile.write(events.end(fault, len(pieces)))
            handler.wfile.flush()
        except OSError:
            with self._lock:
                self.streams_abandoned += 1

    # -- batch APIs ---------------------------------------------------------------------

    _Answer = tuple[int, bytes, dict[str, str], str]

    @staticmethod
    def _json(status: int, body: Any) -> FaultServer._Answer:
        return status, json.dumps(body).encode(), {}, "application/json"

    def _not_found(self, what: str) -> FaultServer._Answer:
        return self._json(404, {"error": {"message": f"no such {what}", "type": "not_found"}})

    def _batch_post(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> FaultServer._Answer | None:
        """Answer a POST to a files or batches endpoint, or None for any other path."""
        path = path.split("?", 1)[0].rstrip("/")
        parts = path.split("/")
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        with self._lock:
            injected = self._control_fault(path)
            if injected is not None:
                return injected
            self._headers = headers
            if path.endswith("/messages/batches"):
                return self._lost(self._anthropic_create(json.loads(raw or b"{}")))
            if path.endswith("/cancel") and len(parts) >= 3 and parts[-3] == "batches":
                batch = self.batches.get(parts[-2])
                if batch is None:
                    return self._not_found("batch")
                self._cancel(batch)
                return self._json(200, self._batch_view(batch))
            if path.endswith("/files"):
                return self._upload(content_type, raw)
            if path.endswith("/batches"):
                return self._lost(self._openai_create(json.loads(raw or b"{}")))
        return None

    def _lost(self, answer: FaultServer._Answer) -> FaultServer._Answer:
        """``answer``, or a 504 in its place while creates are to lose their answers."""
        if self.lose_created <= 0 or answer[0] != 200:
            return answer
        self.lose_created -= 1
        return self._json(504, {"error": {"message": "answer lost", "type": "injected"}})

    def _batch_get(self, path: str) -> FaultServer._Answer | None:
        path = path.split("?", 1)[0].rstrip("/")
        parts = path.split("/")
        with self._lock:
            injected = self._control_fault(path)
            if injected is not None:
                return injected
            if len(parts) >= 3 and parts[-1] == "content" and parts[-3] == "files":
                data = self.files.get(parts[-2])
                if data is None:
                    return self._not_found("file")
                return 200, data, {}, "application/octet-stream"
            if len(parts) >= 3 and parts[-1] == "results" and parts[-3] == "batches":
                batch = self.batches.get(parts[-2])
                if batch is None or batch.status != "ended":
                    return self._not_found("results")
                body = "".join(json.dumps(r) + "\n" for r in batch.results).encode()
                return 200, body, {}, "application/binary"
            if parts[-1] == "batches" and parts[-2] != "messages":
                # OpenAI's list, newest first (one page: the fake server keeps few)
                listed = [b for b in self.batches.values() if b.api == "openai"][::-1]
                views = [self._batch_view(b) for b in listed]
                return self._json(200, {"object": "list", "data": views, "has_more": False})
            if len(parts) >= 2 and parts[-2] == "batches":
                batch = self.batches.get(parts[-1])
                if batch is None:
                    return self._not_found("batch")
                self._advance(batch)
                return self._json(200, self._batch_view(batch))
        return None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _upload(self, content_type: str, raw: bytes) -> FaultServer._Answer:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        fields: dict[str, bytes] = {}
        filename = "upload"
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(name, str) and isinstance(payload, bytes):
                    fields[name] = payload
                    filename = part.get_filename() or filename
        if "file" not in fields:
            return self._json(400, {"error": {"message": "missing file", "type": "invalid"}})
        file_id = self._new_id("file-")
        self.files[file_id] = fields["file"]
        purpose = fields.get("purpose", b"").decode()
        if self.keep_requests:
            self.requests.append(
                {
                    "path": "/v1/files",
                    "headers": self._headers,
                    "json": {"purpose": purpose},
                    "file": file_id,
                }
            )
        return self._json(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(fields["file"]),
                "filename": filename,
                "purpose": purpose,
            },
        )

    def _openai_create(self, payload: dict[str, Any]) -> FaultServer._Answer:
        if self.keep_requests:
            self.requests.append({"path": "/v1/batches", "headers": self._headers, "json": payload})
        data = self.files.get(str(payload.get("input_file_id")))
        if data is None:
            return self._not_found("input file")
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        batch = _Batch(
            id=self._new_id("batch_"),
            api="openai",
            lines=lines,
            outcome=self.batch_outcomes.popleft() if self.batch_outcomes else BatchOutcome(),
            input_file_id=str(payload["input_file_id"]),
            endpoint=str(payload.get("endpoint", "/v1/chat/completions")),
            metadata=payload.get("metadata") if isinstance(payload.get("metadata"), dict) else None,
        )
        batch.polls_left = batch.outcome.polls
        self.batches[batch.id] = batch
        return self._json(200, self._batch_view(batch))

    def _anthropic_create(self, payload: dict[str, Any]) -> FaultServer._Answer:
        if self.keep_requests:
            self.requests.append(
                {"path": "/v1/messages/batches", "headers": self._headers, "json": payload}
            )
        batch = _Batch(
            id=self._new_id("msgbatch_"),
            api="anthropic",
            lines=list(payload.get("requests") or []),
            outcome=self.batch_outcomes.popleft() if self.batch_outcomes else BatchOutcome(),
            status="in_progress",
        )
        batch.polls_left = batch.outcome.polls
        self.batches[batch.id] = batch
        return self._json(200, self._batch_view(batch))

    def _advance(self, batch: _Batch) -> None:
        """One status poll's worth of progress."""
        outcome = batch.outcome
        if batch.status == "validating":
            if outcome.status == "failed":
                batch.status = "failed"
            else:
                batch.status = "in_progress"
            return
        if batch.status != "in_progress":
            return
        if batch.polls_left > 0:
            batch.polls_left -= 1
            return
        limit = len(batch.lines) if outcome.status == "completed" else outcome.finished
        self._finish(batch, limit, "expired" if outcome.status != "completed" else "completed")

    def _cancel(self, batch: _Batch) -> None:
        if batch.status in ("validating", "in_progress"):
            self._finish(batch, 0, "cancelled")

    def _finish(self, batch: _Batch, limit: int, status: str) -> None:
        """Run the first ``limit`` lines through the schedule; the rest end as ``status``."""
        out: list[str] = []
        err: list[str] = []
        for n, line in enumerate(batch.lines):
            custom_id = str(line.get("custom_id"))
            if batch.api == "anthropic":
                params = line.get("params") or {}
                if n < limit:
                    batch.results.append(
                        {"custom_id": custom_id, "result": self._run_anthropic_line(params)}
                    )
                else:
                    kind = "expired" if status == "expired" else "canceled"
                    batch.results.append({"custom_id": custom_id, "result": {"type": kind}})
                batch.counts[batch.results[-1]["result"]["type"]] += 1
                continue
            record: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": custom_id}
            if n < limit:
                code, body = self._run_openai_line(line.get("body") or {})
                record["response"] = {"status_code": code, "request_id": f"req_{n}", "body": body}
                record["error"] = None
                (out if code == 200 else err).append(json.dumps(record))
                batch.counts["completed" if code == 200 else "failed"] += 1
            else:
                code_name = "batch_expired" if status == "expired" else "batch_cancelled"
                record["response"] = None
                record["error"] = {"code": code_name, "message": f"request {status}"}
                err.append(json.dumps(record))
                batch.counts["failed"] += 1
        if batch.api == "anthropic":
            batch.status = "ended"
            return
        batch.status = status
        if out:
            batch.output_file_id = self._new_id("file-")
            self.files[batch.output_file_id] = ("\n".join(out) + "\n").encode()
        if err:
            batch.error_file_id = self._new_id("file-")
            self.files[batch.error_file_id] = ("\n".join(err) + "\n").encode()

    def _line_fault(self, payload: dict[str, Any], anthropic: bool) -> Fault:
        self.served["batch_line"] += 1
        fault = self._next_fault()
        if fault.kind in ("ok", "slow") and fault.usage is None and self.usage_from_request:
            prompt = _prompt_tokens(payload)
            completion = max(1, len(fault.text.split()))
            usage: dict[str, Any] = (
                {"input_tokens": prompt, "output_tokens": completion}
                if anthropic
                else {"prompt_tokens": prompt, "completion_tokens": completion}
            )
            fault = Fault(fault.kind, text=fault.text, usage=usage)
        return fault

    @staticmethod
    def _line_error(fault: Fault) -> tuple[int, dict[str, Any]]:
        """A failed line's status and error body; transport faults become a 500."""
        if fault.kind in ("status", "body") and fault.status_code >= 400:
            try:
                body = json.loads(fault.body or b"{}")
            except ValueError:
                body = {"error": {"message": (fault.body or b"").decode("utf-8", "replace")}}
            return fault.status_code, body if isinstance(body, dict) else {"error": body}
        return 500, {"error": {"message": f"injected {fault.kind}", "type": "server_error"}}

    def _run_openai_line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fault = self._line_fault(body, anthropic=False)
        if fault.kind in ("ok", "slow"):
            return 200, _openai_body(fault, str(body.get("model", "fault-model")))
        return self._line_error(fault)

    def _run_anthropic_line(self, params: dict[str, Any]) -> dict[str, Any]:
        fault = self._line_fault(params, anthropic=True)
        if fault.kind in ("ok", "slow"):
            message = _anthropic_body(fault, str(params.get("model", "fault-model")))
            return {"type": "succeeded", "message": message}
        code, body = self._line_error(fault)
        inner = body.get("error") if isinstance(body.get("error"), dict) else {}
        error = {
            "type": _ANTHROPIC_ERROR_TYPES.get(code, "api_error"),
            "message": str((inner or {}).get("message", "injected failure")),
        }
        return {"type": "errored", "error": {"type": "error", "error": error}}

    def _batch_view(self, batch: _Batch) -> dict[str, Any]:
        if batch.api == "anthropic":
            ended = batch.status == "ended"
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": batch.status,
                "request_counts": {
                    "processing": 0 if ended else len(batch.lines),
                    "succeeded": batch.counts["succeeded"],
                    "errored": batch.counts["errored"],
                    "canceled": batch.counts["canceled"],
                    "expired": batch.counts["expired"],
                },
                "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results"
                if ended
                else None,
            }
        errors = None
        if batch.status == "failed":
            errors = {"data": [{"code": "invalid_batch", "message": batch.outcome.message}]}
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "metadata": batch.metadata,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "errors": errors,
            "request_counts": {
                "total": len(batch.lines),
                "completed": batch.counts["completed"],
                "failed": batch.counts["failed"],
            },
        }

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
        raise ValueError(
            f"{path}: a schedule is a mapping (faults, cycle, mix, seed, limits, batches)"
        )
    unknown = set(raw) - {"faults", "cycle", "mix", "seed", "limits", "batches"}
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
    batches = [BatchOutcome(**dict(entry)) for entry in raw.get("batches") or []]
    for outcome in batches:
        if outcome.status not in ("completed", "expired", "failed"):
            raise ValueError(f"{path}: batch status is completed, expired or failed")
    return {
        "schedule": faults,
        "cycle": bool(raw.get("cycle", False)),
        "mix": mix,
        "seed": int(raw.get("seed", 0)),
        "limits": UpstreamLimits(**limits) if limits else None,
        "batch_outcomes": batches,
    }


class _Events(abc.ABC):
    """How one API frames a streamed answer (:meth:`FaultServer._stream` sends them)."""

    def __init__(self, payload: dict[str, Any], model: str) -> None:
        self.payload = payload
        self.model = model

    @abc.abstractmethod
    def start(self) -> bytes:
        """What comes before the first piece of content."""

    @abc.abstractmethod
    def piece(self, text: str) -> bytes:
        """One piece of content."""

    @abc.abstractmethod
    def end(self, fault: Fault, pieces: int) -> bytes:
        """The finish, usage and end marker after ``pieces`` pieces."""


class _OpenAIEvents(_Events):
    """Chat-completion chunks, a usage chunk when ``stream_options.include_usage``, [DONE]."""

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        base = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "model": self.model}
        return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode()

    def _delta(self, content: dict[str, Any], finish: str | None = None) -> bytes:
        return self._event([{"index": 0, "delta": content, "finish_reason": finish}])

    def start(self) -> bytes:
        return self._delta({"role": "assistant", "content": ""})

    def piece(self, text: str) -> bytes:
        return self._delta({"content": text})

    def end(self, fault: Fault, pieces: int) -> bytes:
        out = self._delta({}, fault.finish_reason)
        options = self.payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") and fault.stream_usage:
            prompt = _prompt_tokens(self.payload)
            usage = fault.usage or {
                "prompt_tokens": prompt,
                "completion_tokens": pieces,
                "total_tokens": prompt + pieces,
            }
            out += self._event([], usage=usage)
        return out + b"data: [DONE]\n\n"


class _AnthropicEvents(_Events):
    """Messages API events: message_start, one content block of text deltas (or of
    ``input_json_delta`` pieces when a tool is forced), message_delta, message_stop."""

    @staticmethod
    def _event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    @property
    def _tool(self) -> str | None:
        choice = self.payload.get("tool_choice")
        return choice.get("name") if isinstance(choice, dict) else None

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": "msg_fault",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": _prompt_tokens(self.payload), "output_tokens": 1},
        }
        block: dict[str, Any] = {"type": "text", "text": ""}
        if self._tool:
            block = {"type": "tool_use", "id": "toolu_fault", "name": self._tool, "input": {}}
        return (
            self._event("message_start", message=message)
            + self._event("content_block_start", index=0, content_block=block)
            + self._event("ping")
        )

    def piece(self, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        if self._tool:
            delta = {"type": "input_json_delta", "partial_json": text}
        return self._event("content_block_delta", index=0, delta=delta)

    def end(self, fault: Fault, pieces: int) -> bytes:
        stop = "tool_use" if self._tool else "end_turn"
        stop = {"content_filter": "refusal", "length": "max_tokens"}.get(fault.finish_reason, stop)
        output = (fault.usage or {}).get("output_tokens", pieces)
        return (
            self._event("content_block_stop", index=0)
            + self._event(
                "message_delta",
                delta={"stop_reason": stop, "stop_sequence": None},
                usage={"output_tokens": output},
            )
            + self._event("message_stop")
        )
