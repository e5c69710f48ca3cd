"""The lean path for ``POST /v1/chat/completions``: the gateway's hot path, without FastAPI.

Through FastAPI a chat completion spends about as much CPU in routing, dependency
solving, pydantic validation of the body, the middleware stack and the response model as
in everything else together (bench/gateway.py, py-spy). A gateway in front of a model is
judged by the time it adds, so the common request skips all of that: :class:`App` hands
``POST /v1/chat/completions`` to :class:`LeanChat`, a plain ASGI handler that reads the
body (within ``server.max_body_bytes``), parses it with the standard ``json`` module,
checks the API key (through the :class:`.auth.Authenticator`, whose cache of verified
keys means a revoked key keeps working for at most ``server.key_cache_s`` seconds, as on
every route), calls the model stack exactly as the FastAPI route does
(:func:`.chat.call_stack`, so the call is recorded before the answer is sent) and
writes the same JSON body and headers without pydantic.

Only plain requests take it. Anything else -- streaming, the ``roadworthy`` extension
field or the prompt header, content parts, ``response_format`` beyond text/json_object, a
value of an unexpected type, a body that is not JSON or declares a size over the limit, a
missing or bad key, an unknown model -- falls through to the FastAPI route with the body replayed, so every
error and every unusual request is answered by the one implementation that defines the
behaviour (and documents it in ``docs/openapi.json``). The lean path only answers what
the full route would answer with a 200, the model stack's own errors, which both paths
build with :func:`.errors.from_exception`, and a chunked body that streams past the limit
(413, :func:`.errors.body_too_large`): the part it did not read cannot be replayed.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from ..models.context import CallContext
from ..models.router import Router
from ..providers.base import CompletionRequest, ResponseFormat
from ..providers.base import Message as ChatTurn
from ..store import new_trace_id
from .chat import call_stack, completion_body, resolve_route
from .errors import ApiError, body_too_large

if TYPE_CHECKING:
    from ..store.keys import ApiKey
    from .app import Gateway

__all__ = ["CHAT_PATH", "MIN_DEADLINE_S", "OVERHEAD_HEADER", "TRACE_HEADER", "App", "LeanChat"]

CHAT_PATH = "/v1/chat/completions"
OVERHEAD_HEADER = "x-roadworthy-overhead-ms"
TRACE_HEADER = "x-roadworthy-trace-id"
DEADLINE_HEADER = "x-roadworthy-deadline-s"
# No model call can be answered in less; a smaller deadline is a units mistake (ms for s),
# refused with 400 rather than answered with a certain 504.
MIN_DEADLINE_S = 0.1

ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]

# Fields of a chat request the lean path understands; any other field is one OpenAI
# defines and the full route accepts and ignores (extra="allow"), so it is ignored here.
_ROLES: dict[Any, Literal["system", "user", "assistant"]] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
# A deadline header the lean path reads; anything else (exponents, "nan", signs) goes to
# the full route, whose validation (pydantic's float parsing) decides.
_PLAIN_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")
_CONTENT_TYPE = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class _Plan:
    """A request the lean path will answer: everything checked, nothing called yet."""

    model: str
    router: Router
    request: CompletionRequest
    context: CallContext
    key: ApiKey
    seconds: float


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _turns(messages: Any) -> tuple[ChatTurn, ...] | None:
    """Plain text turns, or None for anything the full route must judge."""
    if not isinstance(messages, list) or not messages:
        return None
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = _ROLES.get(message.get("role"))
        content = message.get("content")
        name = message.get("name")
        if role is None or (content is not None and not isinstance(content, str)):
            return None
        if name is not None and not isinstance(name, str):
            return None
        turns.append(ChatTurn(role=role, content=content or ""))
    return tuple(turns)


def _completion_request(body: dict[str, Any]) -> CompletionRequest | None:
    """The provider-neutral request :func:`.chat.build_request` would make, or None.

    None whenever the full route could answer differently from a plain call: a field of
    an unexpected type or range (its error), a feature this path leaves to it.
    """
    get = body.get
    if get("stream", False) is not False:
        return None  # streaming (or a value the full route must judge)
    n = get("n")
    if n is not None and not (_is_int(n) and n == 1):
        return None
    if get("roadworthy") is not None or get("stream_options") is not None:
        return None
    messages = _turns(get("messages"))
    if messages is None:
        return None
    temperature = get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            return None
        temperature = float(temperature)
    limits = []
    for field in ("max_completion_tokens", "max_tokens"):
        value = get(field)
        if value is not None and (not _is_int(value) or value < 1):
            return None
        limits.append(value)
    stop = get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        return None
    seed, user = get("seed"), get("user")
    if (seed is not None and not _is_int(seed)) or (user is not None and not isinstance(user, str)):
        return None
    response_format: ResponseFormat | None = None
    spec = get("response_format")
    if spec is not None:
        if not isinstance(spec, dict) or len(spec) != 1:
            return None
        kind = spec.get("type")
        if kind == "json_object":
            response_format = ResponseFormat()
        elif kind != "text":
            return None
    return CompletionRequest(
        messages=messages,
        model="",
        temperature=temperature,
        max_tokens=limits[0] or limits[1],
        stop=stops,
        response_format=response_format,
        seed=seed,
    )


class _TooLarge(Exception):
    """A chunked body went over ``server.max_body_bytes`` while the lean path read it."""


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A ``receive`` giving back what the lean path read, then the connection's own."""
    pending = list(received)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class LeanChat:
    """The ASGI handler for plain, non-streaming chat completions (see the module doc)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.max_bytes = gateway.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send, full: ASGICall) -> None:
        started = time.perf_counter()
        received: list[Message] = []
        try:
            plan = await self._plan(scope, receive, received)
        except _TooLarge:
            # the rest of the body is not read, so the full route could not count it
            await _send(send, 413, body_too_large(self.max_bytes).body(), [])
            return
        except Exception:
            plan = None  # whatever went wrong, the full route says it the way it always has
        if plan is None:
            await full(scope, _replay(received, receive), send)
            return
        await self._answer(plan, started, send)

    async def _read(self, receive: Receive, received: list[Message]) -> bytes | None:
        """The whole body; None (the client left) for the full route; too big raises."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _plan(self, scope: Scope, receive: Receive, received: list[Message]) -> _Plan | None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of repeated headers, as Starlette
        if b"x-roadworthy-prompt" in headers:
            return None
        ctype = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if ctype != _CONTENT_TYPE[1]:
            return None
        try:
            if int(headers.get(b"content-length", b"0")) > self.max_bytes:
                return None
        except ValueError:
            return None
        seconds = self.gateway.settings.default_deadline_s
        asked = headers.get(DEADLINE_HEADER.encode())
        if asked is not None:
            text = asked.decode("latin-1")
            if not _PLAIN_NUMBER.fullmatch(text) or float(text) < MIN_DEADLINE_S:
                return None
            seconds = self.gateway.deadline_s(float(text))
        raw = await self._read(receive, received)
        if raw is None:
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return None
        request = _completion_request(body)
        if request is None:
            return None
        auth = self.gateway.auth
        authorization = headers.get(b"authorization")
        api_key = headers.get(b"x-api-key")
        token = auth.token(
            None if authorization is None else authorization.decode("latin-1"),
            None if api_key is None else api_key.decode("latin-1"),
        )
        try:
            key = auth.check_token(token, "run")
            router = resolve_route(self.gateway.workspace, body["model"])
        except ApiError:
            return None
        context = CallContext(trace_id=new_trace_id(), step="chat")  # as chat.build_request
        return _Plan(body["model"], router, request, context, key, seconds)

    async def _answer(self, plan: _Plan, started: float, send: Send) -> None:
        gateway = self.gateway
        try:
            result = await call_stack(
                plan.router,
                plan.request,
                plan.context,
                gateway.deadline(plan.seconds),
                gateway.key_policy(plan.key),
            )
        except ApiError as exc:
            await _send(send, exc.status, exc.body(), _retry_after(exc))
            return
        except Exception:
            # the full app's catch-all answer; re-raised for the server to log, as there
            error = ApiError(500, "internal error", "server_error", "internal_error")
            await _send(send, 500, error.body(), [])
            raise
        overhead = max(0.0, (time.perf_counter() - started) * 1000 - result.upstream_ms)
        extra = [
            (OVERHEAD_HEADER.encode(), f"{overhead:.3f}".encode()),
            (TRACE_HEADER.encode(), result.trace_id.encode("latin-1")),
        ]
        await _send(send, 200, completion_body(result, plan.model), extra)


def _retry_after(error: ApiError) -> list[tuple[bytes, bytes]]:
    if error.retry_after is None:
        return []
    return [(b"retry-after", str(max(1, math.ceil(error.retry_after))).encode())]


async def _send(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    """What starlette's JSONResponse sends for ``payload``, byte for byte."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    encoded = body.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(encoded)).encode()),
                _CONTENT_TYPE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


class App(FastAPI):
    """The FastAPI app with :class:`LeanChat` in front of its chat route once it is set.

    ``lean`` stays None in :func:`.app.build_app` (the OpenAPI document is the FastAPI
    routes'); :func:`.app.create_app` sets it. A root path (mounted under a prefix) is left
    to FastAPI's routing.
    """

    lean: LeanChat | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lean = self.lean
        if (
            lean is not None
            and scope["type"] == "http"
            and scope["path"] == CHAT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            await lean(scope, receive, send, super().__call__)
            return
        await super().__call__(scope, receive, send)
