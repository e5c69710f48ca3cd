"""The call ledger's group-commit writer: a caller hears "done" only after its row committed.

No test here measures time: the crash test kills a real process at an arbitrary point and
checks that every call it acknowledged is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from roadworthy.models import Recorded
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord, Store
from roadworthy.store.writer import CallWriter


def record(trace_id: str) -> CallRecord:
    return CallRecord(trace_id=trace_id, provider="p", model="m", latency_ms=1.0, status="ok")


def committed(db: Path) -> set[str]:
    """Trace ids visible to another connection, i.e. committed."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT trace_id FROM calls")}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


async def test_arecord_returns_only_after_its_row_is_committed(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
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
    writer = CallWriter(store)
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
    writer = CallWriter(store)

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


async def test_a_cancelled_caller_still_gets_its_call_recorded(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store)
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


async def test_recorded_returns_the_completion_after_the_ledger_row_committed(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, group_commit=True)
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


def test_writer_killed_with_a_queue_loses_no_acknowledged_record(db: Path) -> None:
    """SIGKILL a process mid-stream: every call it acknowledged is in the database.

    The child records calls from 32 concurrent tasks, forever, through a writer slowed
    down so its queue is never empty; it prints ``Q id`` before queueing a record and
    ``A id`` once ``arecord`` returned (the point where a service would answer).
    """
    Store.open(f"sqlite:///{db}").close()
    child = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from roadworthy.store import CallRecord, Store
        from roadworthy.store.writer import CallWriter

        writer = CallWriter(Store.open({f"sqlite:///{db}"!r}))
        write = writer.write

        def slow(records):
            time.sleep(0.002)
            write(records)

        writer.write = slow

        async def producer(n):
            i = 0
            while True:
                trace = f"{{n}}-{{i}}"
                i += 1
                print("Q", trace, flush=True)
                await writer.arecord(
                    CallRecord(trace_id=trace, provider="p", model="m", latency_ms=1.0,
                               status="ok"))
                print("A", trace, flush=True)

        async def main():
            await asyncio.gather(*(producer(n) for n in range(32)))

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    queued: set[str] = set()
    acked: set[str] = set()
    try:
        for line in proc.stdout:
            kind, trace = line.split()
            (acked if kind == "A" else queued).add(trace)
            if len(acked) >= 300:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"child exited early with {proc.wait()}")
        rest = proc.stdout.read()  # lines printed before the kill landed
    finally:
        proc.kill()
        proc.wait()
    for line in rest.splitlines():
        kind, trace = line.split()
        (acked if kind == "A" else queued).add(trace)
    rows = committed(db)
    assert acked <= rows, f"acknowledged but lost: {sorted(acked - rows)[:5]}"
    assert queued - acked, "the queue was empty at the kill; the test proved nothing"
