"""The recursive text splitter: the largest meaningful boundary first.

Boundaries, from largest to smallest: sections (two or more blank lines, or a form
feed), paragraphs (a blank line), lines, sentence ends, clause marks, words, and last
characters (never inside a combining sequence or an emoji ZWJ sequence). A span over
the limit is cut at the largest boundary it contains; the pieces are merged greedily
back up to the limit, so chunks end at the largest boundary that lets them be full.
"""

from __future__ import annotations

import re

from ._engine import Draft, Level, Measure, Splitter, regex_level, tile
from .counters import TokenCounter

__all__ = ["TEXT_BOUNDARIES", "split_text", "text_levels"]

TEXT_BOUNDARIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("section", re.compile(r"\n[^\S\n]*\n[^\S\n]*\n\s*|\f\s*")),
    ("paragraph", re.compile(r"\n[^\S\n]*\n\s*")),
    ("line", re.compile(r"\n\s*")),
    (
        "sentence",
        re.compile(
            r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|[\u3002\uff01\uff1f]+[\u300d\u300f\u201d\u2019\uff09]*\s*"
        ),
    ),
    ("clause", re.compile(r"[,;:]\s+|\s[\u2013\u2014-]{1,2}\s+|[\uff0c\uff1b\uff1a\u3001]\s*")),
    ("word", re.compile(r"\s+")),
)
"""Each boundary and the separator it cuts after, largest first."""


def text_levels(text: str, *, start: int = 0) -> list[Level]:
    """The cut functions for :data:`TEXT_BOUNDARIES`, from index ``start`` down."""
    return [regex_level(text, pattern) for _, pattern in TEXT_BOUNDARIES[start:]]


def text_measure(text: str, counter: TokenCounter, limit: int) -> Measure:
    """Tokenize ``text`` once, one paragraph per unit."""
    bounds, exact = tile(text, regex_level(text, TEXT_BOUNDARIES[1][1]))
    return Measure(text, bounds, counter, keep_over=limit, exact=exact)


def split_text(text: str, measure: Measure, limit: int) -> list[Draft]:
    """Chunk spans of plain text (before stripping, overlap and recounting)."""
    splitter = Splitter(text, measure, limit, text_levels(text))
    return [Draft(a, b, {"kind": "text"}) for a, b in splitter.split(0, len(text))]
