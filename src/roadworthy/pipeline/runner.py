"""Run one item through a pipeline, ending it in a recorded status.

The contract of :meth:`Pipeline.run` is the project's first rule: whatever happens, the
item's row ends in ``done``, ``rejected`` or ``failed`` with a reason, and the result
returned says the same. Only cancellation (Ctrl-C) escapes, and the batch runner ends
those items itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..config.model import PipelineConfig
from ..errors import InputRejected, OutputInvalid, RoadworthyError
from ..secrets import redact
from ..store import Store, input_hash
from .generate import GenerateContext, GenerateRunner
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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.line_no is not None:
            out["line"] = self.line_no
        if self.item_id is not None:
            out["item_id"] = self.item_id
        if self.status == "done":
            out["output"] = self.output
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


class Pipeline:
    """A configured pipeline with its steps bound to live providers and a store."""

    def __init__(
        self, name: str, config: PipelineConfig, steps: list[GenerateRunner], store: Store
    ) -> None:
        self.name = name
        self.config = config
        self.steps = steps
        self.store = store

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
        """Validate and process one input; never raises for anything but cancellation."""
        key = self.key_for(data)
        try:
            validated = validate_input(data, self.config.input)
        except InputRejected as exc:
            return self.reject(
                exc, raw=_canonical(data), data=data, run_id=run_id, line_no=line_no, key=key
            )
        item_id, trace_id = self.store.add_item(
            pipeline=self.name,
            item_key=key,
            payload_hash=input_hash(_canonical(validated)),
            input=validated,
            run_id=run_id,
            line_no=line_no,
            status="running",
        )
        started = time.perf_counter()
        ctx = GenerateContext(trace_id=trace_id, item_id=item_id, run_id=run_id, pipeline=self.name)
        result = ItemResult(
            status="running", item_id=item_id, trace_id=trace_id, line_no=line_no, key=key
        )
        try:
            output: Any = None
            variables = dict(validated)
            for step in self.steps:
                output = await step.run(variables, ctx)
                variables[step.step_name] = output
                variables["previous"] = output
            result.status, result.output = "done", output
        except RoadworthyError as exc:
            result.status = "failed"
            result.reason = redact(str(exc))
            result.error_code = _error_code(exc)
        except Exception as exc:  # a bug must not lose the item
            result.status = "failed"
            result.reason = redact(f"internal error: {type(exc).__name__}: {exc}")
            result.error_code = "internal_error"
        result.latency_ms = (time.perf_counter() - started) * 1000
        self.store.set_item(
            item_id,
            result.status,
            reason=result.reason,
            error_code=result.error_code,
            output=result.output,
            latency_ms=result.latency_ms,
        )
        return result
