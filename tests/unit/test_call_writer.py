"""The call ledger's group-commit writer: a caller hears "done" only after its row committed.

No test here measures time: the crash test kills a real process at an arbitrary point and
checks that every call it acknowledged is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from roadworthy.models import Recorded
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord, Store
from roadworthy.store import writer as writer_module
from roadworthy.store.writer import CallWriter

from ..conftest import record_until_killed

# Both ways a batch commits: in the event loop (a SQLite file, the lock free) and on the
# writer thread (PostgreSQL, or a SQLite write lock held elsewhere).
PATHS = pytest.mark.parametrize("inline", [True, False], ids=["in-loop", "thread"])


def record(trace_id: str) -> CallRecord:
    return CallRecord(trace_id=trace_id, provider="p", model="m", latency_ms=1.0, status="ok")


def committed(db: Path) -> set[str]:
    """Trace ids visible to another connection, i.e. committed."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT trace_id FROM calls")}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@PATHS
async def test_arecord_returns_only_after_its_row_is_committed(db: Path, inline: bool) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, inline=inline)
    seen_uncommitted: list[str] = []

    async def call(i: int) -> None:
        trace = f"t{i}"
        await writer.arecord(record(trace))
        if trace not in committed(db):
            seen_uncommitted.append(trace)

    await asyncio.gather(*(call(i) for i in range(200)))
    assert seen_uncommitted == []
    assert len(committed(db)) == 200
    writer.close()
    store.close()


async def test_concurrent_records_share_transactions(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, inline=False)
    batches: list[int] = []
    write = writer.write

    def counting(records: list[CallRecord]) -> None:
        batches.append(len(records))
        write(records)

    writer.write = counting  # type: ignore[method-assign]
    await asyncio.gather(*(writer.arecord(record(f"t{i}")) for i in range(100)))
    assert sum(batches) == 100
    assert len(batches) < 100  # queued while a batch committed, written together
    writer.close()
    store.close()


async def test_a_failed_commit_fails_every_caller_of_its_batch(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, inline=False)

    def broken(records: list[CallRecord]) -> None:
        raise RuntimeError("disk full")

    writer.write = broken  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(writer.arecord(record(f"t{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    writer.write = CallWriter.write.__get__(writer)  # type: ignore[method-assign]
    await writer.arecord(record("after"))  # the writer carries on after a failed batch
    assert committed(db) == {"after"}
    writer.close()
    store.close()


@PATHS
async def test_a_cancelled_caller_still_gets_its_call_recorded(db: Path, inline: bool) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, inline=inline)
    task = asyncio.create_task(writer.arecord(record("cancelled")))
    await asyncio.sleep(0)  # queued
    task.cancel()
    await writer.arecord(record("next"))
    assert committed(db) == {"cancelled", "next"}
    writer.close()
    store.close()


def test_sync_call_writes_at_once(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
    writer(record("sync"))
    assert committed(db) == {"sync"}
    writer.close()
    store.close()


@PATHS
async def test_recorded_returns_the_completion_after_the_ledger_row_committed(
    db: Path, inline: bool
) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, group_commit=True, inline=inline)
    model = Recorded(
        ScriptedProvider([Reply(text="hi")], name="p"),
        model_name="m",
        model_id="m-1",
        recorder=writer,
    )
    request = CompletionRequest(messages=(Message("user", "hello"),), model="m")
    completions = await asyncio.gather(*(model.complete(request) for _ in range(20)))
    assert [c.text for c in completions] == ["hi"] * 20
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM calls WHERE model = 'm-1'").fetchone()[0] == 20
    writer.close()
    store.close()


@PATHS
def test_writer_killed_with_a_queue_loses_no_acknowledged_record(db: Path, inline: bool) -> None:
    """SIGKILL a process mid-stream: every call it acknowledged is in the database.

    The child records calls from 32 concurrent tasks, forever, through a writer slowed
    down so its queue is never empty; it prints ``Q id`` before queueing a record and
    ``A id`` once ``arecord`` returned (the point where a service would answer).
    """
    Store.open(f"sqlite:///{db}").close()
    setup = f"""
        import time
        from roadworthy.store import Store
        from roadworthy.store import writer as module
        from roadworthy.store.writer import CallWriter

        writer = CallWriter(Store.open({f"sqlite:///{db}"!r}), inline={inline!r})
        write = writer.write
        write_inline = module._InlineSqlite.write

        def slow(records):
            time.sleep(0.002)
            write(records)

        def slow_inline(self, records):
            time.sleep(0.002)
            write_inline(self, records)

        writer.write = slow
        module._InlineSqlite.write = slow_inline
        """
    queued, acked = record_until_killed(setup, producers=32, kill_after=300)
    rows = committed(db)
    assert acked <= rows, f"acknowledged but lost: {sorted(acked - rows)[:5]}"
    assert queued - acked, "the queue was empty at the kill; the test proved nothing"


async def test_calls_finishing_together_commit_in_one_loop_transaction(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
    batches: list[int] = []
    write = writer_module._InlineSqlite.write

    def counting(self: writer_module._InlineSqlite, records: list[CallRecord]) -> None:
        batches.append(len(records))
        write(self, records)

    def thread_write(records: list[CallRecord]) -> None:
        raise AssertionError("an uncontended SQLite batch must not go to the thread")

    monkeypatch.setattr(writer_module._InlineSqlite, "write", counting)
    writer.write = thread_write  # type: ignore[method-assign]
    await asyncio.gather(*(writer.arecord(record(f"t{i}")) for i in range(100)))
    assert batches == [100]  # all queued in one loop iteration: one transaction
    await writer.arecord(record("alone"))
    assert batches == [100, 1]
    assert len(committed(db)) == 101
    writer.close()
    store.close()


async def test_a_batch_that_finds_the_write_lock_taken_waits_on_the_thread(db: Path) -> None:
    """Another connection holds the write lock: the loop is not blocked, the row waits."""
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(writer.arecord(record("waits")))
        for _ in range(20):
            await asyncio.sleep(0.01)  # the loop keeps running meanwhile
        assert not task.done()
        assert "waits" not in committed(db)
        other.execute("COMMIT")
    await task
    assert committed(db) == {"waits"}
    writer.close()
    store.close()


async def test_a_row_written_in_the_loop_is_the_row_the_store_writes(db: Path) -> None:
    """Same values, same storage classes: the prepared insert binds as SQLAlchemy does."""
    from datetime import UTC, datetime
    from decimal import Decimal

    store = Store.open(f"sqlite:///{db}")
    full = dict(
        provider="openai",
        model="gpt-4o-mini",
        latency_ms=12.5,
        status="ok",
        attempt=2,
        item_id="item",
        model_name="small",
        prompt_version=3,
        input_tokens=10,
        output_tokens=None,
        cost_usd=Decimal("0.0000123456"),
        saved_usd=Decimal("0"),
        created_at=datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=UTC),
        usage_estimated=True,
        cache_similarity=0.93,
        error_message='it\'s \u00e9 \u2028 "quoted"',
    )
    CallWriter(store, inline=False)(CallRecord(trace_id="thread", **full))  # type: ignore[arg-type]
    writer = CallWriter(store)
    await writer.arecord(CallRecord(trace_id="loop", **full))  # type: ignore[arg-type]
    journaling = CallWriter(store, journal=True)  # through the call journal's JSON
    await journaling.arecord(CallRecord(trace_id="journal", **full))  # type: ignore[arg-type]
    journaling.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = {row[1]: row[2:] for row in conn.execute("SELECT * FROM calls")}
        types = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT trace_id, typeof(cost_usd), typeof(created_at), typeof(usage_estimated) "
                "FROM calls"
            )
        }
    assert rows["loop"] == rows["thread"] == rows["journal"]
    assert types["loop"] == types["thread"] == types["journal"]
    writer.close()
    store.close()


async def test_the_loop_connection_leaves_checkpoints_to_the_thread(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
    checkpoints: list[int] = []
    checkpoint = writer.checkpoint

    def counting() -> None:
        # at the lowest priority: a checkpoint must not take the core from the service
        checkpoints.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        checkpoint()

    writer.checkpoint = counting  # type: ignore[method-assign]
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 4)
    loop_writer = None
    for i in range(8):
        await writer.arecord(record(f"t{i}"))
        loop_writer = loop_writer or writer._loops[asyncio.get_running_loop()]
        while loop_writer.checkpointing:  # one at a time; let this one finish
            await asyncio.sleep(0.001)
    writer.close()
    assert checkpoints == [19, 19]  # after the 4th and the 8th commit
    assert len(committed(db)) == 8
    store.close()


@PATHS
async def test_a_failed_insert_raises_the_store_error_on_either_path(
    db: Path, inline: bool
) -> None:
    import sqlalchemy as sa

    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, inline=inline)
    bad = CallRecord(trace_id="t", provider=None, model="m", latency_ms=1.0, status="ok")  # type: ignore[arg-type]
    with pytest.raises(sa.exc.IntegrityError):
        await writer.arecord(bad)
    await writer.arecord(record("after"))
    assert committed(db) == {"after"}
    writer.close()
    store.close()


def test_a_database_not_in_wal_mode_commits_on_the_thread(db: Path) -> None:
    """Where WAL is unavailable (some network filesystems) a commit would block the loop."""
    import sqlalchemy as sa

    Store.open(f"sqlite:///{db}").close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    store = Store(sa.create_engine(f"sqlite:///{db}"))  # no WAL pragma on connect
    writer = CallWriter(store)
    assert writer.inline_connection() is None
    writer(record("thread"))
    assert committed(db) == {"thread"}
    writer.close()
    store.close()


def test_trace_ids_are_ordered_by_time_and_unique() -> None:
    """Ordered ids append to the ledger's trace index instead of dirtying a random page."""
    import time

    from roadworthy.store import new_trace_id

    first = [new_trace_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_trace_id()
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in first)
    assert len(set(first)) == 1000
    assert max(first) < later  # a later millisecond sorts after
