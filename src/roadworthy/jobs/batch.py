"""Provider batch APIs behind one contract: submit, poll, download, map back by custom id.

Non-urgent work goes to a provider's batch endpoint at half price, with a window of up to
24 hours instead of a deadline in seconds. Everything provider-specific (file upload or
inline requests, status words, result formats) lives in a :class:`BatchBackend`
(``batch_openai``, ``batch_anthropic``); this module owns what must be the same for every
provider:

* splitting into several batches so no batch passes the provider's documented limits
  (requests per batch, bytes per batch; OpenAI also wants one model per batch);
* polling with an injectable ``sleep`` and a bound on the number of polls, so tests run
  with a zero sleep and a stuck batch cannot hang a worker forever;
* mapping every custom id to a :class:`~roadworthy.providers.Completion` or a classified
  :class:`~roadworthy.errors.ProviderError`; a custom id the provider never answered for is
  an error, never silently missing;
* the error policy: requests that failed in a way that can succeed later (expired, rate
  limited, 5xx) are resubmitted in a new batch, sent on the real-time path, or returned,
  as ``on_error`` says; requests that cannot succeed (bad request, context too long) are
  returned as they are under every policy;
* one ledger row per result, priced with ``call_cost(..., batch=True)`` and marked
  ``hop_reason="batch"`` (``"batch_fallback"`` for the real-time fallback, at full price).

This module keeps batch state in memory and returns it as a :class:`BatchReport`; a
caller that must survive its own death passes :class:`BatchHooks` (told of every batch the
provider accepts and every batch whose results arrive) and, after a restart, the
submissions it recorded as ``resume``, which are polled instead of submitted again.
:mod:`roadworthy.jobs.batch_run` does this with the ``provider_batches`` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from ..errors import (
    BadRequest,
    ConfigError,
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
    Timeout,
)
from ..models.context import CallContext, call_context
from ..models.recording import billed_error_cost
from ..providers._http import HttpProvider, classify_status
from ..providers.base import Completion, CompletionRequest
from ..providers.pricing import Price, builtin_price, call_cost
from ..secrets import redact
from ..store.store import CallRecord

if TYPE_CHECKING:
    from ..store.store import Store

__all__ = [
    "BatchBackend",
    "BatchCanceled",
    "BatchExpired",
    "BatchHooks",
    "BatchLimits",
    "BatchPoll",
    "BatchReport",
    "BatchResult",
    "BatchSubmission",
    "ErrorPolicy",
    "HttpBatchBackend",
    "Outcome",
    "backend_for",
    "plan_batches",
    "run_batch",
    "run_batch_report",
]

ErrorPolicy = Literal["resubmit", "realtime", "fail"]
Outcome = Completion | ProviderError
Sleep = Callable[[float], Awaitable[None]]


class BatchExpired(Timeout):
    """The batch window passed (or we stopped waiting) before this request ran."""


class BatchCanceled(ProviderUnavailable):
    """The batch was cancelled before this request ran."""


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold; the planner splits a larger submission into several."""

    max_requests: int
    max_bytes: int


@dataclass(frozen=True)
class BatchSubmission:
    """A batch the provider accepted: its id and the custom ids it carries."""

    provider: str
    batch_id: str
    custom_ids: tuple[str, ...]
    round: int = 1  # 1 for the first submission, 2 for the first resubmission, ...
    input_file_id: str | None = None
    # Ours, sent with the create where the API keeps metadata, so that a batch whose
    # create answer was lost (a timeout, a crash) can be found again (BatchBackend.find).
    token: str | None = None

    @classmethod
    def from_created(
        cls,
        provider: str,
        created: dict[str, Any],
        custom_ids: tuple[str, ...],
        round: int,
        input_file_id: str | None = None,
        token: str | None = None,
    ) -> BatchSubmission:
        """The submission a provider's create response describes; no id is malformed."""
        batch_id = created.get("id")
        if not isinstance(batch_id, str):
            raise MalformedResponse(f"{provider} batch create returned no id", provider=provider)
        return cls(provider, batch_id, custom_ids, round, input_file_id, token)


@dataclass(frozen=True)
class BatchPoll:
    """One status poll. ``status`` is the provider's own word; ``done`` means terminal."""

    status: str
    done: bool
    counts: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_status(
        cls, data: dict[str, Any], status_key: str, terminal: Iterable[str]
    ) -> BatchPoll:
        status = str(data.get(status_key))
        counts = data.get("request_counts")
        return cls(
            status=status,
            done=status in terminal,
            counts=dict(counts) if isinstance(counts, dict) else {},
            raw=data,
        )


@dataclass
class BatchResult:
    """How one submitted batch ended and what each of its requests became."""

    submission: BatchSubmission
    status: str
    outcomes: dict[str, Outcome]
    polls: int = 0


@dataclass
class BatchReport:
    """Everything a :func:`run_batch_report` call did, for callers that keep batch state."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    batches: list[BatchResult] = field(default_factory=list)
    resubmitted: dict[str, int] = field(default_factory=dict)  # custom id -> times
    realtime: list[str] = field(default_factory=list)  # custom ids sent on the real-time path


@dataclass
class BatchHooks:
    """Callbacks for a caller that persists batch state; each runs before the next step.

    ``submitting`` hears of a batch about to be created (its token, custom ids and round),
    before the create is sent: a process that dies before it hears the answer can then
    look for the batch instead of paying for it twice. ``submitted`` hears of a batch as
    soon as the provider accepted it (before the first poll; the same token),
    ``abandoned`` of a token whose create the provider did not accept, ``fetched`` of a
    batch whose outcomes are known (results downloaded, or the whole batch failed or was
    given up on).
    """

    submitted: Callable[[BatchSubmission], None] | None = None
    fetched: Callable[[BatchResult], None] | None = None
    submitting: Callable[[str, tuple[str, ...], int], None] | None = None
    abandoned: Callable[[str], None] | None = None


class BatchBackend(Protocol):
    """One provider's batch API.

    A backend whose API keeps metadata on a batch also has ``async find(token,
    custom_ids, round) -> BatchSubmission | None``: the batch created with ``token``
    (sent by :meth:`submit`), for a create whose answer was lost. Without it such a
    batch cannot be told from one never created.
    """

    name: str
    limits: BatchLimits
    one_model_per_batch: bool

    def encode(self, custom_id: str, request: CompletionRequest) -> bytes:
        """The request as the provider takes it (one JSONL line); its size counts to limits."""
        ...

    async def submit(
        self, entries: Sequence[tuple[str, bytes]], *, round: int, token: str | None = None
    ) -> BatchSubmission: ...

    async def poll(self, submission: BatchSubmission) -> BatchPoll: ...

    async def fetch(
        self,
        submission: BatchSubmission,
        poll: BatchPoll,
        requests: Mapping[str, CompletionRequest],
    ) -> dict[str, Outcome]: ...

    async def cancel(self, submission: BatchSubmission) -> None: ...

    async def complete(self, request: CompletionRequest) -> Completion:
        """The real-time path, for the ``realtime`` error policy."""
        ...


class HttpBatchBackend:
    """Plumbing shared by the HTTP batch backends: the provider's client, key and errors.

    A backend wraps the real-time provider so that a batch request body is byte for byte
    what the real-time path would send (``provider._payload``) and a batch answer is parsed
    by the same code (``provider._parse``).
    """

    name: str
    limits: BatchLimits
    one_model_per_batch = False

    def __init__(self, provider: HttpProvider, *, limits: BatchLimits | None = None) -> None:
        self.provider = provider
        self.name = provider.name
        if limits is not None:
            self.limits = limits

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.provider._base_url + path

    async def send(
        self, method: str, path: str, *, model: str = "batch", **kw: Any
    ) -> httpx.Response:
        """One HTTP exchange, with failures classified exactly as the real-time path does."""
        name = self.name
        where: dict[str, Any] = {"provider": name, "model": model}
        headers = {**self.provider._headers(), **kw.pop("headers", {})}
        client = self.provider._http()
        timeout = self.provider._total_timeout_s
        try:
            response = await asyncio.wait_for(
                client.request(method, self.url(path), headers=headers, **kw), timeout
            )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise Timeout(
                f"{name} did not answer in time ({type(exc).__name__})", **where
            ) from None
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"{name} unreachable: {type(exc).__name__}: {redact(str(exc))}", **where
            ) from None
        if response.status_code >= 400:
            raise classify_status(
                response.status_code, response.content, response.headers, provider=name, model=model
            )
        return response

    async def send_json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = await self.send(method, path, **kw)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise MalformedResponse(
                f"{self.name} {method} {path} returned no JSON object", provider=self.name
            )
        return data

    def http_error(self, status: int, body: Any, model: str) -> ProviderError:
        """A failed batch line, classified as if the real-time call had returned it."""
        return classify_status(
            status,
            _json_bytes(body),
            httpx.Headers(),
            provider=self.name,
            model=model,
        )

    def parse(self, body: dict[str, Any], request: CompletionRequest) -> Outcome:
        try:
            return self.provider._parse(body, request)
        except ProviderError as exc:
            return exc

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self.provider.complete(request)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()


def backend_for(provider: Any, *, limits: BatchLimits | None = None) -> BatchBackend:
    """The batch backend for a provider (OpenAI-compatible or Anthropic), or a backend as is."""
    from ..providers.anthropic import AnthropicProvider
    from ..providers.openai import OpenAIProvider

    if isinstance(provider, OpenAIProvider):
        from .batch_openai import OpenAIBatch

        return OpenAIBatch(provider, limits=limits)
    if isinstance(provider, AnthropicProvider):
        from .batch_anthropic import AnthropicBatch

        return AnthropicBatch(provider, limits=limits)
    if all(hasattr(provider, a) for a in ("encode", "submit", "poll", "fetch")):
        backend: BatchBackend = provider
        return backend
    raise ConfigError(
        f"provider {getattr(provider, 'name', provider)!r} has no batch API "
        "(batches go to OpenAI-compatible or Anthropic providers)"
    )


def plan_batches(
    backend: BatchBackend, requests: Sequence[tuple[str, CompletionRequest]]
) -> tuple[list[list[tuple[str, bytes]]], dict[str, ProviderError]]:
    """Split requests into batches within the backend's limits.

    Returns the batches (custom id and encoded line) and the requests that cannot go in
    any batch because one alone is over the byte limit.
    """
    limits = backend.limits
    groups: dict[str, list[tuple[str, CompletionRequest]]] = {}
    for custom_id, request in requests:
        key = request.model if backend.one_model_per_batch else ""
        groups.setdefault(key, []).append((custom_id, request))
    planned: list[list[tuple[str, bytes]]] = []
    oversize: dict[str, ProviderError] = {}
    for group in groups.values():
        current: list[tuple[str, bytes]] = []
        size = 0
        for custom_id, request in group:
            line = backend.encode(custom_id, request)
            if len(line) > limits.max_bytes:
                oversize[custom_id] = BadRequest(
                    f"request {custom_id!r} is {len(line)} bytes, over the "
                    f"{limits.max_bytes}-byte batch limit of {backend.name}",
                    provider=backend.name,
                    model=request.model,
                )
                continue
            if current and (
                len(current) >= limits.max_requests or size + len(line) > limits.max_bytes
            ):
                planned.append(current)
                current, size = [], 0
            current.append((custom_id, line))
            size += len(line)
        if current:
            planned.append(current)
    return planned, oversize


async def run_batch(
    requests: Sequence[tuple[str, CompletionRequest]],
    provider: Any,
    **kw: Any,
) -> dict[str, Outcome]:
    """Send ``requests`` through ``provider``'s batch API; see :func:`run_batch_report`."""
    report = await run_batch_report(requests, provider, **kw)
    return report.outcomes


async def run_batch_report(
    requests: Sequence[tuple[str, CompletionRequest]],
    provider: Any,
    *,
    on_error: ErrorPolicy = "resubmit",
    max_resubmissions: int = 2,
    poll_interval_s: float = 60.0,
    max_polls: int = 1500,
    sleep: Sleep = asyncio.sleep,
    store: Store | None = None,
    contexts: Mapping[str, CallContext] | None = None,
    price: Callable[[str], Price | None] = builtin_price,
    limits: BatchLimits | None = None,
    realtime_concurrency: int = 8,
    resume: Sequence[BatchSubmission] = (),
    hooks: BatchHooks | None = None,
) -> BatchReport:
    """Submit, poll, download and map back; apply ``on_error`` to retryable failures.

    ``max_polls`` bounds the status polls of one round (the default, at one poll a
    minute, outlasts the 24-hour window); a batch still running then is cancelled and its
    requests end as :class:`BatchExpired`. ``contexts`` names the trace, item and run of
    each custom id for the ledger. ``resume`` names batches an earlier process submitted:
    their requests are polled and fetched, not sent again (every custom id they carry must
    be among ``requests``); the first round then counts as their round.
    """
    if on_error not in ("resubmit", "realtime", "fail"):
        raise ValueError(f"on_error must be resubmit, realtime or fail, not {on_error!r}")
    by_id: dict[str, CompletionRequest] = {}
    for custom_id, request in requests:
        if custom_id in by_id:
            raise ValueError(f"custom id {custom_id!r} appears twice in one batch run")
        by_id[custom_id] = request
    backend = backend_for(provider, limits=limits)
    ambient = call_context.get()
    ledger = _Ledger(store, contexts or {}, ambient, price, backend.name)
    report = BatchReport()
    for submission in resume:
        unknown = [cid for cid in submission.custom_ids if cid not in by_id]
        if unknown:
            raise ValueError(
                f"resumed batch {submission.batch_id} carries custom ids with no request: "
                f"{', '.join(unknown[:5])}"
            )
    pending = list(requests)
    round_no = max((s.round for s in resume), default=1)
    adopt: Sequence[BatchSubmission] = resume
    hooks = hooks or BatchHooks()
    while pending:
        outcomes = await _run_round(
            backend,
            pending,
            by_id,
            round_no,
            report,
            ledger,
            _Polling(poll_interval_s, max_polls, sleep),
            adopt,
            hooks,
        )
        adopt = ()
        report.outcomes.update(outcomes)
        retry = [cid for cid, o in outcomes.items() if isinstance(o, ProviderError) and o.retryable]
        if not retry or on_error == "fail":
            break
        if on_error == "realtime":
            await _realtime(backend, retry, by_id, report, ledger, round_no, realtime_concurrency)
            break
        if round_no > max_resubmissions:
            break
        round_no += 1
        for cid in retry:
            report.resubmitted[cid] = report.resubmitted.get(cid, 0) + 1
        pending = [(cid, by_id[cid]) for cid in retry]
    return report


@dataclass(frozen=True)
class _Polling:
    interval_s: float
    max_polls: int
    sleep: Sleep


async def _run_round(
    backend: BatchBackend,
    entries: Sequence[tuple[str, CompletionRequest]],
    by_id: Mapping[str, CompletionRequest],
    round_no: int,
    report: BatchReport,
    ledger: _Ledger,
    polling: _Polling,
    adopt: Sequence[BatchSubmission],
    hooks: BatchHooks,
) -> dict[str, Outcome]:
    covered = {cid for submission in adopt for cid in submission.custom_ids}
    planned, outcomes_any = plan_batches(backend, [e for e in entries if e[0] not in covered])
    outcomes: dict[str, Outcome] = dict(outcomes_any)
    started = time.perf_counter()
    for cid, error in outcomes_any.items():
        ledger.record(cid, by_id[cid], error, None, round_no, 0.0)
    running: list[BatchSubmission] = list(adopt)
    for chunk in planned:
        token = uuid.uuid4().hex
        cids = tuple(cid for cid, _ in chunk)
        if hooks.submitting is not None:
            hooks.submitting(token, cids, round_no)
        try:
            submission = await backend.submit(chunk, round=round_no, token=token)
            if submission.token is None:  # a backend that does not carry it
                submission = dataclasses.replace(submission, token=token)
        except ProviderError as exc:
            if hooks.abandoned is not None:
                hooks.abandoned(token)
            for cid, _ in chunk:
                outcomes[cid] = exc
                ledger.record(cid, by_id[cid], exc, None, round_no, 0.0)
            continue
        running.append(submission)
        if hooks.submitted is not None:
            hooks.submitted(submission)
    polls = 0
    while running:
        still: list[BatchSubmission] = []
        for submission in running:
            try:
                poll = await backend.poll(submission)
            except ProviderError as exc:
                if exc.retryable:
                    still.append(submission)  # a failed poll is not a failed batch
                    continue
                _settle(submission, exc, outcomes, report, ledger, by_id, started, polls, hooks)
                continue
            if not poll.done:
                still.append(submission)
                continue
            try:
                got = await backend.fetch(submission, poll, by_id)
            except ProviderError as exc:
                if exc.retryable:
                    # The batch ran (and was billed): fetch again next poll, never resubmit.
                    still.append(submission)
                    continue
                _settle(
                    submission, exc, outcomes, report, ledger, by_id, started, polls, hooks, poll
                )
                continue
            result = BatchResult(submission, poll.status, {}, polls + 1)
            for cid in submission.custom_ids:
                outcome = got.get(cid) or MalformedResponse(
                    f"{backend.name} batch {submission.batch_id} has no result for {cid!r}",
                    provider=backend.name,
                    model=by_id[cid].model,
                )
                result.outcomes[cid] = outcomes[cid] = outcome
                ledger.record(cid, by_id[cid], outcome, submission, round_no, _ms(started))
            report.batches.append(result)
            if hooks.fetched is not None:
                hooks.fetched(result)
        running = still
        if not running:
            break
        polls += 1
        if polls >= polling.max_polls:
            for submission in running:
                with contextlib.suppress(ProviderError):  # best effort: given up on anyway
                    await backend.cancel(submission)
                error = BatchExpired(
                    f"{backend.name} batch {submission.batch_id} still running after "
                    f"{polls} polls; cancelled",
                    provider=backend.name,
                )
                _settle(submission, error, outcomes, report, ledger, by_id, started, polls, hooks)
            break
        await polling.sleep(polling.interval_s)
    return outcomes


def _settle(
    submission: BatchSubmission,
    error: ProviderError,
    outcomes: dict[str, Outcome],
    report: BatchReport,
    ledger: _Ledger,
    by_id: Mapping[str, CompletionRequest],
    started: float,
    polls: int,
    hooks: BatchHooks,
    poll: BatchPoll | None = None,
) -> None:
    """Every request of a batch ends with the same error."""
    result = BatchResult(submission, poll.status if poll else type(error).__name__, {}, polls)
    for cid in submission.custom_ids:
        result.outcomes[cid] = outcomes[cid] = error
        ledger.record(cid, by_id[cid], error, submission, submission.round, _ms(started))
    report.batches.append(result)
    if hooks.fetched is not None:
        hooks.fetched(result)


async def _realtime(
    backend: BatchBackend,
    custom_ids: Sequence[str],
    by_id: Mapping[str, CompletionRequest],
    report: BatchReport,
    ledger: _Ledger,
    round_no: int,
    concurrency: int,
) -> None:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(cid: str) -> None:
        async with gate:
            started = time.perf_counter()
            outcome: Outcome
            try:
                outcome = await backend.complete(by_id[cid])
            except ProviderError as exc:
                outcome = exc
            report.outcomes[cid] = outcome
            report.realtime.append(cid)
            ledger.record(cid, by_id[cid], outcome, None, round_no + 1, _ms(started), batch=False)

    await asyncio.gather(*(one(cid) for cid in custom_ids))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class _Ledger:
    """Turns batch outcomes into ledger rows (nothing is written without a store)."""

    def __init__(
        self,
        store: Store | None,
        contexts: Mapping[str, CallContext],
        ambient: CallContext | None,
        price: Callable[[str], Price | None],
        provider: str,
    ) -> None:
        self.store = store
        self.contexts = contexts
        self.ambient = ambient
        self.price = price
        self.provider = provider

    def record(
        self,
        custom_id: str,
        request: CompletionRequest,
        outcome: Outcome,
        submission: BatchSubmission | None,
        attempt: int,
        latency_ms: float,
        *,
        batch: bool = True,
    ) -> None:
        if self.store is None:
            return
        call = self.contexts.get(custom_id) or self.ambient or CallContext(uuid.uuid4().hex)
        record = CallRecord(
            trace_id=call.trace_id,
            item_id=call.item_id,
            run_id=call.run_id,
            pipeline=call.pipeline,
            step=call.step,
            prompt_id=call.prompt_id,
            prompt_version=call.prompt_version,
            prompt_label=call.prompt_label,
            provider=self.provider,
            model=request.model,
            latency_ms=latency_ms,
            status="ok" if isinstance(outcome, Completion) else "error",
            attempt=attempt,
            cache_outcome="miss",
            hop_reason="batch" if batch else "batch_fallback",
        )
        if isinstance(outcome, Completion):
            usage = outcome.usage
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.cached_read_tokens = usage.cached_read_tokens
            record.cache_write_tokens = usage.cache_write_tokens
            record.cost_usd = call_cost(usage, self.price(request.model), batch=batch)
            record.finish_reason = outcome.finish_reason
            record.request_id = outcome.request_id
        else:
            record.error_class = outcome.error_class
            record.error_message = redact(str(outcome))[:2000]
            # Providers bill only the batch requests that succeeded.
            record.cost_usd = Decimal(0) if batch else billed_error_cost(outcome)
            record.request_id = submission.batch_id if submission else None
        self.store.record_call(record)
