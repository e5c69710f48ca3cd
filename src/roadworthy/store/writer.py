"""Group commit for the call ledger: many ``calls`` rows per transaction, none lost.

A service that writes one transaction per model call spends most of a fast call in the
store (a short SQLite transaction costs about as much as the rest of the request), and it
does so on the event loop, where every other request waits for it. :class:`CallWriter`
takes the write off the loop and shares it between calls:

* :meth:`CallWriter.arecord` queues the record and waits until the transaction holding
  it has **committed**; only then does the caller go on (and, in the service, send its
  answer). So a client is never told about a call whose row could still be lost: a crash
  can only lose records of calls nobody was answered for, which is the same guarantee a
  write per call gives;
* one writer task per event loop takes everything queued, inserts it with one
  ``executemany`` in one transaction on a single worker thread, then wakes every waiter
  of that batch. While a batch commits the next one gathers, so the batch size follows
  the load (1 when idle, dozens under load) with no timer and no added wait;
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
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .store import CallRecord, Store
from .tables import calls

__all__ = ["CallWriter"]

_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))

_Entry = tuple[CallRecord, "asyncio.Future[None]"]


def _row(record: CallRecord) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; the fields are flat, so a getattr per
    # field gives the same dict for a fraction of the cost.
    return {name: getattr(record, name) for name in _FIELDS}


class _LoopWriter:
    """The queue and writer task of one event loop."""

    def __init__(self, owner: CallWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self.task = loop.create_task(self._run(), name="roadworthy-call-writer")

    async def _run(self) -> None:
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < self.owner.max_batch:
                batch.append(queue.get_nowait())
            records = [record for record, _ in batch]
            try:
                await self.loop.run_in_executor(self.owner.executor, self.owner.write, records)
            except Exception as exc:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(None)


class CallWriter:
    """Write ``calls`` rows for :class:`~roadworthy.models.Recorded`, in group commits.

    ``await writer.arecord(record)`` returns once the record's transaction committed;
    ``writer(record)`` writes it synchronously. ``max_batch`` bounds one transaction.

    ``group_commit`` says whether :class:`~roadworthy.models.Recorded` should use
    ``arecord``. The service turns it on (``create_app``); batch runs and workers keep
    the synchronous write, whose timing their cancellation and resume paths were built
    and tested around.
    """

    def __init__(self, store: Store, *, max_batch: int = 256, group_commit: bool = False) -> None:
        self.store = store
        self.max_batch = max_batch
        self.group_commit = group_commit
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rw-calls")
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}

    def __call__(self, record: CallRecord) -> None:
        self.write([record])

    def write(self, records: list[CallRecord]) -> None:
        """Insert ``records`` in one transaction (committed when this returns)."""
        with self.store.engine.begin() as conn:
            conn.execute(calls.insert(), [_row(r) for r in records])

    async def arecord(self, record: CallRecord) -> None:
        """Queue ``record``; return when the transaction holding it has committed.

        If the caller is cancelled while waiting, the record is still written (the call
        it describes happened); only the wait is abandoned.
        """
        loop = asyncio.get_running_loop()
        writer = self._loops.get(loop)
        if writer is None or writer.task.done():
            # a writer per loop: a workspace can outlive one asyncio.run and serve the next
            for old in [lp for lp in self._loops if lp.is_closed()]:
                del self._loops[old]
            writer = self._loops[loop] = _LoopWriter(self, loop)
        waiter: asyncio.Future[None] = loop.create_future()
        writer.queue.put_nowait((record, waiter))
        await waiter

    def close(self) -> None:
        """Stop the worker thread after the batch it is writing (queued waiters stay)."""
        for writer in self._loops.values():
            if not writer.loop.is_closed():
                writer.loop.call_soon_threadsafe(writer.task.cancel)
        self._loops.clear()
        self.executor.shutdown(wait=True)
