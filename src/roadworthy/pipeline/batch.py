"""Run a JSONL file through a pipeline with bounded concurrency.

* Every non-blank line becomes an item: a line that is not UTF-8 or not JSON is stored as
  rejected with its line number, and the batch goes on.
* Output lines are written in input order as soon as the prefix before them is complete,
  so an interrupted run leaves a valid, ordered partial output file.
* On cancellation (Ctrl-C) every item still in flight is ended as failed with the reason
  "interrupted", and the run is marked interrupted; ``resume=True`` then skips every
  input whose item already reached ``done``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InputRejected
from .runner import ItemResult, Pipeline

__all__ = ["BatchOutcome", "count_inputs", "run_file"]

INTERRUPTED = "interrupted before finishing (rerun with --resume to continue)"
ABANDONED = "abandoned by an earlier run that did not finish"


@dataclass
class BatchOutcome:
    run_id: str
    total: int
    resumed: int


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            stripped = raw.rstrip(b"\r\n")
            if stripped.strip():
                yield number, stripped


def count_inputs(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(
            "invalid_encoding", f"line is not valid UTF-8 (byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputRejected(
            "malformed_json", f"line is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None


class _OrderedWriter:
    """Writes results in input order, holding back those that finish early."""

    def __init__(self, handle: IO[str] | None) -> None:
        self.handle = handle
        self.pending: dict[int, ItemResult] = {}
        self.next_index = 0

    def add(self, index: int, result: ItemResult) -> None:
        self.pending[index] = result
        while self.next_index in self.pending:
            self._write(self.pending.pop(self.next_index))
            self.next_index += 1

    def drain(self) -> None:
        for index in sorted(self.pending):
            self._write(self.pending.pop(index))

    def _write(self, result: ItemResult) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            self.handle.flush()


async def run_file(
    pipeline: Pipeline,
    path: Path,
    *,
    output: IO[str] | None = None,
    concurrency: int = 4,
    resume: bool = False,
    on_result: Callable[[ItemResult], None] | None = None,
    run_id_callback: Callable[[str], None] | None = None,
) -> BatchOutcome:
    store = pipeline.store
    if resume:
        store.fail_unfinished(pipeline=pipeline.name, reason=ABANDONED)
    run_id = store.start_run(
        pipeline.name, str(path), {"concurrency": concurrency, "resume": resume}
    )
    if run_id_callback is not None:
        run_id_callback(run_id)
    writer = _OrderedWriter(output)
    queue: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue(maxsize=concurrency * 2)
    total = 0
    resumed = 0

    def finish(index: int, result: ItemResult) -> None:
        writer.add(index, result)
        if on_result is not None:
            on_result(result)

    async def handle(index: int, line_no: int, raw: bytes) -> None:
        try:
            data = _decode(raw)
        except InputRejected as exc:
            finish(
                index,
                pipeline.reject(
                    exc, raw=raw, run_id=run_id, line_no=line_no, key=f"line:{line_no}"
                ),
            )
            return
        if resume:
            done = store.finished_item(pipeline.name, pipeline.key_for(data))
            if done is not None:
                nonlocal resumed
                resumed += 1
                finish(
                    index,
                    ItemResult(
                        status=done["status"],
                        item_id=done["id"],
                        trace_id=done["trace_id"],
                        output=done["output"],
                        reason=done["reason"],
                        error_code=done["error_code"],
                        next_attempt_at=done["next_attempt_at"],
                        line_no=line_no,
                        resumed=True,
                    ),
                )
                return
        finish(index, await pipeline.run(data, run_id=run_id, line_no=line_no))

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                if job is None:
                    return
                await handle(*job)
            finally:
                queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    interrupted = False
    try:
        for index, (line_no, raw) in enumerate(_lines(path)):
            await queue.put((index, line_no, raw))
            total += 1
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        if interrupted:
            store.fail_unfinished(run_id=run_id, reason=INTERRUPTED)
        writer.drain()
        store.finish_run(run_id, "interrupted" if interrupted else "finished")
    return BatchOutcome(run_id=run_id, total=total, resumed=resumed)
