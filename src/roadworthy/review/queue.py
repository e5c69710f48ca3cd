"""The human review queue: escalated items, leases, resolutions, and export to datasets.

Claims are conditional updates (``... WHERE status = 'pending' OR lease expired``), so two
reviewers in two processes can never both hold an item: the database decides, once. An
expired lease makes the item claimable again without a sweeper process. Resolving writes
the review row and the item's final status in one transaction, so the item never shows
"resolved in review" but "escalated" in the items table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from ..errors import ConfigError
from ..store import Store
from ..store.store import now, percentile
from ..store.tables import items, review_items

__all__ = ["Decision", "QueueStats", "ReviewItem", "ReviewQueue"]

Decision = Literal["approve", "edit", "reject"]
_CLAIMABLE_STATUSES = ("pending", "claimed")


@dataclass(frozen=True)
class ReviewItem:
    id: str
    item_id: str | None
    pipeline: str
    trace_id: str | None
    reason: str
    reason_code: str
    input: Any
    output: Any
    context: Any
    status: str
    claimed_by: str | None
    lease_expires_at: datetime | None
    decision: str | None
    final_output: Any
    reviewer: str | None
    note: str | None
    created_at: datetime
    resolved_at: datetime | None

    def effective_status(self, at: datetime) -> str:
        """``claimed`` rows whose lease ran out are pending again."""
        expired = self.lease_expires_at is not None and _aware(self.lease_expires_at) <= at
        return "pending" if self.status == "claimed" and expired else self.status


@dataclass(frozen=True)
class QueueStats:
    pending: int
    claimed: int
    resolved: int
    discarded: int
    oldest_pending_age_s: float | None
    median_resolution_s: float | None
    p95_resolution_s: float | None


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything roadworthy writes is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _row(row: Any) -> ReviewItem:
    data = dict(row._mapping)
    for key in ("lease_expires_at", "created_at", "resolved_at"):
        if data[key] is not None:
            data[key] = _aware(data[key])
    return ReviewItem(**data)


class ReviewQueue:
    def __init__(self, store: Store, *, clock: Callable[[], datetime] = now) -> None:
        self.store = store
        self.clock = clock

    def enqueue(
        self,
        *,
        pipeline: str,
        reason: str,
        reason_code: str,
        item_id: str | None = None,
        trace_id: str | None = None,
        input: Any = None,
        output: Any = None,
        context: Any = None,
    ) -> str:
        review_id = str(uuid.uuid4())
        with self.store.engine.begin() as conn:
            conn.execute(
                review_items.insert().values(
                    id=review_id,
                    item_id=item_id,
                    pipeline=pipeline,
                    trace_id=trace_id,
                    reason=reason,
                    reason_code=reason_code,
                    input=input,
                    output=output,
                    context=context,
                    status="pending",
                    created_at=self.clock(),
                )
            )
        return review_id

    def get(self, review_id: str) -> ReviewItem | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                review_items.select().where(review_items.c.id.startswith(review_id))
            ).first()
        return _row(row) if row else None

    def list(
        self, *, status: str | None = "pending", pipeline: str | None = None, limit: int = 50
    ) -> list[ReviewItem]:
        """Items by effective status (an expired claim lists as pending), oldest first."""
        query = review_items.select().order_by(review_items.c.created_at).limit(limit * 4)
        if pipeline is not None:
            query = query.where(review_items.c.pipeline == pipeline)
        if status in ("pending", "claimed"):
            query = query.where(review_items.c.status.in_(_CLAIMABLE_STATUSES))
        elif status is not None:
            query = query.where(review_items.c.status == status)
        at = self.clock()
        with self.store.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query)]
        if status is not None:
            rows = [r for r in rows if r.effective_status(at) == status]
        return rows[:limit]

    def claim(
        self, reviewer: str, *, review_id: str | None = None, lease_s: float = 900.0
    ) -> ReviewItem | None:
        """Claim one item (the oldest claimable, or ``review_id``); None when none is free."""
        at = self.clock()
        candidates = (
            [self._full_id(review_id)]
            if review_id
            else [r.id for r in self.list(status="pending", limit=20)]
        )
        for candidate in candidates:
            with self.store.engine.begin() as conn:
                result = conn.execute(
                    review_items.update()
                    .where(
                        review_items.c.id == candidate,
                        sa.or_(
                            review_items.c.status == "pending",
                            sa.and_(
                                review_items.c.status == "claimed",
                                review_items.c.lease_expires_at <= at,
                            ),
                        ),
                    )
                    .values(
                        status="claimed",
                        claimed_by=reviewer,
                        lease_expires_at=at + timedelta(seconds=lease_s),
                    )
                )
            if result.rowcount == 1:
                return self.get(candidate)
        return None

    def _full_id(self, review_id: str) -> str:
        found = self.get(review_id)
        if found is None:
            raise ConfigError(f"no review item {review_id!r}")
        return found.id

    def resolve(
        self,
        review_id: str,
        *,
        reviewer: str,
        decision: Decision,
        output: Any = None,
        note: str | None = None,
    ) -> ReviewItem:
        """Record the decision and end the underlying item accordingly.

        approve: the model's output becomes the result; edit: ``output`` does; reject: the
        item ends rejected with the reviewer's note. Only the reviewer holding a live lease
        may resolve, so a late reviewer cannot overwrite a colleague's decision.
        """
        current = self.get(review_id)
        if current is None:
            raise ConfigError(f"no review item {review_id!r}")
        at = self.clock()
        if current.effective_status(at) != "claimed" or current.claimed_by != reviewer:
            raise ConfigError(
                f"review item {current.id[:8]} is {current.effective_status(at)}"
                + (f" by {current.claimed_by}" if current.claimed_by else "")
                + f"; claim it first (roadworthy review claim {current.id[:8]})"
            )
        if decision == "edit" and output is None:
            raise ConfigError("an edit needs the corrected output")
        final = current.output if decision == "approve" else output if decision == "edit" else None
        with self.store.engine.begin() as conn:
            updated = conn.execute(
                review_items.update()
                .where(
                    review_items.c.id == current.id,
                    review_items.c.status == "claimed",
                    review_items.c.claimed_by == reviewer,
                )
                .values(
                    status="resolved",
                    decision=decision,
                    final_output=final,
                    reviewer=reviewer,
                    note=note,
                    resolved_at=at,
                )
            )
            if updated.rowcount != 1:
                raise ConfigError(f"review item {current.id[:8]} changed hands; claim it again")
            if current.item_id is not None:
                if decision == "reject":
                    values: dict[str, Any] = {
                        "status": "rejected",
                        "reason": f"rejected in review by {reviewer}"
                        + (f": {note}" if note else ""),
                        "error_code": "review_rejected",
                    }
                else:
                    values = {
                        "status": "done",
                        "output": final,
                        "reason": f"human-reviewed ({decision}) by {reviewer}",
                        "error_code": None,
                    }
                conn.execute(
                    items.update()
                    .where(items.c.id == current.item_id)
                    .values(**values, reviewed_by=reviewer, updated_at=at)
                )
        resolved = self.get(current.id)
        assert resolved is not None
        return resolved

    def discard(self, review_id: str, *, reviewer: str, note: str) -> ReviewItem:
        current = self.get(review_id)
        if current is None:
            raise ConfigError(f"no review item {review_id!r}")
        at = self.clock()
        with self.store.engine.begin() as conn:
            conn.execute(
                review_items.update()
                .where(review_items.c.id == current.id)
                .values(status="discarded", reviewer=reviewer, note=note, resolved_at=at)
            )
            if current.item_id is not None:
                conn.execute(
                    items.update()
                    .where(items.c.id == current.item_id)
                    .values(
                        status="failed",
                        reason=f"discarded in review by {reviewer}: {note}",
                        error_code="review_discarded",
                        updated_at=at,
                    )
                )
        discarded = self.get(current.id)
        assert discarded is not None
        return discarded

    def stats(self, pipeline: str | None = None) -> QueueStats:
        at = self.clock()
        query = review_items.select()
        if pipeline is not None:
            query = query.where(review_items.c.pipeline == pipeline)
        with self.store.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query)]
        by_status: dict[str, int] = {}
        for r in rows:
            key = r.effective_status(at)
            by_status[key] = by_status.get(key, 0) + 1
        pending = [r for r in rows if r.effective_status(at) == "pending"]
        oldest = min((r.created_at for r in pending), default=None)
        durations = [
            (r.resolved_at - r.created_at).total_seconds()
            for r in rows
            if r.status == "resolved" and r.resolved_at is not None
        ]
        return QueueStats(
            pending=by_status.get("pending", 0),
            claimed=by_status.get("claimed", 0),
            resolved=by_status.get("resolved", 0),
            discarded=by_status.get("discarded", 0),
            oldest_pending_age_s=(at - oldest).total_seconds() if oldest else None,
            median_resolution_s=percentile(durations, 0.5),
            p95_resolution_s=percentile(durations, 0.95),
        )

    def export(self, path: Path, *, pipeline: str | None = None) -> int:
        """Append resolved approve/edit items to a JSONL evaluation dataset; returns the count.

        Each line is an example: the input variables, the human-corrected output as the
        expected output, and the escalation reason as tags, so every correction grows the
        evaluation set. Examples already in the file (same id) are not written twice.
        """
        existing: set[str] = set()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    existing.add(str(json.loads(line).get("id")))
        written = 0
        with path.open("a", encoding="utf-8") as handle:
            for item in self.list(status="resolved", pipeline=pipeline, limit=100_000):
                if item.decision not in ("approve", "edit"):
                    continue
                example_id = f"review-{item.id[:12]}"
                if example_id in existing:
                    continue
                example = {
                    "id": example_id,
                    "vars": item.input,
                    "expected": item.final_output,
                    "tags": ["from-review", item.reason_code, f"decision:{item.decision}"],
                    "metadata": {
                        "reason": item.reason,
                        "reviewer": item.reviewer,
                        "note": item.note,
                        "trace_id": item.trace_id,
                    },
                }
                handle.write(json.dumps(example, ensure_ascii=False, default=str) + "\n")
                written += 1
        return written
