"""The innermost wrapper: bind a configured model to a provider and record every attempt.

It sits directly on the provider, below retries and fallbacks, so *each* attempt that
reaches (or is forced to skip) the upstream becomes its own ledger row, carrying the
attempt number, fallback depth and hop reason that the outer wrappers put in context.

Cost is written only for what was billed: a completion is priced from its reported usage
(None when the price is unknown); an error answered by the upstream (an HTTP status, a
429, a refused request) costs 0; a failure where we cannot know whether the upstream
worked and billed (a timeout, a reset, a garbled body) is None, "unknown", never a guess.

The recorder is a plain callable, or a :class:`~roadworthy.store.writer.CallWriter`. With
its ``group_commit`` on (the service turns it on) the record goes through the group
commit (``arecord``), off the event loop, and the call returns only once the row has
committed, so nothing reported as done can be lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from decimal import Decimal

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from ..providers.pricing import Price, call_cost
from ..providers.streaming import current_sink, estimated_usage
from ..secrets import redact
from ..store import CallRecord
from ..store.writer import CallWriter
from . import context as ctx

__all__ = ["Recorded", "Recorder", "billed_error_cost", "forced_error"]

Recorder = Callable[[CallRecord], None]

_NOT_BILLED = (
    errors.RateLimited,
    errors.ContextTooLong,
    errors.AuthFailed,
    errors.BadRequest,
    errors.Refused,
)


def billed_error_cost(error: errors.RoadworthyError) -> Decimal | None:
    """0 when the upstream certainly did not bill the failed call, else None (unknown)."""
    if isinstance(error, _NOT_BILLED):
        return Decimal(0)
    if isinstance(error, errors.ProviderError) and error.status_code is not None:
        return Decimal(0)
    return None


def forced_error(model_name: str, provider: str, model_id: str) -> errors.ProviderError:
    """The failure a fallback drill injects in place of a real call (never sent upstream)."""
    cls = getattr(errors, ctx.forced_error.get(), errors.ProviderUnavailable)
    if not (isinstance(cls, type) and issubclass(cls, errors.ProviderError)):
        cls = errors.ProviderUnavailable
    error = cls(
        f"fallback drill: hop {model_name!r} forced to fail", provider=provider, model=model_id
    )
    error.retryable = False  # a forced failure is the same on every attempt
    return error


class Recorded:
    """One configured model on its provider; the leaf of every stack."""

    def __init__(
        self,
        provider: Provider,
        *,
        model_name: str,
        model_id: str,
        tier: str | None = None,
        price: Price | None = None,
        context_window: int | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.provider = provider
        self.name = model_name
        self.model_name = model_name
        self.model_id = model_id
        self.tier = tier
        self.price = price
        self._context_window = context_window
        self.recorder = recorder

    @property
    def capabilities(self) -> Capabilities:
        caps = self.provider.capabilities
        if self._context_window is not None:
            caps = dataclasses.replace(caps, context_window=self._context_window)
        return caps

    @property
    def context_window(self) -> int | None:
        return self.capabilities.context_window

    def bind_request(self, request: CompletionRequest) -> CompletionRequest:
        """The request as this model should get it: its prompt variant and its model id."""
        return ctx.bind_to_model(request, self.model_name, self.model_id)

    async def complete(self, request: CompletionRequest) -> Completion:
        request = self.bind_request(request)
        started = time.perf_counter()
        completion: Completion | None = None
        error: errors.RoadworthyError | None = None
        forced = self.model_name in ctx.forced_failures.get()
        try:
            if forced:
                raise forced_error(self.model_name, self.provider.name, self.model_id)
            if request.timeout_s is not None:
                # Providers enforce their own deadline; this guard covers any that do not
                # (an in-process model, a user's provider) with a little slack.
                async with asyncio.timeout(request.timeout_s + 0.05):
                    completion = await self.provider.complete(request)
            else:
                completion = await self.provider.complete(request)
        except TimeoutError:
            error = errors.Timeout(
                f"{self.provider.name} did not answer within {request.timeout_s:.2f}s",
                provider=self.provider.name,
                model=self.model_id,
            )
        except errors.RoadworthyError as exc:
            error = exc
        except asyncio.CancelledError:
            # The caller went away (a client that abandoned its stream): the attempt still
            # happened and may have been billed, so it gets a row, written synchronously
            # because this task is being cancelled.
            if self.recorder is not None:
                record = self._record(request, None, None, started)
                record.status = "cancelled"
                record.error_class = "Cancelled"
                record.cost_usd = None  # the upstream may have billed what it generated
                self._streamed(record, started, request, cancelled=True)
                self.recorder(record)
            raise
        if isinstance(self.recorder, CallWriter) and self.recorder.group_commit:
            await self.recorder.arecord(self._record(request, completion, error, started, forced))
        elif self.recorder is not None:
            self.recorder(self._record(request, completion, error, started, forced))
        if error is not None:
            raise error
        assert completion is not None
        return completion

    def _record(
        self,
        request: CompletionRequest,
        completion: Completion | None,
        error: errors.RoadworthyError | None,
        started: float,
        forced: bool = False,
    ) -> CallRecord:
        latency_ms = (time.perf_counter() - started) * 1000
        call = ctx.call_context.get() or ctx.CallContext(trace_id="untraced")
        record = CallRecord(
            trace_id=call.trace_id,
            item_id=call.item_id,
            run_id=call.run_id,
            pipeline=call.pipeline,
            step=call.step,
            provider=self.provider.name,
            model=self.model_id,
            model_name=self.model_name,
            tier=self.tier,
            prompt_id=call.prompt_id,
            prompt_version=call.prompt_version,
            prompt_label=call.prompt_label,
            latency_ms=latency_ms,
            status="ok" if error is None else "error",
            attempt=ctx.attempt.get(),
            fallback_depth=ctx.fallback_depth.get(),
            route=ctx.route_name.get(),
            hop_reason=ctx.hop_reason.get(),
            api_key_id=key.id if (key := ctx.api_key.get()) is not None else None,
        )
        if completion is not None:
            usage = completion.usage
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.cached_read_tokens = usage.cached_read_tokens
            record.cache_write_tokens = usage.cache_write_tokens
            record.cost_usd = call_cost(usage, self.price)
            record.finish_reason = completion.finish_reason
            record.request_id = completion.request_id
            record.usage_estimated = usage.estimated
        # the attempt's own start: one rebuilt from the latency lands after a first piece
        # that came within microseconds, and the time to first token would be lost
        self._streamed(record, started, request)
        if error is not None:
            record.error_class = error.error_class
            record.error_message = redact(str(error))[:2000]
            record.cost_usd = Decimal(0) if forced else billed_error_cost(error)
            if forced:
                record.status = "drill"
        return record

    @staticmethod
    def _streamed(
        record: CallRecord, started: float, request: CompletionRequest, cancelled: bool = False
    ) -> None:
        """Time to first token of a streamed attempt; for a cut one, the output counted.

        The sink is shared by every attempt of one request, but only the attempt that
        sent the first piece can be streaming at all (after it no other attempt runs).
        """
        sink = current_sink()
        if sink is None or sink.first_at is None or sink.first_at < started:
            return
        record.ttft_ms = (sink.first_at - started) * 1000
        if cancelled:
            usage = estimated_usage(request, sink.pieces)
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.usage_estimated = True

    async def aclose(self) -> None:
        await self.provider.aclose()
