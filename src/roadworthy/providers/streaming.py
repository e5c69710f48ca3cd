"""Streaming without widening the provider contract.

``complete(request) -> Completion`` stays the one call every provider and every wrapper
implements. A caller that wants the text as it is generated binds a :class:`StreamSink`
around the call (:func:`streaming`). A provider that can stream (``capabilities.streaming``)
then asks the upstream for a stream, hands each piece of text to the sink as it arrives,
and still returns the whole :class:`~roadworthy.providers.base.Completion` at the end. So
retries, the breaker, budgets, rate limits, the ledger and the cache keep working on
whole calls, unchanged, and a provider that cannot stream simply ignores the sink: the
caller then sends the finished completion itself.

The sink is also where "the first byte reached the client" is known. Once a piece was
handed over, the call is *committed* to the attempt that produced it: a failure after that
cannot be retried or handed to a fallback model (the client already holds part of one
answer), so :meth:`StreamSink.committed_failure` marks the error not retryable and the
fallback chain re-raises it instead of hopping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import RoadworthyError
from .base import CompletionRequest, Usage

__all__ = ["StreamSink", "current_sink", "estimated_usage", "streaming"]


class StreamSink:
    """Where a streaming call puts its text; the server reads it from :attr:`queue`.

    ``None`` on the queue is never put by a provider; the reader adds its own end marker.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.committed = False
        self.claimed = False  # a router took it: routes called on the way do not stream
        self.pieces = 0
        self.chars = 0
        self.first_at: float | None = None  # perf_counter() of the first piece

    def send(self, text: str) -> None:
        """Hand one piece of generated text to the client (empty pieces are dropped)."""
        if not text:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.committed = True
        self.pieces += 1
        self.chars += len(text)
        self.queue.put_nowait(text)

    def committed_failure(self, error: BaseException) -> BaseException:
        """``error``, marked not retryable when part of the answer was already sent."""
        if self.committed and isinstance(error, RoadworthyError):
            error.retryable = False
        return error


_sink: ContextVar[StreamSink | None] = ContextVar("rw_stream_sink", default=None)


def current_sink() -> StreamSink | None:
    """The sink of the call being made, or None when nobody asked for a stream."""
    return _sink.get()


@contextmanager
def streaming(sink: StreamSink | None) -> Iterator[None]:
    """Bind ``sink`` for the calls made inside the ``with`` block."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def estimated_usage(request: CompletionRequest, output_pieces: int) -> Usage:
    """Token counts for a stream that did not report usage, marked as estimated.

    Output is counted in content pieces (servers send about one token per chunk); input is
    estimated at four characters a token. Both are flagged, so the ledger never passes
    them off as billed counts.
    """
    chars = sum(len(m.content) for m in request.messages)
    return Usage(input_tokens=max(1, chars // 4), output_tokens=output_pieces, estimated=True)
