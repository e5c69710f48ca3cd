"""``chunk()``: one entry point that picks the splitter and the counter."""

from __future__ import annotations

import re
from typing import Literal

from ._engine import Chunk, Draft, Measure, Splitter, finish
from .counters import TokenCounter, get_counter

__all__ = ["Kind", "chunk", "detect_kind"]

Kind = Literal["auto", "text", "markdown", "conversation"]

_MD_SIGNS = re.compile(r"^ {0,3}(#{1,6}\s|```|~~~|\|.*\|\s*$)", re.MULTILINE)


def detect_kind(text: str) -> Literal["text", "markdown", "conversation"]:
    """Guess the kind: a transcript when most paragraphs open with a speaker label,
    Markdown when it has headings, fences or tables, else plain text."""
    from .conversation import find_turns

    sample = text[:200_000]
    turns = find_turns(sample)
    if len(turns) >= 3:
        lines = [ln for ln in sample.splitlines() if ln.strip()]
        if len(turns) * 2 >= min(len(lines), 400):
            return "conversation"
    if len(_MD_SIGNS.findall(sample)) >= 1:
        return "markdown"
    return "text"


def chunk(
    text: str,
    max_tokens: int,
    overlap: int = 0,
    kind: Kind = "auto",
    counter: TokenCounter | str = "auto",
    *,
    context_turns: int = 0,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens of ``counter``.

    Every chunk satisfies ``text[c.start:c.end] == c.text``, is non-empty and starts
    and ends at non-whitespace; chunks come in source order and together hold every
    non-whitespace character. ``overlap`` tokens from the end of the previous chunk
    are prepended where they fit; they never push a chunk over ``max_tokens``.
    ``context_turns`` (conversations only) repeats that many preceding turns at the
    head of each chunk, counted against the limit. ``counter`` is a
    :class:`TokenCounter` or a name for :func:`get_counter` (default: the local
    model's tokenizer, else the estimate).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if overlap < 0 or overlap >= max_tokens:
        raise ValueError("overlap must be between 0 and max_tokens - 1")
    if context_turns < 0:
        raise ValueError("context_turns must be 0 or more")
    tokens = get_counter(counter) if isinstance(counter, str) else counter
    if not text.strip():
        return []
    chosen = detect_kind(text) if kind == "auto" else kind
    drafts: list[Draft]
    measure: Measure
    if chosen == "text":
        from .text import split_text, text_levels, text_measure

        measure = text_measure(text, tokens, max_tokens)
        drafts = split_text(text, measure, max_tokens)
        levels = text_levels(text)
    elif chosen == "markdown":
        from .markdown import MarkdownDoc

        doc = MarkdownDoc(text, tokens, max_tokens)
        measure, drafts, levels = doc.measure, doc.split(), doc.levels
    elif chosen == "conversation":
        from .conversation import split_conversation
        from .text import text_levels

        measure, drafts = split_conversation(text, tokens, max_tokens, context_turns)
        levels = text_levels(text, start=1)
    else:
        raise ValueError(f"unknown kind {kind!r}: use auto, text, markdown or conversation")

    def resplit(a: int, b: int, limit: int) -> list[tuple[int, int]]:
        return Splitter(text, measure, limit, levels).split(a, b)

    return finish(text, drafts, measure, max_tokens, overlap, resplit)
