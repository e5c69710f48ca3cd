"""The ``chunk`` step: split a text field into token-bounded chunks for later steps.

Its output is a list of ``{text, start, end, tokens, metadata}``; a following ``generate``
step with ``for_each: chunks`` runs once per chunk (map), and a step after that can read
the list of answers (reduce).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..chunking import chunk
from ..config.model import ChunkStep
from ..errors import InputRejected
from .generate import GenerateContext

__all__ = ["ChunkRunner"]


class ChunkRunner:
    def __init__(self, config: ChunkStep) -> None:
        self.config = config
        self.step_name = config.name

    def max_concurrency(self) -> int | None:
        return None

    async def run(self, variables: dict[str, Any], ctx: GenerateContext) -> list[dict[str, Any]]:
        text = variables.get(self.config.field)
        if not isinstance(text, str):
            raise InputRejected(
                "wrong_type",
                f"chunk step needs a string, got {type(text).__name__}",
                field=self.config.field,
            )
        cfg = self.config
        chunks = await asyncio.to_thread(
            chunk, text, cfg.max_tokens, cfg.overlap, cfg.kind, cfg.counter
        )
        return [
            {
                "text": c.text,
                "start": c.start,
                "end": c.end,
                "tokens": c.tokens,
                "metadata": c.metadata,
            }
            for c in chunks
        ]
