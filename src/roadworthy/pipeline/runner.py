"""Run one item through a pipeline, ending it in a recorded status.

The contract of :meth:`Pipeline.run` is the project's first rule: whatever happens, the
item's row ends in ``done``, ``degraded``, ``deferred``, ``escalated``, ``rejected`` or
``failed``, with a reason for every status but ``done``, and the result returned says the
same. The order is fixed: ingest (reject, or escalate a flagged input before any model
sees it), validate, run the steps, then either check the answer against the escalation
criteria or walk the pipeline's ``on_failure`` paths. Only cancellation (Ctrl-C) escapes,
and the batch runner ends those items itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..config.model import PipelineConfig
from ..errors import InputRejected, OutputInvalid, RoadworthyError
from ..ingest import Ingestor
from ..review import ReviewQueue
from ..secrets import redact
from ..store import Store, input_hash
from ..store.store import now
from .degrade import (
    defer_outcome,
    escalation_reason,
    partial_outcome,
    rules_outcome,
    sampled,
)
from .generate import GenerateContext
from .validate import validate_input

__all__ = ["ItemResult", "Pipeline", "item_key_for"]


@dataclass
class ItemResult:
    """What happened to one input; the same facts as its ``items`` row."""

    status: str
    item_id: str | None = None
    trace_id: str | None = None
    output: Any = None
    reason: str | None = None
    error_code: str | None = None
    error_field: str | None = None
    line_no: int | None = None
    latency_ms: float | None = None
    resumed: bool = False
    key: str | None = None
    missing: list[str] = field(default_factory=list)
    review_id: str | None = None
    next_attempt_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.line_no is not None:
            out["line"] = self.line_no
        if self.item_id is not None:
            out["item_id"] = self.item_id
        if self.status in ("done", "degraded"):
            out["output"] = self.output
        if self.status == "done":
            pass
        elif self.status == "degraded":
            out["degraded"] = {"path": self.error_code, "reason": self.reason}
            if self.missing:
                out["degraded"]["missing"] = self.missing
        elif self.status == "escalated":
            out["review"] = {"id": self.review_id, "code": self.error_code, "reason": self.reason}
        elif self.status == "deferred":
            out["deferred"] = {
                "reason": self.reason,
                "next_attempt_at": self.next_attempt_at.isoformat()
                if self.next_attempt_at
                else None,
            }
        else:
            out["error"] = {
                "code": self.error_code,
                "message": self.reason,
                **({"field": self.error_field} if self.error_field else {}),
            }
        if self.resumed:
            out["resumed"] = True
        return out


def _canonical(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def item_key_for(data: Any, id_field: str | None) -> str:
    """A stable identity for an input across runs: its id field, else its content hash."""
    if id_field and isinstance(data, dict) and isinstance(data.get(id_field), str | int):
        return f"id:{data[id_field]}"
    return "sha256:" + hashlib.sha256(_canonical(data).encode()).hexdigest()


def _error_code(exc: RoadworthyError) -> str:
    if isinstance(exc, InputRejected):
        return exc.code
    if isinstance(exc, OutputInvalid):
        return "output_invalid"
    return exc.error_class


class Step(Protocol):
    """What the runner needs of a step: a name for its output, and a way to run it."""

    step_name: str

    def max_concurrency(self) -> int | None: ...

    async def run(self, variables: dict[str, Any], ctx: GenerateContext) -> Any: ...


class Pipeline:
    """A configured pipeline with its steps bound to live providers and a store."""

    def __init__(
        self,
        name: str,
        config: PipelineConfig,
        steps: list[Step],
        store: Store,
        *,
        review: ReviewQueue | None = None,
        ingestor: Ingestor | None = None,
        clock: Callable[[], datetime] = now,
        second_opinion: Step | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.steps = steps
        self.store = store
        self.review = review or ReviewQueue(store)
        self.ingestor = ingestor
        self.clock = clock
        self.second_opinion = second_opinion

    def default_concurrency(self, fallback: int = 4) -> int:
        """How many items to run at once when the user did not say.

        An in-process model serves one call at a time; running more items than that only
        makes each item wait longer, so the lowest provider limit wins.
        """
        limits = [fallback]
        for step in self.steps:
            limit = step.max_concurrency()
            if limit is not None:
                limits.append(limit)
        return min(limits)

    def key_for(self, data: Any) -> str:
        return item_key_for(data, self.config.input.id_field)

    def reject(
        self,
        exc: InputRejected,
        *,
        raw: bytes | str,
        data: Any = None,
        run_id: str | None = None,
        line_no: int | None = None,
        key: str | None = None,
        ingest: dict[str, Any] | None = None,
    ) -> ItemResult:
        """Store an input that cannot be processed, with its reason and payload hash."""
        payload_hash = input_hash(raw)
        item_key = key or f"sha256:{payload_hash}"
        item_id, trace_id = self.store.add_item(
            pipeline=self.name,
            item_key=item_key,
            payload_hash=payload_hash,
            input=data,
            run_id=run_id,
            line_no=line_no,
            status="rejected",
            reason=exc.message,
            error_code=exc.code,
            error_field=exc.field,
            ingest=ingest,
        )
        return ItemResult(
            status="rejected",
            item_id=item_id,
            trace_id=trace_id,
            reason=exc.message,
            error_code=exc.code,
            error_field=exc.field,
            line_no=line_no,
            key=item_key,
        )

    async def run(
        self, data: Any, *, run_id: str | None = None, line_no: int | None = None
    ) -> ItemResult:
        """Ingest, validate and process one input; never raises for anything but cancellation."""
        result, validated = self.admit(data, run_id=run_id, line_no=line_no)
        if validated is None:
            return result
        return await self._process(result, validated, run_id=run_id, attempts=1)

    def admit(
        self, data: Any, *, run_id: str | None = None, line_no: int | None = None
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        """Everything ``run`` does before a model sees the input: ingest, validate, add the item.

        Returns the item and its validated input, or ``None`` for the input when the item
        has already ended (rejected, or sent to review as flagged). The batch path admits a
        whole file this way before it submits anything, so both paths make the same rows.
        """
        key = self.key_for(data)
        ingest_report: dict[str, Any] | None = None
        route: str | None = None
        flagged: str | None = None
        if self.ingestor is not None:
            ingested = self.ingestor.ingest(
                data if isinstance(data, dict | str | bytes) else _canonical(data)
            )
            ingest_report = ingested.to_dict()
            if not ingested.accepted:
                assert ingested.rejection is not None
                rejection = ingested.rejection
                return self.reject(
                    InputRejected(rejection.code, rejection.message, rejection.field),
                    raw=_canonical(data),
                    data=data,
                    run_id=run_id,
                    line_no=line_no,
                    key=key,
                    ingest=ingest_report,
                ), None
            data = ingested.fields if ingested.fields is not None else {"text": ingested.text}
            route = ingested.route.route if ingested.route is not None else None
            if ingested.action == "review":
                flagged = _flag_summary(ingest_report)
        try:
            validated = validate_input(data, self.config.input)
        except InputRejected as exc:
            return self.reject(
                exc,
                raw=_canonical(data),
                data=data,
                run_id=run_id,
                line_no=line_no,
                key=key,
                ingest=ingest_report,
            ), None
        item_id, trace_id = self.store.add_item(
            pipeline=self.name,
            item_key=key,
            payload_hash=input_hash(_canonical(validated)),
            input=validated,
            run_id=run_id,
            line_no=line_no,
            status="running",
            ingest=ingest_report,
            route=route,
        )
        result = ItemResult(
            status="running", item_id=item_id, trace_id=trace_id, line_no=line_no, key=key
        )
        if flagged is not None:
            # Flagged inputs (injection, hidden text, PII under a review policy) go to a
            # person before any model sees them.
            self._escalate(result, validated, None, "input_flag", f"input flagged: {flagged}")
            self._save(result, attempts=1)
            return result, None
        return result, validated

    async def _process(
        self, result: ItemResult, validated: dict[str, Any], *, run_id: str | None, attempts: int
    ) -> ItemResult:
        assert result.item_id is not None and result.trace_id is not None
        started = time.perf_counter()
        ctx = GenerateContext(
            trace_id=result.trace_id, item_id=result.item_id, run_id=run_id, pipeline=self.name
        )
        try:
            output: Any = None
            variables = dict(validated)
            last_inputs = variables
            for step in self.steps:
                last_inputs = dict(variables)
                output = await self._run_step(step, variables, ctx)
                variables[step.step_name] = output
                variables["previous"] = output
            disagreement = await self._second_opinion(output, last_inputs, ctx, result.key or "")
        except RoadworthyError as exc:
            self._on_failure(result, exc, validated, attempts)
        except Exception as exc:  # a bug must not lose the item
            result.status = "failed"
            result.reason = redact(f"internal error: {type(exc).__name__}: {exc}")
            result.error_code = "internal_error"
        else:
            escalate = disagreement or escalation_reason(
                output, self.config.escalate, result.key or ""
            )
            if escalate is not None:
                self._escalate(result, validated, output, *escalate)
            else:
                result.status, result.output = "done", output
                result.reason = result.error_code = None
        result.latency_ms = (time.perf_counter() - started) * 1000
        self._save(result, attempts=attempts)
        return result

    async def _second_opinion(
        self, output: Any, variables: dict[str, Any], ctx: GenerateContext, key: str
    ) -> tuple[str, str] | None:
        """Ask the configured second model; disagreement on the compared fields escalates.

        A second model that fails gives no opinion rather than failing the item: the first
        answer stands and the other criteria still apply.
        """
        policy = self.config.escalate.second_opinion
        if policy is None or self.second_opinion is None or not sampled(key, policy.rate):
            return None
        try:
            other = await self.second_opinion.run(variables, ctx)
        except RoadworthyError:
            return None
        fields = policy.fields
        if fields and isinstance(output, dict) and isinstance(other, dict):
            differing = [f for f in fields if output.get(f) != other.get(f)]
        else:
            differing = [] if output == other else ["output"]
        if not differing:
            return None
        detail = ", ".join(
            f"{f}: {output.get(f)!r} vs {other.get(f)!r}"
            if isinstance(output, dict) and isinstance(other, dict)
            else f"{f} differs"
            for f in differing
        )
        return "disagreement", f"{policy.model} disagrees ({detail})"

    async def _run_step(self, step: Step, variables: dict[str, Any], ctx: GenerateContext) -> Any:
        """Run a step once, or once per element of its ``for_each`` list (map)."""
        for_each = getattr(getattr(step, "step", None), "for_each", None)
        if for_each is None:
            return await step.run(variables, ctx)
        elements = variables.get(for_each)
        if not isinstance(elements, list):
            raise InputRejected(
                "wrong_type", f"for_each needs a list in {for_each!r}", field=for_each
            )
        outputs = []
        for index, element in enumerate(elements):
            outputs.append(
                await step.run({**variables, "chunk": element, "chunk_index": index}, ctx)
            )
        return outputs

    def _save(self, result: ItemResult, *, attempts: int) -> None:
        assert result.item_id is not None
        self.store.set_item(
            result.item_id,
            result.status,
            reason=result.reason,
            error_code=result.error_code,
            output=result.output,
            latency_ms=result.latency_ms,
            attempts=attempts,
            next_attempt_at=result.next_attempt_at,
        )

    def _schema(self) -> dict[str, Any] | None:
        last = self.steps[-1] if self.steps else None
        schema = getattr(last, "schema", None)
        return schema if isinstance(schema, dict) else None

    def _on_failure(
        self, result: ItemResult, exc: RoadworthyError, data: dict[str, Any], attempts: int
    ) -> None:
        """Try the pipeline's failure paths in order; the first that applies decides."""
        for path in self.config.on_failure:
            if path == "partial":
                outcome = partial_outcome(exc, self._schema())
            elif path == "rules":
                outcome = rules_outcome(exc, data, self.config.fallback_rules)
            elif path == "defer":
                outcome = defer_outcome(exc, attempts, self.config.defer, self.clock())
            else:
                self._escalate(
                    result,
                    data,
                    None,
                    _error_code(exc),
                    f"model steps failed ({exc.error_class}): {redact(str(exc))[:300]}",
                )
                return
            if outcome is not None:
                result.status = outcome.status
                result.reason = redact(outcome.reason)
                result.error_code = outcome.code
                result.output = outcome.output
                result.missing = outcome.missing
                result.next_attempt_at = outcome.next_attempt_at
                return
        result.status = "failed"
        result.reason = redact(str(exc))
        result.error_code = _error_code(exc)
        result.output = None

    def _escalate(
        self, result: ItemResult, data: dict[str, Any], output: Any, code: str, reason: str
    ) -> None:
        if self.review is None:
            raise RuntimeError("escalation needs a review queue")
        result.review_id = self.review.enqueue(
            pipeline=self.name,
            item_id=result.item_id,
            trace_id=result.trace_id,
            reason=reason,
            reason_code=code,
            input=data,
            output=output,
            context={"line": result.line_no, "key": result.key},
        )
        result.status, result.reason, result.error_code = "escalated", reason, code
        result.output = output

    async def retry_deferred(self, *, limit: int = 100) -> list[ItemResult]:
        """Run deferred items whose time has come; each ends done or takes its next path."""
        results = []
        for row in self.store.due_deferred(self.name, self.clock(), limit):
            if not self.store.claim_deferred(row["id"]):
                continue  # another worker took it
            result = ItemResult(
                status="running",
                item_id=row["id"],
                trace_id=row["trace_id"],
                line_no=row["line_no"],
                key=row["item_key"],
            )
            results.append(
                await self._process(
                    result, row["input"], run_id=row["run_id"], attempts=int(row["attempts"]) + 1
                )
            )
        return results


def _flag_summary(report: dict[str, Any]) -> str:
    screen = report.get("screen") or {}
    flags = screen.get("flags") if isinstance(screen, dict) else None
    if isinstance(flags, list) and flags:
        kinds = sorted({str(f.get("kind", f)) if isinstance(f, dict) else str(f) for f in flags})
        return ", ".join(kinds)
    return "screen asked for review"
