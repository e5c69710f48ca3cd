"""The service's call journal: a row appended to a file before the answer, copied in bulk.

Why: on SQLite a transaction costs the same for one row as for a hundred (begin, a few
B-tree pages per index, a WAL append of each page, the locks), so a service whose calls
finish one at a time paid a whole commit per call: about 0.14 ms of a 0.46 ms request at
half of its maximum rate (bench/gateway.py, rows written against rows not written), while
under full load one commit served dozens. The journal makes the cost per call flat: the
answer waits for one ``write`` of the call's row to a file (the same durability as a
commit in WAL mode with ``synchronous=NORMAL``: the bytes are the kernel's, so they
survive the process being killed, not a power loss), and the rows are copied into
``calls`` together every few tens of milliseconds.

Exactly once: each copy commits its rows and the journal's new copied offset (table
``call_journals``) in one transaction, so a journal replayed after a crash starts where the
last copy ended.

Layout: ``<database>-calls/<pid>-<token>.jsonl``; the first line names the fields, each
further line is one row's values as bound for SQLite, in that order. The process writing a
journal holds an exclusive ``flock`` on it while it lives; a journal nobody holds belongs
to a process that ended, and the next process that opens a call writer on the database
(a restarted server, a CLI command, a worker) copies what was not copied and deletes it
(:func:`recover`). Rows in a live journal reach ``calls`` about :data:`COPY_AFTER_S` after
their answer, later while the service's core is saturated (see ``writer.BACKLOG_BATCHES``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tables import calls

__all__ = ["COPY_AFTER_S", "Journal", "backlog", "journal_dir", "recover"]

log = logging.getLogger(__name__)

# How long a journaled row may wait for the bulk copy into ``calls``: long enough that a
# copy holds many rows at a few hundred calls a second, short enough that a dashboard or
# a CLI reading the table right after a call sees it.
COPY_AFTER_S = 0.05

# A journal whose rows are all copied is replaced by a new file once it is this large.
ROTATE_BYTES = 16 * 1024 * 1024

MARK_SQL = (
    "INSERT INTO call_journals (name, copied_bytes) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET copied_bytes = excluded.copied_bytes"
)


def journal_dir(database: str) -> Path:
    """The folder of the call journals of the SQLite file ``database``."""
    return Path(database + "-calls")


def insert_sql(fields: Sequence[str]) -> str:
    return f"INSERT INTO calls ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})"


def _line(row: Sequence[Any]) -> bytes:
    return (json.dumps(row, separators=(",", ":")) + "\n").encode()


class Journal:
    """One process's journal file, locked for as long as the process holds it."""

    def __init__(self, directory: Path, fields: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self.path = directory / self.name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never contended
        self.size = 0
        self.append_bytes(json.dumps({"fields": list(fields)}).encode() + b"\n")

    def append(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Write ``rows`` (one ``write`` unless the kernel takes less); their end offsets."""
        lines = [_line(row) for row in rows]
        ends: list[int] = []
        end = self.size
        for line in lines:
            end += len(line)
            ends.append(end)
        self.append_bytes(b"".join(lines))
        return ends

    def append_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def delete(self) -> None:
        """Remove the file (every row copied) and let go of it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        """Let go of the file, leaving it for :func:`recover`."""
        if self._fd < 0:
            return  # released already: the number may belong to another file by now
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1


def _decode(data: bytes, start: int) -> tuple[list[str], list[list[Any]], int]:
    """The fields, the complete rows after byte ``start``, and where they end.

    A last line without its newline is a write the process died in: the call it belongs
    to was never answered, so it is left out.
    """
    header_end = data.index(b"\n") + 1
    fields = list(json.loads(data[:header_end])["fields"])
    unknown = [name for name in fields if name not in calls.c]
    if unknown:  # the names go into SQL: only columns of ``calls``
        raise ValueError(f"journal fields that are not columns of calls: {unknown}")
    position = max(start, header_end)
    end = data.rfind(b"\n") + 1
    rows: list[list[Any]] = []
    for number, line in enumerate(data[position:end].splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            log.error("call journal: line %d after byte %d is not JSON; skipped", number, position)
            continue
        if isinstance(row, list) and len(row) == len(fields):
            rows.append(row)
        else:
            log.error("call journal: line %d after byte %d is not a row; skipped", number, position)
    return fields, rows, max(end, position)


def backlog(database: str) -> int:
    """Bytes of call rows in journals and not yet in ``calls`` (live and dead journals).

    For a reader in another process that must see every call answered so far (a test, an
    export right after a load): once this is 0, they are all in the table.
    """
    extents: dict[str, tuple[int, int]] = {}  # name: (where its rows start, its size)
    with contextlib.suppress(FileNotFoundError):
        for path in journal_dir(database).glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
                extents[path.name] = (len(file.readline()), os.fstat(file.fileno()).st_size)
    if all(start >= size for start, size in extents.values()):
        return 0
    with contextlib.closing(sqlite3.connect(database)) as conn:
        copied = dict(conn.execute("SELECT name, copied_bytes FROM call_journals").fetchall())
    return sum(
        max(0, size - max(int(copied.get(name, 0)), start))
        for name, (start, size) in extents.items()
    )


def recover(database: str, busy_timeout_ms: int = 30_000) -> int:
    """Copy the rows of journals whose process ended into ``calls``; return how many.

    Safe from several processes at once: a journal is taken under its ``flock`` and checked
    to still be the file at its path (another recoverer may have just deleted it).
    """
    directory = journal_dir(database)
    try:
        names = sorted(os.listdir(directory))
    except OSError:  # no journal folder (the usual case), or something else in its place
        return 0
    copied = 0
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        try:
            copied += _recover_one(database, directory / name, busy_timeout_ms)
        except FileNotFoundError:
            continue  # recovered by another process meanwhile
        except (OSError, ValueError, sqlite3.Error) as exc:
            # the rows stay in the file; the next process to open the store tries again
            log.error("call journal %s could not be recovered: %s", directory / name, exc)
    return copied


def _recover_one(database: str, path: Path, busy_timeout_ms: int) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its process is alive and copies its own rows
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            return 0  # recovered and deleted by someone else meanwhile
        with open(fd, "rb", closefd=False) as file:
            data = file.read()
        if b"\n" not in data:
            path.unlink()  # died before its header was whole: nothing was ever answered
            return 0
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    "SELECT copied_bytes FROM call_journals WHERE name = ?", (path.name,)
                ).fetchone()
                fields, rows, end = _decode(data, int(found[0]) if found else 0)
                if rows:
                    conn.executemany(insert_sql(fields), rows)
                conn.execute(MARK_SQL, (path.name, end))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            path.unlink()
            # its mark outlives the file only as a stale row if this process dies here
            conn.execute("DELETE FROM call_journals WHERE name = ?", (path.name,))
        finally:
            conn.close()
        if rows:
            log.warning(
                "copied %d call rows from %s, left by a process that ended", len(rows), path
            )
        return len(rows)
    finally:
        os.close(fd)
