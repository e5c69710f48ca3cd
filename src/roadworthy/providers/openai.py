"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp, gateways.

Servers differ in how they accept a JSON schema, so ``json_mode`` picks the dialect:
``json_schema`` (OpenAI's ``response_format.json_schema``), ``json_object_schema``
(``{"type": "json_object", "schema": ...}`` as llama.cpp's Python server and Anyscale take it)
or ``json_object`` (plain JSON mode; the schema is then only checked after the fact).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from ..errors import ContentFiltered, MalformedResponse
from ._http import HttpProvider
from .base import Capabilities, Completion, CompletionRequest, Usage

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


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
