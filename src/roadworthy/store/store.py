"""One facade over the database, the same for SQLite and PostgreSQL.

Every state change of an item is one short transaction, so a process killed at any point
leaves each item either in its previous status or its next one, never half-written. The
schema is brought to the newest migration the first time a process opens the store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..errors import ConfigError
from .tables import TERMINAL_STATUSES, calls, items, runs

RESUMABLE_SKIP = ("done", "degraded", "escalated", "deferred")

if TYPE_CHECKING:
    from .prompts import PromptStore

__all__ = ["CallRecord", "RunSummary", "Store", "input_hash", "new_trace_id", "now", "percentile"]

_migrate_lock = threading.Lock()


def now() -> datetime:
    return datetime.now(UTC)


def new_trace_id() -> str:
    """32 hex characters (the ledger's width, a W3C trace id's), ordered by time of creation.

    Twelve for the milliseconds since the epoch, twenty random (80 bits). Random ids put
    each ledger row on a random leaf page of ``ix_calls_trace``: a commit of 32 rows
    rewrote ~32 index pages, and every checkpoint copied them (bench/gateway.py measured
    checkpoints of ~30 ms on a 100k-row ledger, competing with the service for its core).
    Ordered ids append at the index's right edge.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def input_hash(payload: bytes | str) -> str:
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


@dataclass
class CallRecord:
    """One model call, as it goes into the ledger. ``cost_usd`` is None when unknown."""

    trace_id: str
    provider: str
    model: str
    latency_ms: float
    status: str
    attempt: int = 1
    item_id: str | None = None
    run_id: str | None = None
    pipeline: str | None = None
    step: str | None = None
    model_name: str | None = None
    tier: str | None = None
    prompt_id: str | None = None
    prompt_version: int | None = None
    prompt_label: str | None = None
    experiment: str | None = None
    arm: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: Decimal | None = None
    ttft_ms: float | None = None
    error_class: str | None = None
    error_message: str | None = None
    fallback_depth: int = 0
    cache_outcome: str = "miss"
    finish_reason: str | None = None
    request_id: str | None = None
    created_at: datetime = field(default_factory=now)
    route: str | None = None
    hop_reason: str | None = None
    saved_usd: Decimal | None = None  # a cache hit: what the call it replaced cost
    cache_similarity: float | None = None  # a semantic hit: cosine similarity of the inputs
    api_key_id: str | None = None  # the service API key the call was made for (its id)
    usage_estimated: bool | None = None  # token counts estimated, not reported upstream


@dataclass
class RunSummary:
    run_id: str
    pipeline: str
    status: str
    items_by_status: dict[str, int]
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cached_read_tokens: int
    cost_usd: Decimal | None
    calls_without_cost: int
    p50_ms: float | None
    p95_ms: float | None


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    location = resources.files("roadworthy.store").joinpath("migrations")
    cfg.set_main_option("script_location", str(location))
    return cfg


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method) without needing numpy."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class Store:
    """Tables for runs, items and calls behind methods that say what they mean."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @property
    def prompts(self) -> PromptStore:
        """Prompt versions, labels and their audit trail."""
        from .prompts import PromptStore

        return PromptStore(self.engine)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql://...``) and migrate."""
        if url.startswith("sqlite"):
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        elif url.startswith(("postgresql", "postgres")):
            if url.startswith("postgres://"):
                url = "postgresql://" + url[len("postgres://") :]
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "a PostgreSQL store needs the [postgres] extra: "
                    "pip install 'roadworthy[postgres]'"
                ) from None
            engine = sa.create_engine(url, pool_pre_ping=True)
        else:
            raise ConfigError(
                f"storage URL must start with sqlite:/// or postgresql://, got {url.split(':')[0]!r}"
            )
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply every pending migration (idempotent; safe from several processes)."""
        with _migrate_lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7355608)"))
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    # -- runs -------------------------------------------------------------------------

    def start_run(self, pipeline: str, source: str | None, options: dict[str, Any]) -> str:
        run_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    pipeline=pipeline,
                    source=source,
                    status="running",
                    options=options,
                    started_at=now(),
                )
            )
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(status=status, finished_at=now())
            )

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().order_by(runs.c.started_at.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    def latest_run_id(self) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(runs.c.id).order_by(runs.c.started_at.desc()).limit(1)
            ).scalar()
            return str(value) if value is not None else None

    # -- items ------------------------------------------------------------------------

    def add_item(
        self,
        *,
        pipeline: str,
        item_key: str,
        payload_hash: str,
        input: Any,
        run_id: str | None = None,
        line_no: int | None = None,
        status: str = "pending",
        reason: str | None = None,
        error_code: str | None = None,
        error_field: str | None = None,
        ingest: Any = None,
        route: str | None = None,
    ) -> tuple[str, str]:
        """Insert an item and return ``(item_id, trace_id)``."""
        item_id = str(uuid.uuid4())
        trace_id = new_trace_id()
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                items.insert().values(
                    id=item_id,
                    run_id=run_id,
                    pipeline=pipeline,
                    item_key=item_key[:200],
                    line_no=line_no,
                    status=status,
                    reason=reason,
                    error_code=error_code,
                    error_field=error_field,
                    input=input,
                    input_hash=payload_hash,
                    trace_id=trace_id,
                    ingest=ingest,
                    route=route,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        return item_id, trace_id

    def set_item(
        self,
        item_id: str,
        status: str,
        *,
        reason: str | None = None,
        error_code: str | None = None,
        output: Any = None,
        latency_ms: float | None = None,
        attempts: int | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        if status in TERMINAL_STATUSES - {"done"} | {"deferred"} and not reason:
            raise ValueError(f"an item that ends {status!r} needs a reason")
        values: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "error_code": error_code,
            "output": output,
            "latency_ms": latency_ms,
            "next_attempt_at": next_attempt_at,
            "updated_at": now(),
        }
        if attempts is not None:
            values["attempts"] = attempts
        with self.engine.begin() as conn:
            conn.execute(items.update().where(items.c.id == item_id).values(**values))

    def due_deferred(self, pipeline: str, at: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Deferred items whose next attempt time has come, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                items.select()
                .where(
                    items.c.pipeline == pipeline,
                    items.c.status == "deferred",
                    items.c.next_attempt_at <= at,
                )
                .order_by(items.c.next_attempt_at)
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    def claim_deferred(self, item_id: str) -> bool:
        """Move a deferred item to running unless another worker got there first."""
        with self.engine.begin() as conn:
            result = conn.execute(
                items.update()
                .where(items.c.id == item_id, items.c.status == "deferred")
                .values(status="running", updated_at=now())
            )
            return bool(result.rowcount)

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(items.select().where(items.c.id == item_id)).first()
            return dict(row._mapping) if row else None

    def finished_item(self, pipeline: str, item_key: str) -> dict[str, Any] | None:
        """The latest item with this key that needs no rerun, for ``--resume``.

        ``done`` and ``degraded`` items have their answer, ``escalated`` ones wait for a
        person and ``deferred`` ones for ``retry-deferred``; running them again would
        duplicate work (and review tickets). Failed and rejected items are run again.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                items.select()
                .where(
                    items.c.pipeline == pipeline,
                    items.c.item_key == item_key[:200],
                    items.c.status.in_(RESUMABLE_SKIP),
                )
                .order_by(items.c.updated_at.desc())
                .limit(1)
            ).first()
            return dict(row._mapping) if row else None

    def fail_unfinished(
        self, *, run_id: str | None = None, pipeline: str | None = None, reason: str
    ) -> int:
        """End every pending/running item of a run (or pipeline) as failed with ``reason``.

        Used on Ctrl-C and before a resume, so no item is left without an ending.
        """
        cond: sa.ColumnElement[bool] = items.c.status.in_(("pending", "running"))
        if run_id is not None:
            cond = sa.and_(cond, items.c.run_id == run_id)
        if pipeline is not None:
            cond = sa.and_(cond, items.c.pipeline == pipeline)
        with self.engine.begin() as conn:
            result = conn.execute(
                items.update()
                .where(cond)
                .values(status="failed", reason=reason, error_code="interrupted", updated_at=now())
            )
            return int(result.rowcount or 0)

    def items_for_run(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                items.select().where(items.c.run_id == run_id).order_by(items.c.line_no)
            )
            return [dict(r._mapping) for r in rows]

    # -- calls ------------------------------------------------------------------------

    def record_call(self, record: CallRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(calls.insert().values(**asdict(record)))

    def list_calls(
        self, *, run_id: str | None = None, trace_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        query = calls.select().order_by(calls.c.id.desc()).limit(limit)
        if run_id is not None:
            query = query.where(calls.c.run_id == run_id)
        if trace_id is not None:
            query = query.where(calls.c.trace_id == trace_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def run_summary(self, run_id: str) -> RunSummary:
        with self.engine.connect() as conn:
            run = conn.execute(runs.select().where(runs.c.id == run_id)).first()
            if run is None:
                raise KeyError(run_id)
            by_status = {
                str(status): int(count)
                for status, count in conn.execute(
                    sa.select(items.c.status, sa.func.count())
                    .where(items.c.run_id == run_id)
                    .group_by(items.c.status)
                )
            }
            latencies = [
                float(v)
                for (v,) in conn.execute(
                    sa.select(items.c.latency_ms).where(
                        items.c.run_id == run_id, items.c.latency_ms.is_not(None)
                    )
                )
            ]
            agg = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(calls.c.status != "ok"),
                    sa.func.coalesce(sa.func.sum(calls.c.input_tokens), 0),
                    sa.func.coalesce(sa.func.sum(calls.c.output_tokens), 0),
                    sa.func.coalesce(sa.func.sum(calls.c.cached_read_tokens), 0),
                    sa.func.sum(calls.c.cost_usd),
                    sa.func.count().filter(
                        calls.c.cost_usd.is_(None), calls.c.cache_outcome == "miss"
                    ),
                ).where(calls.c.run_id == run_id)
            ).one()
        cost = agg[5]
        return RunSummary(
            run_id=run_id,
            pipeline=str(run.pipeline),
            status=str(run.status),
            items_by_status=by_status,
            calls=int(agg[0]),
            failed_calls=int(agg[1]),
            input_tokens=int(agg[2]),
            output_tokens=int(agg[3]),
            cached_read_tokens=int(agg[4]),
            cost_usd=Decimal(str(cost)) if cost is not None else None,
            calls_without_cost=int(agg[6]),
            p50_ms=percentile(latencies, 0.5),
            p95_ms=percentile(latencies, 0.95),
        )

    def iter_table(self, name: str) -> Iterator[dict[str, Any]]:
        table = {"runs": runs, "items": items, "calls": calls}[name]
        with self.engine.connect() as conn:
            for row in conn.execute(table.select()):
                yield dict(row._mapping)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
