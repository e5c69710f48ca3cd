"""The OpenAI-compatible chat endpoint: request and response shapes, and the call.

An application that uses an OpenAI SDK changes its base URL and gets routing, fallbacks,
budgets and the ledger. ``model`` names a route of roadworthy.yaml, or one of its models
(a one-model stack, still recorded and budgeted). The ``roadworthy`` extension field (or
the ``X-Roadworthy-Prompt`` header) names a registry prompt; its rendered messages come
first, then the request's own.

Streaming is real: the model call runs as a task with a stream sink bound (see
:mod:`roadworthy.providers.streaming`), and each piece the upstream sends is forwarded as a
``chat.completion.chunk`` as it arrives. The response only starts once the first piece is
there, so every retry and fallback before it is invisible and a failure there is an
ordinary HTTP error. After the first byte nothing hops or retries; a failure ends the
stream with an ``error`` event and no ``[DONE]``, so a client never mistakes a cut
stream for a clean finish. A model that cannot stream (or a cache hit) is answered from
its finished completion. A client that goes away mid-stream cancels the model call, which
is recorded as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import ConfigError, RoadworthyError
from ..models import context as stack_context
from ..models.context import CallContext, KeyPolicy
from ..models.router import Router
from ..pipeline.workspace import Workspace
from ..prompts import PromptRenderError, render_messages
from ..providers.base import Completion, CompletionRequest, Message, ResponseFormat
from ..providers.streaming import StreamSink, streaming
from ..store import new_trace_id
from .errors import ApiError, from_exception

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "ChatStream",
    "EventStreamResponse",
    "RoadworthyExtension",
    "call_stack",
    "completion_body",
    "open_stream",
    "run_chat",
    "sse_stream",
    "stream_chunks",
]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = "output"
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class RoadworthyExtension(BaseModel):
    """roadworthy's own fields in a chat request."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="registry prompt to render: id, id@label, id@N")
    variables: dict[str, Any] = Field({}, description="values for the prompt's variables")


class ChatRequest(BaseModel):
    """An OpenAI chat completion request; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = []
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormatSpec | None = None
    user: str | None = None
    roadworthy: RoadworthyExtension | None = None


@dataclass(frozen=True)
class ChatResult:
    completion: Completion
    trace_id: str
    created: int
    upstream_ms: float


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise ApiError(
                400,
                f"messages[{index}]: only text content parts are supported, got {part.type!r}",
                param=f"messages[{index}].content",
                code="unsupported_content",
            )
        parts.append(part.text)
    return "".join(parts)


def _messages(request: ChatRequest) -> list[Message]:
    out: list[Message] = []
    for index, message in enumerate(request.messages):
        if message.role == "tool":
            raise ApiError(
                400,
                "tool messages are not supported",
                param=f"messages[{index}].role",
                code="unsupported_role",
            )
        role: Literal["system", "user", "assistant"] = (
            "system" if message.role == "developer" else message.role
        )
        out.append(Message(role=role, content=_text(message, index)))
    return out


def _response_format(spec: ResponseFormatSpec | None) -> ResponseFormat | None:
    if spec is None or spec.type == "text":
        return None
    if spec.type == "json_object":
        return ResponseFormat()
    if spec.json_schema is None or spec.json_schema.schema_ is None:
        raise ApiError(
            400,
            "response_format json_schema needs json_schema.schema",
            param="response_format",
            code="invalid_response_format",
        )
    return ResponseFormat(schema=spec.json_schema.schema_, name=spec.json_schema.name)


def resolve_route(workspace: Workspace, model: str) -> Router:
    """The stack for ``model``: a route by that name, else a configured model."""
    config = workspace.project.config
    if model in config.routes:
        return workspace.route(model)
    if model in config.models:
        return workspace.route(None, model)
    known = sorted(set(config.routes) | set(config.models))
    raise ApiError(
        404,
        f"the model {model!r} does not exist: name a route or a model of roadworthy.yaml "
        f"(known: {', '.join(known) or 'none'})",
        code="model_not_found",
        param="model",
    )


def build_request(
    workspace: Workspace, request: ChatRequest, prompt_header: str | None
) -> tuple[CompletionRequest, CallContext]:
    """The provider-neutral request and its ledger context (prompt id, version, label)."""
    trace_id = new_trace_id()
    ext = request.roadworthy or RoadworthyExtension()
    prompt_ref = ext.prompt or prompt_header
    messages = _messages(request)
    temperature, max_tokens = request.temperature, request.max_completion_tokens
    max_tokens = max_tokens or request.max_tokens
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    response_format = _response_format(request.response_format)
    context = CallContext(trace_id=trace_id, step="chat")
    if prompt_ref:
        try:
            resolved = workspace.prompts.resolve(prompt_ref)
            rendered = render_messages(resolved.doc, ext.variables)
        except PromptRenderError as exc:
            raise ApiError(
                400, str(exc), param="roadworthy.variables", code="prompt_render"
            ) from None
        except ConfigError as exc:
            raise ApiError(
                404, str(exc), param="roadworthy.prompt", code="prompt_not_found"
            ) from None
        settings = resolved.doc.settings
        messages = list(rendered) + messages
        if temperature is None:
            temperature = settings.temperature
        max_tokens = max_tokens or settings.max_tokens
        stop = stop or tuple(settings.stop)
        if response_format is None and (
            resolved.doc.schema_ is not None or settings.response_format == "json"
        ):
            response_format = ResponseFormat(schema=resolved.doc.schema_)
        context = CallContext(
            trace_id=trace_id,
            step="chat",
            prompt_id=resolved.doc.id,
            prompt_version=resolved.version,
            prompt_label=resolved.label,
            prompt_tier=settings.tier,
        )
    if not messages:
        raise ApiError(400, "messages must not be empty", param="messages", code="empty_messages")
    completion_request = CompletionRequest(
        messages=tuple(messages),
        model="",
        temperature=temperature,
        max_tokens=max_tokens,
        stop=stop,
        response_format=response_format,
        seed=request.seed,
    )
    return completion_request, context


async def run_chat(
    workspace: Workspace,
    request: ChatRequest,
    *,
    prompt_header: str | None,
    deadline: float | None,
    api_key: KeyPolicy | None = None,
) -> ChatResult:
    """Call the model stack once (retries and fallbacks inside); raise :class:`ApiError`."""
    router = resolve_route(workspace, request.model)
    completion_request, context = build_request(workspace, request, prompt_header)
    return await call_stack(router, completion_request, context, deadline, api_key)


async def call_stack(
    router: Router,
    completion_request: CompletionRequest,
    context: CallContext,
    deadline: float | None,
    api_key: KeyPolicy | None,
) -> ChatResult:
    """The model call itself, shared by this route and the lean path (:mod:`.fast_chat`)."""
    started = time.perf_counter()
    try:
        with (
            stack_context.bind(stack_context.call_context, context),
            stack_context.bind(stack_context.deadline, deadline),
            stack_context.bind(stack_context.api_key, api_key),
        ):
            completion = await router.complete(completion_request)
    except RoadworthyError as exc:
        raise from_exception(exc) from None
    upstream_ms = (time.perf_counter() - started) * 1000
    return ChatResult(completion, context.trace_id, int(time.time()), upstream_ms)


# Model calls of streams whose client left: cancelled, kept referenced until they finish
# their cleanup (the ledger row), which nobody awaits.
_ABANDONED: set[asyncio.Task[Completion]] = set()


@dataclass
class ChatStream:
    """A streamed chat completion whose first piece (or whole answer) is in."""

    task: asyncio.Task[Completion]
    sink: StreamSink
    first: str | None  # None: the call finished without streaming anything
    trace_id: str
    created: int
    upstream_ms: float  # until the first piece, or the whole call

    def cancel(self) -> None:
        """Stop the model call (the client is gone); idempotent, never waits."""
        if not self.task.done():
            self.task.cancel()
            _ABANDONED.add(self.task)
            self.task.add_done_callback(_ABANDONED.discard)


async def open_stream(
    workspace: Workspace,
    request: ChatRequest,
    *,
    prompt_header: str | None,
    deadline: float | None,
    api_key: KeyPolicy | None = None,
) -> ChatStream:
    """Start the call with a stream sink and wait for its first piece or its end.

    Raises :class:`ApiError` when the call fails before anything was streamed, so the
    client gets an HTTP error status rather than a stream that fails at once.
    """
    router = resolve_route(workspace, request.model)
    completion_request, context = build_request(workspace, request, prompt_header)
    sink = StreamSink()

    async def call() -> Completion:
        try:
            with (
                stack_context.bind(stack_context.call_context, context),
                stack_context.bind(stack_context.deadline, deadline),
                stack_context.bind(stack_context.api_key, api_key),
                streaming(sink),
            ):
                return await router.complete(completion_request)
        finally:
            sink.queue.put_nowait(None)  # the reader's end marker, whatever happened

    started = time.perf_counter()
    task = asyncio.create_task(call())
    stream = ChatStream(task, sink, None, context.trace_id, int(time.time()), 0.0)
    try:
        stream.first = await sink.queue.get()
        if stream.first is None:
            await task
    except RoadworthyError as exc:
        raise from_exception(exc) from None
    except BaseException:
        stream.cancel()
        raise
    stream.upstream_ms = (time.perf_counter() - started) * 1000
    return stream


async def stream_chunks(
    stream: ChatStream, model: str, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed call, forwarded as they come.

    A failure of the call after the first piece is raised from here, after the pieces
    already forwarded, for :func:`sse_stream` to end the stream with an error event.
    """
    base = {
        "id": f"chatcmpl-{stream.trace_id}",
        "object": "chat.completion.chunk",
        "created": stream.created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    try:
        yield chunk({"role": "assistant", "content": ""})
        if stream.first is not None:
            yield chunk({"content": stream.first})
            while (piece := await stream.sink.queue.get()) is not None:
                yield chunk({"content": piece})
        completion = await stream.task
        if stream.first is None:  # not streamed: a cache hit, a model that cannot stream
            for piece in _pieces(completion.text):
                yield chunk({"content": piece})
        yield chunk({}, _finish(completion))
        if include_usage:
            yield {**base, "choices": [], "usage": _usage(completion)}
    finally:
        stream.cancel()  # a no-op unless the client left before the end


def _usage(completion: Completion) -> dict[str, Any] | None:
    usage = completion.usage
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    prompt, output = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": usage.cached_read_tokens},
    }


def _finish(completion: Completion) -> str:
    reason = completion.finish_reason or "stop"
    return {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop"}.get(reason, reason)


def completion_body(result: ChatResult, model: str) -> dict[str, Any]:
    completion = result.completion
    return {
        "id": f"chatcmpl-{result.trace_id}",
        "object": "chat.completion",
        "created": result.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": _finish(completion),
                "logprobs": None,
            }
        ],
        "usage": _usage(completion),
        "system_fingerprint": None,
    }


def _pieces(text: str, size: int = 64) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _event(data: str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


async def sse_stream(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Server-sent events ending in ``[DONE]``, or in an ``error`` event if ``events`` fails.

    The error event is also a ``data:`` line with an ``error`` object, which OpenAI's SDKs
    raise as an APIError, so the failure reaches the caller's code instead of passing for
    a short answer.
    """
    try:
        async for event in events:
            yield _event(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
    except Exception as exc:
        if isinstance(exc, RoadworthyError):
            body = from_exception(exc).body()
        else:
            body = ApiError(500, "stream failed", "server_error", "stream_failed").body()
        yield _event(json.dumps(body), event="error")
        return
    yield _event("[DONE]")


class EventStreamResponse(StreamingResponse):
    """Server-sent events that stop the model call as soon as the client goes away.

    Starlette's own streaming response notices a disconnect only on some ASGI versions
    (on others, only when a later write fails, which a stalled upstream may never cause).
    Here the body is written while ``receive`` is watched for ``http.disconnect``; the
    first of the two to end decides, and a client that left cancels the stream, whose
    generator then cancels the model call.
    """

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], stream: ChatStream, headers: dict[str, str]
    ) -> None:
        super().__init__(content, headers={**headers, "cache-control": "no-cache"})
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pump = asyncio.ensure_future(self.stream_response(send))
        watch = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            results = await asyncio.gather(pump, watch, return_exceptions=True)
            self.stream.cancel()
        error = results[0]
        if isinstance(error, Exception) and not isinstance(error, OSError):
            raise error  # a bug, not a client that left (a write to it fails with OSError)
