"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp, gateways.

Servers differ in how they accept a JSON schema, so ``json_mode`` picks the dialect:
``json_schema`` (OpenAI's ``response_format.json_schema``), ``json_object_schema``
(``{"type": "json_object", "schema": ...}`` as llama.cpp's Python server and Anyscale take it)
or ``json_object`` (plain JSON mode; the schema is then only checked after the fact).

When the caller bound a stream sink (:mod:`.streaming`), the call is made with
``stream: true``: each content delta goes to the sink as it arrives, and the completion
returned at the end carries the usage from the stream's final usage chunk (asked for with
``stream_options.include_usage``) or, from a server that sends none, counted and marked
estimated.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from ..errors import ContentFiltered, MalformedResponse
from ._http import HttpProvider
from .base import Capabilities, Completion, CompletionRequest, Usage
from .streaming import StreamSink, estimated_usage

__all__ = ["JsonMode", "OpenAIProvider"]

JsonMode = Literal["json_schema", "json_object_schema", "json_object"]


class OpenAIProvider(HttpProvider):
    """Chat completions over httpx, with failures mapped to roadworthy's taxonomy."""

    endpoint = "/chat/completions"

    def __init__(
        self,
        *,
        name: str = "openai",
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        total_timeout_s: float = 120.0,
        json_mode: JsonMode = "json_schema",
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
        self._json_mode = json_mode

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            streaming=True,
            json_schema=self._json_mode != "json_object",
            batch=True,
            context_window=self._context_window,
        )

    def _payload(self, request: CompletionRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.seed is not None:
            payload["seed"] = request.seed
        fmt = request.response_format
        if fmt is not None:
            if fmt.schema is None or self._json_mode == "json_object":
                payload["response_format"] = {"type": "json_object"}
            elif self._json_mode == "json_object_schema":
                payload["response_format"] = {"type": "json_object", "schema": fmt.schema}
            else:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": True},
                }
        return payload

    async def _stream(self, request: CompletionRequest, sink: StreamSink) -> Completion:
        payload = self._payload(request)
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        kw: dict[str, Any] = {"provider": self.name, "model": request.model}
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] | None = None
        request_id: str | None = None
        model: str | None = None
        async with self._stream_deadline(request):
            async for event in self._events(request, payload):
                request_id = request_id or _str_or_none(event.get("id"))
                model = model or _str_or_none(event.get("model"))
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                choices = event.get("choices") or []
                if not isinstance(choices, list):
                    raise MalformedResponse(f"{self.name} stream event has no choices", **kw)
                for choice in choices[:1]:
                    if not isinstance(choice, dict):
                        raise MalformedResponse(f"{self.name} stream choice is not an object", **kw)
                    delta = choice.get("delta") or choice.get("message") or {}
                    text = delta.get("content") if isinstance(delta, dict) else None
                    if text is not None and not isinstance(text, str):
                        raise MalformedResponse(f"{self.name} delta content is not a string", **kw)
                    if text:
                        parts.append(text)
                        sink.send(text)
                    finish = choice.get("finish_reason") or finish
        if finish == "content_filter":
            raise ContentFiltered(f"{self.name} filtered the response", **kw)
        return Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=_usage(usage) if usage is not None else estimated_usage(request, len(parts)),
            model=model or request.model,
            provider=self.name,
            request_id=request_id,
        )

    def _parse(self, data: dict[str, Any], request: CompletionRequest) -> Completion:
        kw: dict[str, Any] = {"provider": self.name, "model": request.model}
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponse(
                f"{self.name} response has no choices[0].message: {json.dumps(data)[:200]}",
                **kw,
            ) from None
        if not isinstance(text, str):
            raise MalformedResponse(f"{self.name} message content is not a string", **kw)
        if finish == "content_filter":
            raise ContentFiltered(f"{self.name} filtered the response", **kw)
        return Completion(
            text=text,
            finish_reason=finish,
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or request.model),
            provider=self.name,
            request_id=data.get("id"),
            raw=data,
        )


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_int_or_none(raw.get("prompt_tokens")),
        output_tokens=_int_or_none(raw.get("completion_tokens")),
        cached_read_tokens=_int_or_none(cached) or 0,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
