"""Anthropic's Messages API.

Structured output uses a single forced tool whose ``input_schema`` is the requested schema:
the API then returns the arguments as a JSON object, which is the most widely supported
way to get schema-shaped output from Claude models. Anthropic reports cached tokens apart
from ``input_tokens``; they are added back so :class:`~roadworthy.providers.base.Usage`
means the same thing for every provider.

Streamed (a stream sink bound, as the server's streamed chat does), the call is made with
``stream: true`` and each ``text_delta`` -- or ``input_json_delta`` of the forced tool,
whose pieces join up into the JSON answer -- goes to the sink as it arrives. The input
tokens come in ``message_start``, the output tokens and stop reason in ``message_delta``;
the stream ends at ``message_stop``, and one that ends before it was cut.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..errors import ContentFiltered, MalformedResponse
from ._http import HttpProvider
from .base import Capabilities, Completion, CompletionRequest, Usage
from .streaming import StreamSink

__all__ = ["AnthropicProvider"]

_DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens on every request


class AnthropicProvider(HttpProvider):
    endpoint = "/v1/messages"

    def __init__(
        self,
        *,
        name: str = "anthropic",
        base_url: str = "https://api.anthropic.com",
        api_key: str | None = None,
        api_key_env: str | None = "ANTHROPIC_API_KEY",
        api_version: str = "2023-06-01",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        total_timeout_s: float = 120.0,
        context_window: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name=name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=api_key_env,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            total_timeout_s=total_timeout_s,
            context_window=context_window,
            transport=transport,
        )
        self._api_version = api_version

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self._api_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            streaming=True, json_schema=True, batch=True, context_window=self._context_window
        )

    def _payload(self, request: CompletionRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or _DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.stop:
            payload["stop_sequences"] = list(request.stop)
        fmt = request.response_format
        if fmt is not None:
            schema = fmt.schema or {"type": "object"}
            payload["tools"] = [
                {
                    "name": fmt.name,
                    "description": "Record the answer in this exact structure.",
                    "input_schema": schema,
                }
            ]
            payload["tool_choice"] = {"type": "tool", "name": fmt.name}
        return payload

    async def _stream(self, request: CompletionRequest, sink: StreamSink) -> Completion:
        payload = self._payload(request)
        payload["stream"] = True
        kw: dict[str, Any] = {"provider": self.name, "model": request.model}
        parts: list[str] = []
        tool = False
        usage: dict[str, Any] = {}
        stop: str | None = None
        message: dict[str, Any] = {}
        async with self._stream_deadline(request):
            async for event in self._events(request, payload, last=_is_stop):
                kind = event.get("type")
                if kind == "message":  # an upstream that ignored ``stream``: the whole answer
                    whole = self._parse(event, request)
                    if whole.text:
                        sink.send(whole.text)
                    return whole
                if kind == "message_start" and isinstance(event.get("message"), dict):
                    message = event["message"]
                    usage.update(message.get("usage") or {})
                elif kind == "content_block_start":
                    block = event.get("content_block")
                    tool = tool or (isinstance(block, dict) and block.get("type") == "tool_use")
                elif kind == "content_block_delta":
                    text = _delta_text(event.get("delta"), self.name, kw)
                    if text:
                        parts.append(text)
                        sink.send(text)
                elif kind == "message_delta":
                    delta = event.get("delta")
                    if isinstance(delta, dict):
                        stop = delta.get("stop_reason") or stop
                    usage.update(event.get("usage") or {})
        if stop == "refusal":
            raise ContentFiltered(f"{self.name} refused to answer", **kw)
        text = "".join(parts)
        parsed: Any = None
        if tool:
            try:
                parsed = json.loads(text or "{}")
            except ValueError:
                raise MalformedResponse(
                    f"{self.name} streamed tool input is not JSON: {text[:100]!r}", **kw
                ) from None
            text = json.dumps(parsed)
        return Completion(
            text=text,
            finish_reason=stop,
            usage=_usage(usage),
            model=str(message.get("model") or request.model),
            provider=self.name,
            request_id=message.get("id"),
            parsed=parsed,
        )

    def _parse(self, data: dict[str, Any], request: CompletionRequest) -> Completion:
        kw: dict[str, Any] = {"provider": self.name, "model": request.model}
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise MalformedResponse(f"{self.name} response has no content list", **kw)
        stop = data.get("stop_reason")
        if stop == "refusal":
            raise ContentFiltered(f"{self.name} refused to answer", **kw)
        texts: list[str] = []
        parsed: Any = None
        for block in blocks:
            if not isinstance(block, dict):
                raise MalformedResponse(f"{self.name} content block is not an object", **kw)
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                parsed = block.get("input")
        text = json.dumps(parsed) if parsed is not None else "".join(texts)
        return Completion(
            text=text,
            finish_reason=stop,
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or request.model),
            provider=self.name,
            request_id=data.get("id"),
            parsed=parsed,
            raw=data,
        )


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    uncached = raw.get("input_tokens")
    read = raw.get("cache_read_input_tokens") or 0
    write = raw.get("cache_creation_input_tokens") or 0
    total = uncached + read + write if isinstance(uncached, int) else None
    out = raw.get("output_tokens")
    return Usage(
        input_tokens=total,
        output_tokens=out if isinstance(out, int) else None,
        cached_read_tokens=int(read),
        cache_write_tokens=int(write),
    )


def _is_stop(event: dict[str, Any]) -> bool:
    return event.get("type") == "message_stop"


def _delta_text(delta: Any, provider: str, kw: dict[str, Any]) -> str:
    """The text a ``content_block_delta`` adds: answer text, or a piece of the tool's JSON."""
    if not isinstance(delta, dict):
        raise MalformedResponse(f"{provider} stream delta is not an object", **kw)
    kind = delta.get("type")
    text = delta.get("text") if kind == "text_delta" else None
    if kind == "input_json_delta":
        text = delta.get("partial_json")
    if text is not None and not isinstance(text, str):
        raise MalformedResponse(f"{provider} stream delta text is not a string", **kw)
    return text or ""
