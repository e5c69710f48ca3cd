"""A deterministic provider for fast unit tests and for users' own tests.

A script is a list of :class:`Reply` entries. Each entry may match on text in the request
(``when``); the first matching entry answers. Entries marked ``times`` answer that many
times and are then used up, which is how a test says "fail twice with 429, then answer".
Errors are raised as real taxonomy exceptions, so code under test meets the same failures
it would meet in production. Every request is kept in ``requests`` for assertions.

It streams like a real provider when the caller binds a stream sink: the text goes out in
word-sized pieces, and a reply with both ``error`` and ``cut_after`` sends that many pieces
before failing, which is how a test cuts a stream after its first byte.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from .base import Capabilities, Completion, CompletionRequest, Usage
from .streaming import current_sink

__all__ = ["Reply", "ScriptedProvider"]


@dataclass
class Reply:
    """One scripted answer or failure.

    ``error`` names a class of :mod:`roadworthy.errors` (``"RateLimited"``) or is an
    exception instance. ``text`` may be a string or any JSON value (serialised). Token
    counts default to a whitespace word count, so cost tests get stable, nonzero numbers.
    """

    text: Any = ""
    when: str | None = None
    error: str | BaseException | None = None
    error_message: str = "scripted failure"
    retry_after: float | None = None
    latency_s: float = 0.0
    times: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_read_tokens: int = 0
    finish_reason: str = "stop"
    cut_after: int | None = None  # with ``error``: stream this many pieces, then fail
    piece_delay_s: float = 0.0  # between streamed pieces
    _used: int = field(default=0, repr=False)

    def matches(self, request: CompletionRequest) -> bool:
        if self.times is not None and self._used >= self.times:
            return False
        if self.when is None:
            return True
        return any(self.when.lower() in m.content.lower() for m in request.messages)


class ScriptedProvider:
    def __init__(
        self,
        replies: list[Reply] | None = None,
        *,
        name: str = "scripted",
        context_window: int | None = 8192,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.replies = list(replies or [])
        self.requests: list[CompletionRequest] = []
        self._context_window = context_window
        self._echo = echo

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(streaming=True, json_schema=True, context_window=self._context_window)

    def _pick(self, request: CompletionRequest) -> Reply:
        for reply in self.replies:
            if reply.matches(request):
                reply._used += 1
                return reply
        if self._echo:
            return Reply(text=request.messages[-1].content if request.messages else "")
        raise errors.BadRequest(
            "scripted provider has no reply matching this request", provider=self.name
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        reply = self._pick(request)
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        text = reply.text if isinstance(reply.text, str) else json.dumps(reply.text)
        sink = current_sink()
        if reply.error is not None:
            if sink is not None and reply.cut_after:
                await self._stream(_pieces(text)[: reply.cut_after], reply.piece_delay_s)
            error = _build_error(reply, self.name, request.model)
            raise sink.committed_failure(error) if sink is not None else error
        if sink is not None:
            await self._stream(_pieces(text), reply.piece_delay_s)
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        return Completion(
            text=text,
            finish_reason=reply.finish_reason,
            usage=Usage(
                input_tokens=reply.input_tokens if reply.input_tokens is not None else prompt_words,
                output_tokens=(
                    reply.output_tokens if reply.output_tokens is not None else len(text.split())
                ),
                cached_read_tokens=reply.cached_read_tokens,
            ),
            model=request.model,
            provider=self.name,
            request_id=f"scripted-{len(self.requests)}",
        )

    @staticmethod
    async def _stream(pieces: list[str], delay_s: float) -> None:
        sink = current_sink()
        assert sink is not None
        for n, piece in enumerate(pieces):
            if n and delay_s:
                await asyncio.sleep(delay_s)
            sink.send(piece)
            await asyncio.sleep(0)  # let the reader forward it, as a network stream would

    async def aclose(self) -> None:
        return None


def _pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to ``text`` exactly."""
    return re.findall(r"\s*\S+|\s+$", text) if text.strip() else [text]


def _build_error(reply: Reply, provider: str, model: str) -> BaseException:
    if isinstance(reply.error, BaseException):
        return reply.error
    cls = getattr(errors, str(reply.error), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.RoadworthyError)):
        raise errors.ConfigError(f"scripted reply names unknown error class {reply.error!r}")
    if issubclass(cls, errors.RateLimited):
        return cls(
            reply.error_message, retry_after=reply.retry_after, provider=provider, model=model
        )
    if issubclass(cls, errors.ProviderError):
        return cls(reply.error_message, provider=provider, model=model)
    if issubclass(cls, errors.InputRejected):
        return cls("scripted", reply.error_message)
    return cls(reply.error_message)
