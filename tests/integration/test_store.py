"""The same store tests on SQLite and PostgreSQL, migrations applied from empty."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from roadworthy.store import CallRecord, Store
from roadworthy.store.tables import metadata


def test_migrates_from_empty_to_head(store_url: str) -> None:
    store = Store.open(store_url, migrate=False)
    assert store.current_revision() is None
    store.migrate()
    assert store.current_revision() == Store.head_revision()
    store.migrate()  # a second process opening the store finds nothing to do
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"runs", "items", "calls", "alembic_version"} <= names
    store.close()


def test_migrations_match_table_definitions(store_url: str) -> None:
    store = Store.open(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert diff == []


def test_item_lifecycle_and_summary(store_url: str) -> None:
    store = Store.open(store_url)
    run_id = store.start_run("triage", "in.jsonl", {"concurrency": 2})
    ids = []
    for n in range(4):
        item_id, trace_id = store.add_item(
            pipeline="triage",
            item_key=f"id:{n}",
            payload_hash="0" * 64,
            input={"text": f"t{n} ünïcödé 🚀"},
            run_id=run_id,
            line_no=n + 1,
            status="running",
        )
        ids.append(item_id)
        store.record_call(
            CallRecord(
                trace_id=trace_id,
                item_id=item_id,
                run_id=run_id,
                provider="p",
                model="m",
                latency_ms=10.0 * (n + 1),
                status="ok",
                input_tokens=100,
                output_tokens=10,
                cached_read_tokens=5,
                cost_usd=Decimal("0.0001234567") if n != 3 else None,
            )
        )
    for n, item_id in enumerate(ids[:3]):
        store.set_item(item_id, "done", output={"n": n}, latency_ms=float(10 * (n + 1)))
    store.set_item(
        ids[3], "failed", reason="upstream 500", error_code="ProviderUnavailable", latency_ms=40.0
    )
    with pytest.raises(ValueError, match="needs a reason"):
        store.set_item(ids[3], "failed")
    store.finish_run(run_id, "finished")

    summary = store.run_summary(run_id)
    assert summary.items_by_status == {"done": 3, "failed": 1}
    assert (summary.calls, summary.input_tokens, summary.output_tokens) == (4, 400, 40)
    assert summary.cached_read_tokens == 20
    assert summary.cost_usd == Decimal("0.0003703701")
    assert summary.calls_without_cost == 1
    assert summary.p50_ms == pytest.approx(25.0) and summary.p95_ms == pytest.approx(38.5)
    assert store.get_item(ids[0])["input"] == {"text": "t0 ünïcödé 🚀"}  # type: ignore[index]
    assert store.finished_item("triage", "id:1")["id"] == ids[1]  # type: ignore[index]
    assert store.finished_item("triage", "id:3") is None
    store.close()


def test_fail_unfinished_ends_every_open_item(store_url: str) -> None:
    store = Store.open(store_url)
    run_id = store.start_run("triage", None, {})
    for status in ("pending", "running", "done"):
        store.add_item(
            pipeline="triage",
            item_key=status,
            payload_hash="1" * 64,
            input={},
            run_id=run_id,
            status=status,
        )
    assert store.fail_unfinished(run_id=run_id, reason="interrupted") == 2
    rows = store.items_for_run(run_id)
    assert sorted(r["status"] for r in rows) == ["done", "failed", "failed"]
    store.close()
