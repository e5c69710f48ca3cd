"""Run one claimed job so that its visible effect happens exactly once.

The queue delivers at least once: a worker can die after its pipeline created the item,
or after the item finished but before the job was marked done, and the job is then
delivered again. The effect a user sees is the item row (and its result), so the rule is
**one item per job**, keyed by the job's place in its batch: ``(batch_id, line_no)``. The
pipeline runs with ``run_id=batch_id, line_no=job.line_no``, and before running, the
executor looks that item up:

* no item: the job never got as far as the pipeline; run it normally;
* an item still ``pending``/``running``: an earlier attempt died mid-run; finish *that*
  item (same id, same trace, attempts counted on) instead of creating a second one;
* a finished item (done, degraded, deferred, escalated, rejected, failed): an earlier
  attempt finished and died before completing the job; complete the job with it.

The lookup cannot miss an item a previous attempt made, because the pipeline writes the
item (with its batch and line) before any model call, and a job is only re-delivered
after its previous holder's lease expired. A worker that is merely slow (not dead) and
overruns its lease can still finish alongside the new holder; both then write the *same*
item row, and only the holder of the current lease token completes the job.
"""

from __future__ import annotations

from typing import Any

from ..pipeline import ItemResult, Pipeline
from ..store.tables import items
from .queue import Job

__all__ = ["execute_job", "item_for_job"]

UNFINISHED = ("pending", "running")


def item_for_job(pipeline: Pipeline, job: Job) -> dict[str, Any] | None:
    """The item an earlier attempt of ``job`` created, if any."""
    with pipeline.store.engine.connect() as conn:
        row = conn.execute(
            items.select()
            .where(items.c.run_id == job.batch_id, items.c.line_no == job.line_no)
            .order_by(items.c.created_at)
            .limit(1)
        ).first()
    return dict(row._mapping) if row is not None else None


async def execute_job(pipeline: Pipeline, job: Job) -> ItemResult:
    """The job's one item, run, finished or found; never creates a second item."""
    existing = item_for_job(pipeline, job)
    if existing is None:
        return await pipeline.run(job.payload, run_id=job.batch_id, line_no=job.line_no)
    result = ItemResult(
        status=existing["status"],
        item_id=existing["id"],
        trace_id=existing["trace_id"],
        output=existing["output"],
        reason=existing["reason"],
        error_code=existing["error_code"],
        line_no=existing["line_no"],
        key=existing["item_key"],
        next_attempt_at=existing["next_attempt_at"],
        resumed=True,
    )
    if existing["status"] not in UNFINISHED:
        return result
    result.status = "running"
    attempts = int(existing["attempts"] or 1) + 1
    ingest = existing.get("ingest")
    if isinstance(ingest, dict) and ingest.get("action") == "review":
        # A flagged input goes to a person before any model sees it, also on a re-run.
        pipeline._escalate(
            result, existing["input"], None, "input_flag", "input flagged (re-delivered job)"
        )
        pipeline._save(result, attempts=attempts)
        return result
    # The same path retry_deferred takes: process the stored, validated input again.
    return await pipeline._process(
        result, existing["input"], run_id=job.batch_id, attempts=attempts
    )
