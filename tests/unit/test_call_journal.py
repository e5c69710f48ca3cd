"""The call journal: a row is durable in a file before its caller goes on, in ``calls`` soon
after, and exactly once whatever process dies where.

No test measures time: waits poll for an outcome with a generous bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from roadworthy.store import CallRecord, Store
from roadworthy.store import journal as journal_module
from roadworthy.store import writer as writer_module
from roadworthy.store.journal import journal_dir, recover
from roadworthy.store.writer import CallWriter

from ..conftest import record_until_killed


def record(trace_id: str) -> CallRecord:
    return CallRecord(trace_id=trace_id, provider="p", model="m", latency_ms=1.0, status="ok")


def rows(db: Path) -> list[str]:
    """Trace ids in ``calls`` as another connection sees them, duplicates kept."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT trace_id FROM calls ORDER BY id")]


def marks(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT name, copied_bytes FROM call_journals").fetchall())


def journals(db: Path) -> list[Path]:
    folder = journal_dir(str(db))
    return sorted(folder.glob("*.jsonl")) if folder.exists() else []


def journaled(path: Path) -> list[str]:
    """Trace ids of the rows in a journal file."""
    lines = path.read_bytes().splitlines()
    fields = json.loads(lines[0])["fields"]
    at = fields.index("trace_id")
    return [json.loads(line)[at] for line in lines[1:]]


async def until(check: object, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def watch_copies(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[], None] | None = None
) -> list[tuple[str, int]]:
    """Note each transaction of bound rows (its thread's name, its row count); ``before``
    runs in that thread just before the rows are written."""
    copies: list[tuple[str, int]] = []
    write_values = writer_module._InlineSqlite.write_values

    def watched(
        self: writer_module._InlineSqlite, values: list[list[object]], *args: object
    ) -> None:
        copies.append((threading.current_thread().name, len(values)))
        if before is not None:
            before()
        write_values(self, values, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module._InlineSqlite, "write_values", watched)
    return copies


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


async def test_a_caller_goes_on_once_its_row_is_journaled_and_the_row_follows(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    for i in range(50):  # one at a time: a lightly loaded service
        await writer.arecord(record(f"t{i}"))
    (path,) = journals(db)
    assert sorted(journaled(path)) == sorted(f"t{i}" for i in range(50))  # durable already
    await until(lambda: len(rows(db)) == 50)  # copied in bulk, within COPY_AFTER_S
    assert marks(db) == {path.name: path.stat().st_size}
    writer.close()
    assert sorted(rows(db)) == sorted(f"t{i}" for i in range(50))  # not copied twice
    assert journals(db) == [] and marks(db) == {}
    store.close()


async def test_lone_calls_are_copied_in_few_transactions_off_the_loop(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few: a transaction's fixed cost is shared. Off the loop: a copy in the loop held
    every request that arrived during it."""
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    copies = watch_copies(monkeypatch)
    for i in range(40):  # one at a time, as a lightly loaded service finishes its calls
        await writer.arecord(record(f"t{i}"))
    await until(lambda: len(rows(db)) == 40)
    assert len(copies) < 40 and sum(count for _, count in copies) == 40
    assert all(thread.startswith("rw-checkpoint") for thread, _ in copies)
    writer.close()
    store.close()


async def test_a_backlog_the_background_thread_cannot_copy_is_copied_by_the_loop(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starved copier must not let rows pile up without bound: the loop takes over."""
    monkeypatch.setattr(writer_module, "BACKLOG_BATCHES", 2)
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True, max_batch=8)
    release = threading.Event()
    writer.background.submit(release.wait)  # the background thread never gets to a copy
    try:
        for i in range(40):
            await writer.arecord(record(f"t{i}"))
        assert len(rows(db)) >= 40 - 2 * 8  # at most the backlog bound is left uncopied
    finally:
        release.set()
    await until(lambda: len(rows(db)) == 40)
    writer.close()
    assert sorted(rows(db)) == sorted(f"t{i}" for i in range(40))  # each row once
    store.close()


async def test_calls_finishing_together_commit_at_once_instead(db: Path) -> None:
    """Under load a loop iteration finishes many calls: one commit is cheaper for them."""
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    batch = [f"t{i}" for i in range(writer_module.COMMIT_FROM)]
    await asyncio.gather(*(writer.arecord(record(trace)) for trace in batch))
    assert rows(db) == batch  # committed before the callers went on
    (path,) = journals(db)
    assert journaled(path) == []
    writer.close()
    store.close()


async def test_the_service_stopping_copies_every_row_and_removes_its_journal(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    await writer.arecord(record("last"))
    writer.close_journal()  # what the service's shutdown runs, in its loop
    assert rows(db) == ["last"] and journals(db) == []
    await writer.arecord(record("after"))  # a late call commits directly
    assert rows(db) == ["last", "after"]
    writer.close()
    store.close()


async def test_a_row_the_insert_would_refuse_fails_its_caller_not_the_copy(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    bad = CallRecord(trace_id="t", provider=None, model="m", latency_ms=1.0, status="ok")  # type: ignore[arg-type]
    results = await asyncio.gather(
        writer.arecord(bad), writer.arecord(record("good")), return_exceptions=True
    )
    assert isinstance(results[0], sa.exc.IntegrityError) and results[1] is None
    await until(lambda: rows(db) == ["good"])
    writer.close()
    store.close()


async def test_a_copy_that_finds_the_lock_taken_is_retried_without_blocking(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        await writer.arecord(record("waits"))  # answered: the journal needs no lock
        await asyncio.sleep(journal_module.COPY_AFTER_S * 4)  # copies find the lock taken
        assert journaled(journals(db)[0]) == ["waits"]
        other.execute("COMMIT")
        assert rows(db) == []  # not copied while the lock was held
    await until(lambda: rows(db) == ["waits"])
    assert marks(db) == {journals(db)[0].name: journals(db)[0].stat().st_size}
    writer.close()
    store.close()


def test_recovery_copies_exactly_what_was_not_copied(db: Path) -> None:
    """A journal left by a dead process: rows before its mark are in ``calls`` already,
    a torn last line was never answered for; recovery adds the rest, once."""
    Store.open(f"sqlite:///{db}").close()
    folder = journal_dir(str(db))
    folder.mkdir()
    fields = ["trace_id", "provider", "model", "latency_ms", "status", "attempt",
              "fallback_depth", "cache_outcome", "created_at"]  # fmt: skip

    def line(trace: str) -> bytes:
        values = [trace, "p", "m", 1.0, "ok", 1, 0, "miss", "2026-12-04 10:00:00.000000"]
        return json.dumps(values).encode() + b"\n"

    header = json.dumps({"fields": fields}).encode() + b"\n"
    copied = header + line("a") + line("b")
    path = folder / "999-dead.jsonl"
    path.write_bytes(copied + line("c") + line("d") + b'["e", "p"')
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(journal_module.insert_sql(fields), [json.loads(line(t)) for t in "ab"])
        conn.execute(journal_module.MARK_SQL, (path.name, len(copied)))
    assert recover(str(db)) == 2
    assert rows(db) == ["a", "b", "c", "d"]
    assert not path.exists() and marks(db) == {}
    assert recover(str(db)) == 0


def test_a_journal_whose_process_lives_is_left_to_it(db: Path) -> None:
    Store.open(f"sqlite:///{db}").close()
    folder = journal_dir(str(db))
    folder.mkdir()
    path = folder / "1-live.jsonl"
    path.write_bytes(json.dumps({"fields": ["trace_id"]}).encode() + b'\n["x"]\n')
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert recover(str(db)) == 0
        assert path.exists()


async def test_a_full_journal_is_replaced_once_copied(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "ROTATE_BYTES", 2_000)
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    names: set[str] = set()
    for i in range(30):
        await writer.arecord(record(f"t{i}"))
        names.update(p.name for p in journals(db))
        await until(lambda i=i: len(rows(db)) == i + 1)
    assert len(names) > 1  # rotated at least once
    assert len(journals(db)) == 1 and set(marks(db)) <= {journals(db)[0].name}
    writer.close()
    assert sorted(rows(db)) == sorted(f"t{i}" for i in range(30))
    store.close()


async def test_stopping_while_a_copy_ends_and_rotates_removes_the_new_journal(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy the stop waits for may start a new journal; the stop must remove that one."""
    monkeypatch.setattr(writer_module, "ROTATE_BYTES", 1)  # any copied journal rotates
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name.startswith("rw-checkpoint"):
            started.set()
            release.wait(10)

    watch_copies(monkeypatch, hold)
    await writer.arecord(record("only"))
    await until(started.is_set)  # the background copy is running, not cancellable
    threading.Timer(0.2, release.set).start()
    writer.close_journal()  # waits for that copy, which rotates the journal as it ends
    assert rows(db) == ["only"] and journals(db) == []
    writer.close()
    store.close()


def test_a_copy_that_ends_after_its_loop_closed_leaves_nothing_behind(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run returns while a background copy runs; close() copies what came after."""
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    started = threading.Event()

    def slow() -> None:
        if threading.current_thread().name.startswith("rw-checkpoint"):
            started.set()
            threading.Event().wait(0.3)  # still copying when the loop ends

    watch_copies(monkeypatch, slow)

    async def serve() -> None:
        await writer.arecord(record("first"))
        await until(started.is_set)
        await writer.arecord(record("during"))  # answered: in the journal, not in that copy

    asyncio.run(serve())
    writer.close()
    assert sorted(rows(db)) == ["during", "first"] and journals(db) == []
    store.close()


async def test_a_backlog_behind_another_process_lock_does_not_hold_the_loop(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The loop cannot wait out a lock another process holds: it tries once, then leaves
    the backlog to the thread for CATCH_UP_PAUSE_S instead of trying on every call."""
    monkeypatch.setattr(writer_module, "BACKLOG_BATCHES", 2)
    monkeypatch.setattr(writer_module, "CATCH_UP_PAUSE_S", 3600.0)
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True, max_batch=8)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        for i in range(60):  # far past the bound of 16
            await writer.arecord(record(f"t{i}"))
        tries = [r for r in caplog.records if "in the loop failed" in r.getMessage()]
        assert len(tries) == 1  # one try, not one per call
        other.execute("COMMIT")
    await until(lambda: len(rows(db)) == 60)
    writer.close()
    assert sorted(rows(db)) == sorted(f"t{i}" for i in range(60))
    store.close()


async def test_calls_recorded_after_close_still_reach_the_table(db: Path) -> None:
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    await writer.arecord(record("before"))
    writer.close()
    await writer.arecord(record("late"))  # its copy cannot go to the stopped thread
    await until(lambda: len(rows(db)) == 2)
    assert sorted(rows(db)) == ["before", "late"]
    store.close()


def test_a_killed_service_loses_no_answered_call_and_duplicates_none(db: Path) -> None:
    """SIGKILL a journaling process mid-stream; the next writer on the database recovers.

    The child records calls from 3 tasks forever (fewer than make a commit worth it, and
    copies slowed down, so that rows wait in the journal), printing ``Q id`` before and ``A id`` after each ``arecord``.
    """
    Store.open(f"sqlite:///{db}").close()
    setup = f"""
        import time
        from roadworthy.store import Store
        from roadworthy.store import writer as module
        from roadworthy.store.writer import CallWriter

        writer = CallWriter(Store.open({f"sqlite:///{db}"!r}), journal=True)
        write_values = module._InlineSqlite.write_values

        def slow(self, *args):
            time.sleep(0.005)
            write_values(self, *args)

        module._InlineSqlite.write_values = slow
        """
    _, acked = record_until_killed(setup, producers=3, kill_after=2000)
    before = set(rows(db))
    (left,) = journals(db)
    assert set(journaled(left)) - before, "every row was copied at the kill; proved nothing"
    store = Store.open(f"sqlite:///{db}")
    CallWriter(store).close()  # any writer on the database recovers what the dead one left
    after = rows(db)
    assert acked <= set(after), f"answered but lost: {sorted(acked - set(after))[:5]}"
    assert len(after) == len(set(after)), "a row was copied twice"
    assert journals(db) == [] and marks(db) == {}
    store.close()


def test_two_recoverers_at_once_copy_each_row_once(db: Path) -> None:
    Store.open(f"sqlite:///{db}").close()
    folder = journal_dir(str(db))
    folder.mkdir()
    fields = ["trace_id", "provider", "model", "latency_ms", "status", "attempt",
              "fallback_depth", "cache_outcome", "created_at"]  # fmt: skip
    header = json.dumps({"fields": fields}).encode() + b"\n"
    for n in range(4):
        lines = [json.dumps([f"{n}-{i}", "p", "m", 1.0, "ok", 1, 0, "miss", "2026"]) + "\n"
                 for i in range(500)]  # fmt: skip
        (folder / f"{n}-dead.jsonl").write_bytes(header + "".join(lines).encode())
    script = f"from roadworthy.store.journal import recover; print(recover({str(db)!r}))"
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    counts = [int(p.communicate()[0]) for p in procs]
    assert sum(counts) == 2000
    found = rows(db)
    assert len(found) == len(set(found)) == 2000
    assert os.listdir(folder) == []


def test_a_journal_that_names_other_columns_is_left_alone(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Field names go into the insert's SQL, so only columns of ``calls`` pass."""
    Store.open(f"sqlite:///{db}").close()
    folder = journal_dir(str(db))
    folder.mkdir()
    path = folder / "7-odd.jsonl"
    path.write_bytes(b'{"fields": ["trace_id) VALUES (1); DROP TABLE calls; --"]}\n["x"]\n')
    assert recover(str(db)) == 0
    assert path.exists() and rows(db) == []
    assert "could not be recovered" in caplog.text


async def test_without_a_writable_journal_folder_calls_commit_as_before(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(f"sqlite:///{db}")
    journal_dir(str(db)).write_text("a file where the folder would go")
    writer = CallWriter(store, journal=True)
    await writer.arecord(record("committed"))
    assert rows(db) == ["committed"]  # before the caller went on
    assert "no call journal" in caplog.text
    writer.close()
    store.close()


async def test_a_failed_journal_write_fails_its_callers_and_later_calls_commit(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that stops half-way (a full disk) leaves part of a line: nothing more is
    appended after it; rows journaled before are still copied, later calls commit."""
    store = Store.open(f"sqlite:///{db}")
    writer = CallWriter(store, journal=True)
    await writer.arecord(record("before"))
    append_bytes = journal_module.Journal.append_bytes

    def torn(self: journal_module.Journal, data: bytes) -> None:
        os.write(self._fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.Journal, "append_bytes", torn)
    with pytest.raises(OSError):
        await writer.arecord(record("failed"))
    monkeypatch.setattr(journal_module.Journal, "append_bytes", append_bytes)
    await writer.arecord(record("after"))
    assert "after" in rows(db)  # committed before its caller went on
    await until(lambda: sorted(rows(db)) == ["after", "before"])
    writer.close()
    assert journals(db) == [] and sorted(rows(db)) == ["after", "before"]
    store.close()
