"""Group commit for the call ledger: many ``calls`` rows per transaction, none lost.

A service that writes one transaction per model call spends most of a fast call in the
store, and a call that waits for its row holds its answer back for as long. So
:meth:`CallWriter.arecord` shares transactions between the calls that finish together:

* it queues the record and waits until the transaction holding it has **committed**;
  only then does the caller go on (and, in the service, send its answer). So a client is
  never told about a call whose row could still be lost: a crash can only lose records
  of calls nobody was answered for, which is the same guarantee a write per call gives;
* on a SQLite file the rows are committed **in the event loop**, once per loop
  iteration: the first record of an iteration schedules a flush behind the callbacks
  already due, so every call that finished in the same iteration shares its
  transaction, with no timer and no added wait. The insert is a prepared DB-API
  statement on a connection of its own (``busy_timeout`` 0, no automatic checkpoint):
  a commit in WAL mode with ``synchronous=NORMAL`` is a few page writes to the OS, and
  a hand-off to a thread cost more than the write itself -- the loop thread then waits
  for the interpreter lock while the writer thread holds it (bench/gateway.py measured
  about 0.5 ms a call at one connection, and the p99 tail under load);
* anything that would make the loop wait goes to the **writer thread** instead: a batch
  that finds the write lock taken (another process, a CLI command, this process's own
  SQLAlchemy connections) is written there with the store's usual busy timeout, and so
  are WAL checkpoints, which the loop's connection never runs itself. On PostgreSQL,
  where every commit is a network round trip, every batch goes to the thread, and a
  batch there is whatever queued while the previous one committed;
* in journal mode (the service's; :mod:`.journal`) a caller goes on once its row is
  appended to a file, and the rows are copied into ``calls`` in bulk on the
  **background thread** (lowest priority, shared with checkpoints): a copy in the loop
  held every request that arrived during it. A backlog that thread cannot keep up with
  is copied by the loop itself (:data:`BACKLOG_BATCHES`);
* a failed commit fails every call in its batch with the store's error, as a failed
  per-call write did before; the records are not retried behind the callers' backs.

Calling the writer like a function (``writer(record)``, the :data:`Recorder` shape) writes
the record at once in the caller's thread: the path for synchronous code (CLI runs, batch
jobs, the cache wrapper), unchanged from :meth:`Store.record_call`.

Durability is the store's: on SQLite (WAL, ``synchronous=NORMAL``) a committed transaction
survives the process being killed; surviving power loss needs ``synchronous=FULL``. On
PostgreSQL a commit is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import operator
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from .journal import COPY_AFTER_S, MARK_SQL, ROTATE_BYTES, Journal, insert_sql, journal_dir
from .journal import recover as recover_journals
from .store import CallRecord, Store
from .tables import calls

__all__ = ["CallWriter"]

log = logging.getLogger(__name__)

_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))

_Entry = tuple[CallRecord, "asyncio.Future[None]"]

# In-loop commits between two WAL checkpoints (run on the writer thread). A one-row
# commit adds about six pages to the WAL, so this is near SQLite's own default of a
# checkpoint per 1,000 pages.
CHECKPOINT_EVERY = 128

# In journal mode, a loop iteration that finished this many calls or more commits their
# rows at once instead: a commit shared by that many rows costs each less than journaling
# and copying it (measured by bench/gateway.py at full load, where batches hold dozens).
COMMIT_FROM = 4

# Journaled rows per copy transaction when a copy must run in the loop (an explicit flush,
# the last copy at shutdown): one chunk per loop iteration, so requests interleave with
# them. Ordinary copies run on the background thread, up to ``max_batch`` rows each.
COPY_CHUNK = 32

# How long the background copy waits for the write lock before it retries later. It waits
# on its own thread, with the interpreter lock released, so nobody else waits with it.
COPY_BUSY_TIMEOUT_MS = 1_000

# Uncopied rows, in batches of ``max_batch``, beyond which the loop copies them itself. The
# background thread runs at the lowest priority: a loop that keeps the core busy (a load
# above what the core sustains) could starve it, and the rows would pile up in memory and
# the journal without bound. Past this the loop waits briefly for the copy in flight and
# copies down to half itself: the service slows to what its store sustains, as before.
BACKLOG_BATCHES = 8

# How long a copy in the loop (a catch-up, or one the background thread cannot take) waits
# for the background copy in flight before it gives up; it waits for the write lock not at
# all. Another process holding the lock is not something the loop can wait out, so after a
# failed catch-up the loop leaves it to the thread for CATCH_UP_PAUSE_S.
LOOP_COPY_WAIT_S = 0.05
CATCH_UP_PAUSE_S = 1.0


def _row(record: CallRecord) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; the fields are flat, so a getattr per
    # field gives the same dict for a fraction of the cost.
    return {name: getattr(record, name) for name in _FIELDS}


class _Busy(Exception):
    """The write lock is held by another connection: the batch goes to the writer thread."""


class _InlineSqlite:
    """A prepared insert into ``calls`` on a connection of its own, for the loop thread.

    The values are bound exactly as SQLAlchemy binds them on SQLite (its own type
    processors), so a row written here is byte for byte the row the store would write.
    """

    def __init__(self, store: Store, path: str) -> None:
        dialect = store.engine.dialect
        self._fields = operator.attrgetter(*_FIELDS)
        self._bind: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(_FIELDS):
            column_type = calls.c[name].type
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._bind.append((index, process))
        self._sql = insert_sql(_FIELDS)
        self._required = [(i, n) for i, n in enumerate(_FIELDS) if not calls.c[n].nullable]
        # check_same_thread=False only so that close() may come from another thread
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def values(self, record: CallRecord) -> list[Any]:
        values = list(self._fields(record))
        for index, process in self._bind:
            if values[index] is not None:
                values[index] = process(values[index])
        return values

    def check(self, row: list[Any]) -> None:
        """Raise the store's error for a row that the insert would refuse (a NULL).

        A journaled row is answered for before it is inserted, so it must not be one the
        copy would fail on: it would hold back every row behind it.
        """
        for index, name in self._required:
            if row[index] is None:
                error = sqlite3.IntegrityError(f"NOT NULL constraint failed: calls.{name}")
                raise _store_error(self._sql, error)

    def write(self, records: list[CallRecord]) -> None:
        """Commit ``records`` in one transaction now, or raise :class:`_Busy` at once.

        Other failures are raised as SQLAlchemy's exceptions, as the thread's write
        raises them, so callers see the store's errors whichever path a batch took.
        """
        self.write_values([self.values(r) for r in records])

    def write_values(self, rows: list[list[Any]], journal: tuple[str, int] | None = None) -> None:
        """Commit rows already bound (:meth:`values`), and a journal's copied offset."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(self._sql, rows)
                if journal is not None:
                    conn.execute(MARK_SQL, journal)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Busy from exc
            raise _store_error(self._sql, exc) from exc
        except sqlite3.Error as exc:
            raise _store_error(self._sql, exc) from exc

    def forget(self, journal: str) -> None:
        """Drop the copied offset of a journal deleted after its last copy (best effort)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("DELETE FROM call_journals WHERE name = ?", (journal,))

    def wait_for_locks(self, busy_timeout_ms: int) -> None:
        """From now on wait for the write lock (the last copy, when the writer closes)."""
        self._conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

    def in_wal_mode(self) -> bool:
        mode = self._conn.execute("PRAGMA journal_mode").fetchone()
        return mode is not None and str(mode[0]).lower() == "wal"

    def close(self) -> None:
        self._conn.close()


def _store_error(statement: str, error: sqlite3.Error) -> Exception:
    wrapped = sa.exc.DBAPIError.instance(statement, None, error, sqlite3.Error)
    return wrapped if isinstance(wrapped, Exception) else error


class _LoopWriter:
    """The pending records, the inline connection and the thread queue of one event loop."""

    def __init__(self, owner: CallWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.inline = owner.inline_connection()
        self.pending: list[_Entry] = []
        self.queue: asyncio.Queue[list[_Entry]] = asyncio.Queue()
        self.task = loop.create_task(self._run(), name="roadworthy-call-writer")
        self.checkpointing = False
        # journal mode (store/journal.py): rows answered for but not yet in ``calls``
        self.journal: Journal | None = None
        self.journals = journal_dir(owner.database) if owner.database else None
        if owner.journal and self.inline is not None and self.journals is not None:
            try:
                self.journal = Journal(self.journals, _FIELDS)
            except OSError as exc:  # a folder we may not write: commits work without it
                log.warning("no call journal (%s); each call commits its own row", exc)
        self.appending = self.journal is not None  # off after a failed write to it
        self.uncopied: list[tuple[list[Any], int]] = []  # a row, its end in the journal
        self.copy_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        # the background copy: its connection, and the copy in flight with its row count
        self.copier: _InlineSqlite | None = None
        self.copying: tuple[Future[None], int] | None = None
        self.catch_up_after = 0.0  # loop time before which no catch-up is tried again
        self.commits = 0

    def add(self, record: CallRecord) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self.loop.create_future()
        if self.inline is None:
            self.queue.put_nowait([(record, waiter)])
            return waiter
        if not self.pending:
            self.loop.call_soon(self._flush)
        self.pending.append((record, waiter))
        return waiter

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if self.appending and len(batch) < COMMIT_FROM:
            self._journal(batch)
            return
        assert self.inline is not None
        max_batch = self.owner.max_batch
        for start in range(0, len(batch), max_batch):
            part = batch[start : start + max_batch]
            try:
                self.inline.write([record for record, _ in part])
            except _Busy:
                if self.appending:
                    self._journal(part)  # durable at once; the copy waits for the lock
                elif self.task.done():  # the writer was closed: nothing reads the queue
                    _settle(part, RuntimeError("the call writer is closed"))
                else:
                    self.queue.put_nowait(part)
                continue
            except Exception as exc:
                _settle(part, exc)
                continue
            _settle(part, None)
            self._committed()

    def _committed(self) -> None:
        self.commits += 1
        if self.commits % CHECKPOINT_EVERY == 0:
            self._checkpoint()

    def _journal(self, batch: list[_Entry]) -> None:
        """Append the batch's rows to the journal, wake its callers, copy the rows later."""
        assert self.inline is not None and self.journal is not None
        rows: list[list[Any]] = []
        accepted: list[_Entry] = []
        for entry in batch:
            row = self.inline.values(entry[0])
            try:
                self.inline.check(row)
            except Exception as exc:
                _settle([entry], exc)
                continue
            rows.append(row)
            accepted.append(entry)
        try:
            ends = self.journal.append(rows)
        except OSError as exc:
            _settle(accepted, exc)  # not durable: the callers fail as on a failed commit
            # The file may now end in part of a line: append nothing more to it (the rows
            # before are still copied from memory); from here on each call commits.
            self.appending = False
            log.error(
                "call journal %s failed (%s); calls commit their rows", self.journal.path, exc
            )
            return
        _settle(accepted, None)
        self.uncopied.extend(zip(rows, ends, strict=True))
        backlog = BACKLOG_BATCHES * self.owner.max_batch
        if len(self.uncopied) >= backlog:
            self._catch_up(backlog // 2)
        elif len(self.uncopied) >= self.owner.max_batch:
            self._schedule_copy(0.0)
        elif self.copy_handle is None:
            self._schedule_copy(COPY_AFTER_S)

    def _cancel_copy(self) -> None:
        if self.copy_handle is not None:
            self.copy_handle.cancel()
            self.copy_handle = None

    def _schedule_copy(self, delay: float) -> None:
        self._cancel_copy()
        if self.loop.is_closed():
            return  # a copy ending after its loop: the last copy (or recovery) takes the rows
        if delay:
            self.copy_handle = self.loop.call_later(delay, self._copy)
        else:
            self.copy_handle = self.loop.call_soon(self._copy)

    def _copy(self, wait: bool = False) -> None:
        """Commit journaled rows to ``calls``: on the background thread, or now (``wait``).

        An ordinary copy goes to the background thread (lowest priority, the interpreter
        lock released while SQLite works), one transaction of up to ``max_batch`` rows at
        a time, so the loop pays nothing but the hand-off: a copy in the loop had cost
        0.4 ms every few tens of milliseconds, and every request that arrived meanwhile
        waited for it. On a taken lock or a failure the copy is retried later; the rows are
        safe in the journal meanwhile, and a process that dies with rows uncopied leaves
        them to :func:`~.journal.recover`. ``wait``: copy everything now, in the calling
        loop, waiting for the write lock, and raise what a commit raises (an explicit
        flush, or the last copy).
        """
        self._cancel_copy()
        if self.inline is None or self.journal is None:
            return
        if wait:
            self._copy_now()
        elif self.copying is None and self.uncopied:
            self._copy_in_background()

    def _copy_in_background(self) -> None:
        assert self.inline is not None and self.journal is not None
        if self.copier is None:
            try:
                self.copier = self.owner.inline_connection()
            except Exception as exc:
                log.warning("no connection for copying journaled call rows (retried): %s", exc)
                self._schedule_copy(1.0)
                return
            if self.copier is None:  # the database left WAL mode: copy in the loop
                self._copy_here(0)
                return
            self.copier.wait_for_locks(COPY_BUSY_TIMEOUT_MS)
        chunk = self.uncopied[: self.owner.max_batch]
        rows, mark = [row for row, _ in chunk], (self.journal.name, chunk[-1][1])
        try:
            future = self.owner.background.submit(self.copier.write_values, rows, mark)
        except RuntimeError:  # the writer was closed and is used again: copy in the loop
            self._copy_here(0)
            return
        self.copying = (future, len(chunk))
        loop = self.loop

        def done(finished: Future[None]) -> None:  # on the background thread
            with contextlib.suppress(RuntimeError):  # the loop closed; the journal keeps them
                loop.call_soon_threadsafe(self._copied, finished)

        future.add_done_callback(done)

    def _copied(self, future: Future[None]) -> None:
        """The loop's side of a background copy's end (at most once per copy)."""
        if self.copying is None or self.copying[0] is not future:
            return
        count = self.copying[1]
        self.copying = None
        error = future.exception()
        if isinstance(error, _Busy):
            self._schedule_copy(COPY_AFTER_S)
        elif error is not None:
            log.warning("copying journaled call rows failed (retried): %s", error)
            self._schedule_copy(1.0)
        else:
            del self.uncopied[:count]
            self._committed()
            if len(self.uncopied) >= self.owner.max_batch:
                self._schedule_copy(0.0)
            elif self.uncopied:
                # the rows that came during the copy wait for the next round: copying them
                # at once kept the thread copying a few rows at a time, each transaction
                # paying its fixed cost and contending for the interpreter lock
                self._schedule_copy(COPY_AFTER_S)
            else:
                self._rotate()

    def _catch_up(self, down_to: int) -> None:
        """Copy in the loop until at most ``down_to`` rows are left (see BACKLOG_BATCHES)."""
        if self.loop.time() < self.catch_up_after:
            return
        if not self._copy_here(down_to):
            self.catch_up_after = self.loop.time() + CATCH_UP_PAUSE_S

    def _copy_here(self, down_to: int) -> bool:
        """Copy in the loop without holding it long (see LOOP_COPY_WAIT_S); False if not."""
        try:
            self._copy_now(down_to, settle_s=LOOP_COPY_WAIT_S, busy_timeout_ms=0)
        except Exception as exc:  # the rows are in the journal; the copy is retried
            log.warning("copying journaled call rows in the loop failed (retried): %s", exc)
            return False
        return True

    def _copy_now(
        self, down_to: int = 0, *, settle_s: float | None = None, busy_timeout_ms: int | None = None
    ) -> None:
        """Copy journaled rows in this loop, waiting for the write lock; raise failures.

        ``down_to``: stop once that many rows or fewer are left uncopied. ``settle_s``: how
        long to wait for the background copy in flight (None: until it ends, so that no
        copy outlives a stop that releases the journal). ``busy_timeout_ms``: how long to
        wait for the write lock (None: the store's own timeout).
        """
        timeout_ms = self.owner.busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        if self.copying is not None and self.copying[0].cancel():
            self.copying = None  # it had not started (queued behind a checkpoint)
        if self.copying is not None:  # let the copy in flight finish first, whatever it did
            future = self.copying[0]
            with contextlib.suppress(Exception):
                future.result(timeout=settle_s)
            if not future.done():
                raise RuntimeError("the background copy of the call journal is still running")
            self._copied(future)
        # read only now: the copy that just ended may have started a new journal
        assert self.inline is not None and self.journal is not None
        inline, journal = self.inline, self.journal
        inline.wait_for_locks(timeout_ms)
        try:
            while len(self.uncopied) > down_to:
                chunk = self.uncopied[:COPY_CHUNK]
                inline.write_values([row for row, _ in chunk], (journal.name, chunk[-1][1]))
                del self.uncopied[: len(chunk)]
                self._committed()
        except _Busy as exc:
            self._schedule_copy(COPY_AFTER_S)
            raise RuntimeError("the database stayed locked; journaled rows not copied") from exc
        except Exception:
            self._schedule_copy(1.0)
            raise
        finally:
            inline.wait_for_locks(0)
        if self.uncopied:
            self._schedule_copy(COPY_AFTER_S)
        else:
            self._cancel_copy()  # a retry the finished copy asked for
        self._rotate()

    def _rotate(self) -> None:
        """Start a new journal once the current one is large and wholly copied."""
        journal = self.journal
        if journal is None or self.inline is None or self.journals is None:
            return
        if self.uncopied or journal.size < ROTATE_BYTES or not self.appending:
            return
        try:
            self.journal = Journal(self.journals, _FIELDS)
        except OSError as exc:
            log.warning("could not start a new call journal (%s); kept the old one", exc)
            return
        journal.delete()
        self.inline.forget(journal.name)

    def close_journal(self) -> None:
        """Copy what is left (waiting for the write lock if need be) and delete the journal.

        If that fails the journal stays, unlocked, for the next process to recover.
        """
        if self.journal is None or self.inline is None:
            return
        try:
            self._copy(wait=True)
        except Exception as exc:
            journal = self.journal  # read after the copy: one that ended may have rotated it
            log.warning("call journal %s left for recovery: %s", journal.path, exc)
            journal.release()
        else:
            journal = self.journal
            journal.delete()
            self.inline.forget(journal.name)
        finally:
            self.journal = None
            self.appending = False
            self._cancel_copy()

    def close_connections(self) -> None:
        for connection in (self.inline, self.copier):
            if connection is not None:
                connection.close()

    def _checkpoint(self) -> None:
        if self.checkpointing:
            return
        try:
            future = self.loop.run_in_executor(self.owner.background, self.owner.checkpoint)
        except RuntimeError:
            return  # the writer is closing; a later checkpoint copies these rows
        self.checkpointing = True

        def done(finished: asyncio.Future[None]) -> None:
            self.checkpointing = False
            if not finished.cancelled() and finished.exception() is not None:
                # nothing is lost (the rows are in the WAL) and the next checkpoint copies
                # them, so a failure is logged, not raised
                log.warning("WAL checkpoint failed: %s", finished.exception())

        future.add_done_callback(done)

    async def _run(self) -> None:
        """Write on the thread what the loop could not: everything queued, one transaction."""
        queue = self.queue
        while True:
            batch = await queue.get()
            while not queue.empty() and len(batch) < self.owner.max_batch:
                batch.extend(queue.get_nowait())
            records = [record for record, _ in batch]
            try:
                await self.loop.run_in_executor(self.owner.executor, self.owner.write, records)
            except Exception as exc:
                _settle(batch, exc)
            else:
                _settle(batch, None)


def _lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (on Linux, nice applies per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _call_in_loop(
    loop: asyncio.AbstractEventLoop, work: Callable[[], None], timeout: float
) -> None:
    """Run ``work`` in ``loop``'s thread and wait for it: a writer's state belongs to its
    loop. Called from that loop, or with the loop stopped, ``work`` runs right here."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running or not loop.is_running():  # nothing else touches it now
        work()
        return
    done = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            work()
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    loop.call_soon_threadsafe(call)
    if not done.wait(timeout):
        raise TimeoutError(f"the call journal was not copied within {timeout:g} s")
    if failure:
        raise failure[0]


def _settle(batch: list[_Entry], error: Exception | None) -> None:
    for _, waiter in batch:
        if waiter.done():
            continue  # the caller stopped waiting; its row was written all the same
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


class CallWriter:
    """Write ``calls`` rows for :class:`~roadworthy.models.Recorded`, in group commits.

    ``await writer.arecord(record)`` returns once the record's transaction committed;
    ``writer(record)`` writes it synchronously. ``max_batch`` bounds one transaction.

    ``group_commit`` says whether :class:`~roadworthy.models.Recorded` should use
    ``arecord``. The service turns it on (``create_app``); batch runs and workers keep
    the synchronous write, whose timing their cancellation and resume paths were built
    and tested around. ``inline=False`` sends every batch to the writer thread, as on
    PostgreSQL, whatever the store.

    ``journal`` (the service's default, ``server.call_journal``) makes ``arecord`` return
    once the row is appended to a journal file instead of committed; the rows are copied
    into ``calls`` in bulk (:mod:`.journal`). It applies where rows commit in the loop (a
    SQLite file in WAL mode); elsewhere ``arecord`` waits for the commit as before.
    Creating a writer on a SQLite file recovers the journals of processes that ended.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 256,
        group_commit: bool = False,
        inline: bool = True,
        journal: bool = False,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.group_commit = group_commit
        self.inline = inline
        self.journal = journal
        self.busy_timeout_ms = 30_000  # the store's own (store._sqlite_pragmas)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rw-calls")
        # checkpoints and journal copies: nobody waits for them, so they get the core only
        # when the loop leaves it idle (a checkpoint of thousands of pages took ~30 ms of a
        # shared core); one thread, so a copy never waits for a checkpoint's lock
        self.background = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rw-checkpoint", initializer=_lowest_priority
        )
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}
        if self.database:
            recover_journals(self.database, self.busy_timeout_ms)

    @property
    def database(self) -> str | None:
        """The path of the SQLite file behind the store; None for other stores."""
        url = self.store.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return url.database

    def __call__(self, record: CallRecord) -> None:
        self.write([record])

    def write(self, records: list[CallRecord]) -> None:
        """Insert ``records`` in one transaction (committed when this returns)."""
        with self.store.engine.begin() as conn:
            conn.execute(calls.insert(), [_row(r) for r in records])

    def inline_connection(self) -> _InlineSqlite | None:
        """The loop's own connection on a SQLite file; None where commits go to the thread.

        Only in WAL mode: in a rollback-journal mode a commit needs the exclusive lock
        (failing at once while anyone reads) and syncs the file, on the loop.
        """
        database = self.database
        if not self.inline or database is None:
            return None
        inline = _InlineSqlite(self.store, database)
        if not inline.in_wal_mode():
            inline.close()
            return None
        return inline

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking writers (``PASSIVE``)."""
        with self.store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def arecord(self, record: CallRecord) -> None:
        """Queue ``record``; return when the transaction holding it has committed.

        In journal mode: return when its row is in the journal (committed to ``calls``
        about :data:`~.journal.COPY_AFTER_S` later, by the background thread). If the
        caller is cancelled while waiting, the record is still written (the call it
        describes happened); only the wait is abandoned.
        """
        loop = asyncio.get_running_loop()
        writer = self._loops.get(loop)
        if writer is None or writer.task.done():
            # a writer per loop: a workspace can outlive one asyncio.run and serve the next
            for old in [lp for lp in self._loops if lp.is_closed() or lp is loop]:
                self._drop(old)
            writer = self._loops[loop] = _LoopWriter(self, loop)
        await writer.add(record)

    def flush_journal(self, timeout: float = 30.0) -> None:
        """Copy every journaled row into ``calls`` now, from any thread.

        For readers that must see the calls already answered for (tests, an export
        right after a load); the service itself never waits for it.
        """
        for loop, writer in list(self._loops.items()):
            if writer.journal is not None:
                _call_in_loop(loop, functools.partial(writer._copy, wait=True), timeout)

    def close_journal(self) -> None:
        """Copy the running loop's journaled rows now and delete its journal.

        The service calls it as it shuts down, in its loop, so that a clean stop leaves
        every row in ``calls`` and no journal behind.
        """
        writer = self._loops.get(asyncio.get_running_loop())
        if writer is not None:
            writer.close_journal()

    def _drop(self, loop: asyncio.AbstractEventLoop) -> None:
        writer = self._loops.pop(loop)
        writer.close_journal()
        writer.close_connections()

    def close(self) -> None:
        """Stop the worker thread after the batch it is writing (queued waiters stay)."""
        for loop, writer in list(self._loops.items()):
            try:
                _call_in_loop(loop, writer.close_journal, self.busy_timeout_ms / 1000 + 5)
            except TimeoutError as exc:
                log.warning("call journal left for recovery: %s", exc)
            if not loop.is_closed():
                loop.call_soon_threadsafe(writer.task.cancel)
            writer.close_connections()
        self._loops.clear()
        self.executor.shutdown(wait=True)
        self.background.shutdown(wait=True)
