"""The batch path: a file's items through a provider batch API, resumable after a crash.

Items are admitted exactly as :meth:`Pipeline.run` admits them (bad lines, failed ingest
and failed validation become ``rejected`` rows with reasons; flagged inputs go to review
before any model sees them), then every admitted item's one ``generate`` request goes to
the provider's batch endpoint with the **item id as custom id**, so each answer finds its
item without a mapping table. Answers are checked like real-time ones (JSON, schema,
escalation criteria) and failures take the pipeline's ``on_failure`` paths, so an item
ends with the same row, status and reason whichever path it took.

What makes it resumable is the ``provider_batches`` table: each batch the provider
accepts is written (with the prompt version its requests were rendered from) before the
first poll, and marked ``collected`` once its outcomes are in their items. A process that
dies leaves its items ``running`` and its batches ``submitted``; :meth:`BatchPath.resume`
polls those batches instead of submitting them again (the provider bills every batch it
runs), submits only the items no batch carries, and admits the lines of the source file
that never became items. An answer is written to its item only while the item is still
open, so a batch fetched twice changes nothing the second time.

Budgets hold here as on the real-time path: before a request goes into a batch, its
estimated cost at the batch price is reserved against every budget that applies to the
model, route and pipeline; a request that does not fit ends its item with
``BudgetExceeded`` through the pipeline's ``on_failure`` paths instead of being sent, and
each reservation is settled with the item's real (discounted) cost when its answer comes
back. A process that dies leaves its reservations held until the period ends, as a dead
real-time caller does: the budget errs on the side of spending less.

Only pipelines of one ``generate`` step take this path (see
:func:`roadworthy.config.paths.batch_problems` and docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..config.paths import BatchSettings, batch_problems
from ..errors import (
    BudgetExceeded,
    ConfigError,
    InputRejected,
    MalformedResponse,
    RoadworthyError,
)
from ..models.context import CallContext
from ..models.estimate import estimate_cost
from ..pipeline import GenerateRunner, ItemResult, Pipeline, Workspace
from ..pipeline.batch import _decode, _lines
from ..pipeline.degrade import escalation_reason
from ..pipeline.generate import BoundModel, PreparedCall
from ..providers.base import Completion, CompletionRequest
from ..providers.pricing import call_cost
from ..secrets import redact
from ..store.budgets import BudgetLedger, Reservation
from ..store.store import now
from ..store.tables import provider_batches, runs
from .batch import (
    BatchHooks,
    BatchResult,
    BatchSubmission,
    Outcome,
    Sleep,
    backend_for,
    run_batch_report,
)

__all__ = ["BatchPath", "BatchRunOutcome", "open_batch_runs"]

log = logging.getLogger(__name__)

SUBMITTING = "submitting"  # written before the create; its batch_id is PENDING + token
SUBMITTED = "submitted"
COLLECTED = "collected"
PENDING = "pending-"
OPEN = ("pending", "running")


@dataclass
class BatchRunOutcome:
    """What one call did: lines admitted, provider batches submitted and picked up again."""

    run_id: str
    admitted: int = 0
    submitted: int = 0
    resumed: int = 0


def open_batch_runs(store: Any, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Batch-path runs that have not finished, newest first, with their open work.

    Each row is the ``runs`` row plus ``batches`` (provider batches still submitted) and
    ``open_items`` (items still waiting for an answer).
    """
    from ..store.tables import items

    query = runs.select().where(runs.c.status != "finished").order_by(runs.c.started_at.desc())
    if pipeline is not None:
        query = query.where(runs.c.pipeline == pipeline)
    out: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            run = dict(row._mapping)
            options = run.get("options")
            if not isinstance(options, dict) or options.get("path") != "batch":
                continue
            run["batches"] = int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(provider_batches)
                    .where(
                        provider_batches.c.run_id == run["id"],
                        provider_batches.c.status.in_((SUBMITTED, SUBMITTING)),
                    )
                ).scalar()
                or 0
            )
            run["open_items"] = int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(items)
                    .where(items.c.run_id == run["id"], items.c.status.in_(OPEN))
                ).scalar()
                or 0
            )
            out.append(run)
    return out


class BatchPath:
    """Run one pipeline's items through its model's provider batch API.

    ``sleep`` and ``poll_interval_s`` exist for tests and for ``--poll-interval``; the
    defaults come from ``pipelines.NAME.batch``.
    """

    def __init__(
        self,
        workspace: Workspace,
        pipeline: Pipeline,
        *,
        settings: BatchSettings | None = None,
        poll_interval_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        config = workspace.project.config
        if pipeline.name not in config.pipelines:
            raise ConfigError(f"no pipeline {pipeline.name!r} to run on the batch path")
        problems = [
            f"{workspace.project.config_path}: pipelines.{pipeline.name}: path batch: {message}"
            for _, message in batch_problems(config, pipeline.name)
        ]
        if problems:
            raise ConfigError(problems)
        step = pipeline.steps[0]
        if not isinstance(step, GenerateRunner):
            raise ConfigError(f"pipeline {pipeline.name!r}: the batch path needs a generate step")
        self.workspace = workspace
        self.pipeline = pipeline
        self.store = pipeline.store
        self.step = step
        self.settings = settings or pipeline.config.batch
        self.poll_interval_s = (
            self.settings.poll_interval_s if poll_interval_s is None else poll_interval_s
        )
        self.sleep = sleep
        self.model = self._model()
        gen = step.step
        route = config.routes.get(gen.route) if gen.route is not None else None
        stack = workspace.stack
        self.limits = stack.limits_for(self.model.name, route.budget if route else None)(
            pipeline.name
        )
        self.ledger = BudgetLedger(self.store.engine)  # the store's, as the stack's is
        self._reserved: dict[str, Reservation] = {}
        backend_for(self.model.provider)  # a provider without a batch API fails here, not later
        self._items: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, PreparedCall] = {}
        self._runner: GenerateRunner | None = None
        self._prompt = ""

    def _model(self) -> BoundModel:
        """The one model the batch goes to: the step's, its prompt's, or its route's first."""
        gen = self.step.step
        name = gen.model
        if name is None and gen.route is not None:
            hops = self.workspace.route(gen.route).all_hops()
            name = hops[0].model_name if hops else None
        if name is None:
            source = self.workspace.prompts.files.get(gen.prompt.partition("@")[0])
            name = source.doc.settings.model if source else None
        if name is None:
            raise ConfigError(
                f"pipeline {self.pipeline.name!r}: the batch path needs a model "
                "(set generate.model, or settings.model in the prompt)"
            )
        return self.workspace._model_cached(name)

    # -- admitting ----------------------------------------------------------------------

    def admit(self, run_id: str, line_no: int, raw: bytes) -> ItemResult:
        """Make the line an item, as the sync path would; ``running`` ones await the batch."""
        pipe = self.pipeline
        try:
            data = _decode(raw)
        except InputRejected as exc:
            return pipe.reject(exc, raw=raw, run_id=run_id, line_no=line_no, key=f"line:{line_no}")
        result, _ = pipe.admit(data, run_id=run_id, line_no=line_no)
        return result

    # -- running ------------------------------------------------------------------------

    async def run(
        self, run_id: str, lines: Iterable[tuple[int, bytes]], *, finish: bool = True
    ) -> BatchRunOutcome:
        """Admit ``lines`` into run ``run_id``, send the open items, end every one.

        ``finish=False`` leaves the run open, for a caller that runs other items in it.
        """
        outcome = BatchRunOutcome(run_id)
        admitted: set[str] = set()
        for line_no, raw in lines:
            result = self.admit(run_id, line_no, raw)
            outcome.admitted += 1
            if result.status == "running" and result.item_id is not None:
                admitted.add(result.item_id)
        await self._send(run_id, outcome, only=admitted)
        if finish:
            self.store.finish_run(run_id, "finished")
        return outcome

    async def resume(self, run_id: str) -> BatchRunOutcome:
        """Finish a run an earlier process left open, paying for no batch twice."""
        outcome = BatchRunOutcome(run_id)
        with self.store.engine.connect() as conn:
            run = conn.execute(runs.select().where(runs.c.id == run_id)).first()
        if run is None:
            raise ConfigError(f"no run {run_id!r} to resume")
        source = run._mapping["source"]
        if source and Path(source).is_file():
            seen = {row["line_no"] for row in self.store.items_for_run(run_id)}
            for line_no, raw in _lines(Path(source)):
                if line_no not in seen:  # the earlier process died before admitting it
                    self.admit(run_id, line_no, raw)
                    outcome.admitted += 1
        await self._send(run_id, outcome)
        self.store.finish_run(run_id, "finished")
        return outcome

    def _open_items(self, run_id: str) -> list[dict[str, Any]]:
        return [r for r in self.store.items_for_run(run_id) if r["status"] in OPEN]

    def _submitted(self, run_id: str) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                provider_batches.select()
                .where(provider_batches.c.run_id == run_id, provider_batches.c.status == SUBMITTED)
                .order_by(provider_batches.c.created_at)
            )
            return [dict(r._mapping) for r in rows]

    def _pin(self, rows: list[dict[str, Any]]) -> GenerateRunner:
        """The step with its prompt pinned: the version earlier batches used, else today's."""
        gen = self.step.step
        if rows:
            prompt = str(rows[0]["prompt"])
        else:
            resolved = self.workspace.prompts.resolve(gen.prompt)
            base = gen.prompt.partition("@")[0]
            prompt = f"{base}@{resolved.version}" if resolved.version is not None else gen.prompt
        self._prompt = prompt
        return GenerateRunner(
            step=gen.model_copy(update={"prompt": prompt, "model": self.model.name, "route": None}),
            step_name=self.step.step_name,
            registry=self.step.registry,
            models=self.step.models,
            schema=self.step.schema,
            store=self.store,
            routes=self.step.routes,
        )

    async def _send(
        self, run_id: str, outcome: BatchRunOutcome, *, only: set[str] | None = None
    ) -> None:
        """Send the run's open items (``only`` these, when other paths share the run)."""
        await self._reconcile(run_id)
        rows = self._submitted(run_id)
        runner = self._runner = self._pin(rows)
        open_items = [r for r in self._open_items(run_id) if only is None or str(r["id"]) in only]
        self._items = {str(r["id"]): r for r in open_items}
        requests = []
        contexts: dict[str, CallContext] = {}
        for item_id, row in self._items.items():
            try:
                call = runner.prepare(dict(row["input"] or {}))
            except RoadworthyError as exc:
                self._end(item_id, exc)
                continue
            self._calls[item_id] = call
            requests.append((item_id, call.request))
            contexts[item_id] = CallContext(
                trace_id=row["trace_id"],
                item_id=item_id,
                run_id=run_id,
                pipeline=self.pipeline.name,
                step=runner.step_name,
                prompt_id=call.prompt.doc.id,
                prompt_version=call.prompt.version,
                prompt_label=call.prompt.label,
            )
        requests = self._reserve(requests, {c for row in rows for c in row["custom_ids"]})
        adopt = []
        for row in rows:
            carried = tuple(c for c in row["custom_ids"] if c in self._calls)
            if not carried:
                self._mark(row["batch_id"], run_id)
                continue
            adopt.append(
                BatchSubmission(
                    self.model.provider.name,
                    str(row["batch_id"]),
                    carried,
                    int(row["round"]),
                    row["input_file_id"],
                )
            )
        outcome.resumed = len(adopt)
        if requests:
            price = self.model.price

            def submitting(token: str, custom_ids: tuple[str, ...], round_no: int) -> None:
                self._intend(run_id, token, custom_ids, round_no)

            def submitted(submission: BatchSubmission) -> None:
                outcome.submitted += 1
                self._record(run_id, submission)

            def fetched(result: BatchResult) -> None:
                self._collect(run_id, result)

            report = await run_batch_report(
                requests,
                self.model.provider,
                on_error=self.settings.on_error,
                max_resubmissions=self.settings.max_resubmissions,
                poll_interval_s=self.poll_interval_s,
                max_polls=self.settings.max_polls,
                sleep=self.sleep,
                store=self.store,
                contexts=contexts,
                price=lambda _model: price,
                resume=adopt,
                hooks=BatchHooks(
                    submitted=submitted,
                    fetched=fetched,
                    submitting=submitting,
                    abandoned=lambda token: self._forget(run_id, token),
                ),
            )
            for item_id, _ in requests:
                answer: Outcome = report.outcomes.get(item_id) or MalformedResponse(
                    f"no batch result for item {item_id}", provider=self.model.provider.name
                )
                self._end(item_id, answer)
        for row in self._submitted(run_id):
            self._mark(row["batch_id"], run_id)

    def _reserve(
        self, requests: list[tuple[str, CompletionRequest]], submitted: set[str]
    ) -> list[tuple[str, CompletionRequest]]:
        """The requests whose estimated batch cost every applicable budget can take.

        The rest end now with the budget's error; nothing is sent for them. Requests an
        earlier process already ``submitted`` are past refusing: their cost is only
        counted when it comes back (the earlier reservation died with that process).
        """
        if not self.limits:
            return requests
        price = self.model.price
        if price is None:
            raise ConfigError(
                f"pipeline {self.pipeline.name!r}: model {self.model.name!r} has no price, "
                f"so no budget can be kept for it (hint: add models.{self.model.name}.price)"
            )
        count_only = self.ledger.unreserved(self.limits)
        keep = []
        for item_id, request in requests:
            if item_id in submitted:
                self._reserved[item_id] = count_only
                keep.append((item_id, request))
                continue
            estimate = estimate_cost(request, price, batch=True) or Decimal(0)
            try:
                self._reserved[item_id] = self.ledger.reserve(self.limits, estimate)
            except BudgetExceeded as exc:
                self._end(item_id, exc)
                continue
            keep.append((item_id, request))
        return keep

    def _settle(self, item_id: str, answer: Outcome | RoadworthyError) -> None:
        """Replace the item's reservation by what its batch request really cost."""
        reservation = self._reserved.pop(item_id, None)
        if reservation is None:
            return
        cost: Decimal | None = Decimal(0)  # a failed batch request is not billed
        if isinstance(answer, Completion):
            cost = call_cost(answer.usage, self.model.price, batch=True)
        self.ledger.settle(reservation, cost)

    # -- state --------------------------------------------------------------------------

    async def _reconcile(self, run_id: str) -> None:
        """Settle the batches an earlier process was creating when it died.

        Each was written ``submitting`` before its create went out: the provider may have
        accepted it (and will bill it) without the process hearing so. One the provider
        can find by its token is adopted like any submitted batch; one it has not is
        forgotten, and its items are sent again. A provider that keeps nothing to find a
        batch by (Anthropic's Message Batches) cannot tell, so its items are sent again
        with a warning that they may run twice.
        """
        with self.store.engine.connect() as conn:
            pending = [
                dict(r._mapping)
                for r in conn.execute(
                    provider_batches.select().where(
                        provider_batches.c.run_id == run_id,
                        provider_batches.c.status == SUBMITTING,
                    )
                )
            ]
        if not pending:
            return
        backend = backend_for(self.model.provider)
        find = getattr(backend, "find", None)  # only where the API keeps metadata
        for row in pending:
            token = str(row["batch_id"]).removeprefix(PENDING)
            custom_ids = tuple(row["custom_ids"])
            found = await find(token, custom_ids, int(row["round"])) if find else None
            if found is not None:
                self._record(run_id, found)
                continue
            if find is None:
                log.warning(
                    "%s: a batch of %d requests was being created when the last process "
                    "stopped, and this provider's batches cannot be looked up; its "
                    "requests are sent again and may run twice",
                    backend.name,
                    len(custom_ids),
                )
            self._forget(run_id, token)

    def _intend(self, run_id: str, token: str, custom_ids: tuple[str, ...], round_no: int) -> None:
        """Write the batch about to be created, before its create goes out."""
        stamp = now()
        with self.store.engine.begin() as conn:
            conn.execute(
                provider_batches.insert().values(
                    id=str(uuid.uuid4()),
                    run_id=run_id,
                    pipeline=self.pipeline.name,
                    provider=self.model.config.provider,
                    model=self.model.name,
                    prompt=self._prompt,
                    batch_id=PENDING + token,
                    round=round_no,
                    custom_ids=list(custom_ids),
                    status=SUBMITTING,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )

    def _record(self, run_id: str, submission: BatchSubmission) -> None:
        """The provider accepted a batch: its row (written ``submitting``) gets its id."""
        assert submission.token is not None  # every create carries one (batch._run_round)
        with self.store.engine.begin() as conn:
            conn.execute(
                provider_batches.update()
                .where(
                    provider_batches.c.run_id == run_id,
                    provider_batches.c.batch_id == PENDING + submission.token,
                )
                .values(
                    batch_id=submission.batch_id,
                    input_file_id=submission.input_file_id,
                    status=SUBMITTED,
                    updated_at=now(),
                )
            )

    def _forget(self, run_id: str, token: str) -> None:
        """The batch with ``token`` was never created: its row goes, its items are open."""
        with self.store.engine.begin() as conn:
            conn.execute(
                provider_batches.delete().where(
                    provider_batches.c.run_id == run_id,
                    provider_batches.c.batch_id == PENDING + token,
                )
            )

    def _mark(self, batch_id: str, run_id: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                provider_batches.update()
                .where(provider_batches.c.batch_id == batch_id, provider_batches.c.run_id == run_id)
                .values(status=COLLECTED, updated_at=now())
            )

    def _collect(self, run_id: str, result: BatchResult) -> None:
        """Write the final outcomes of a fetched batch; retryable errors wait for the policy."""
        for item_id, answer in result.outcomes.items():
            if isinstance(answer, Completion) or not answer.retryable:
                self._end(item_id, answer)
        self._mark(result.submission.batch_id, run_id)

    def _end(self, item_id: str, answer: Outcome | RoadworthyError) -> None:
        """End an open item with its answer, exactly as the sync path would."""
        self._settle(item_id, answer)
        row = self._items.get(item_id)
        if row is None:
            return
        current = self.store.get_item(item_id)
        if current is None or current["status"] not in OPEN:
            return  # already ended (a batch fetched twice, or an earlier process)
        pipe = self.pipeline
        data = dict(row["input"] or {})
        attempts = max(1, int(row["attempts"] or 1))
        result = ItemResult(
            status="running",
            item_id=item_id,
            trace_id=row["trace_id"],
            line_no=row["line_no"],
            key=row["item_key"],
        )
        try:
            if isinstance(answer, Completion):
                call = self._calls[item_id]
                assert self._runner is not None
                output = self._runner._output(call, answer)
                escalate = escalation_reason(output, pipe.config.escalate, result.key or "")
                if escalate is not None:
                    pipe._escalate(result, data, output, *escalate)
                else:
                    result.status, result.output = "done", output
            else:
                raise answer
        except RoadworthyError as exc:
            pipe._on_failure(result, exc, data, attempts)
        except Exception as exc:  # a bug must not lose the item
            result.status = "failed"
            result.reason = redact(f"internal error: {type(exc).__name__}: {exc}")
            result.error_code = "internal_error"
        pipe._save(result, attempts=attempts)
