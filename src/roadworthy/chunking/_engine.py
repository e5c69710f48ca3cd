"""The machinery every splitter shares: counting spans, recursive splitting, overlap, checks.

Cost is dominated by the tokenizer, so the source is tokenized once: it is tiled into
units (paragraphs, Markdown blocks, turns), the units are encoded in batches, and any
span's count is then answered from those counts (prefix sums over whole units, token
offsets inside a unit that is cut). Merged chunks are never encoded again, except where
that answer may be wrong: a chunk cut away from whitespace, or a counter whose counts
do not add up (see ``TokenCounter.additive``). Those chunks are recounted in one batch
and re-split if they are over the limit, so the limit holds for the real tokenizer.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

from .counters import Measured, Spans, TokenCounter

__all__ = [
    "Chunk",
    "Draft",
    "Level",
    "Measure",
    "Splitter",
    "finish",
    "regex_level",
    "tile",
]

_BATCH = 512
_TILE_CHARS = 16_384


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a source text; ``source[start:end] == text`` always holds."""

    text: str
    start: int
    end: int
    tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "tokens": self.tokens,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class Draft:
    """A chunk being built: ``core`` is where its own content starts (after any context)."""

    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)
    core: int = -1

    def __post_init__(self) -> None:
        if self.core < 0:
            self.core = self.start


class Measure:
    """Token counts of a text tiled into units, answered for any span.

    Units above ``keep_over`` tokens keep their token offsets (they are the ones that
    get cut); smaller ones are encoded again only if a span ever starts inside them.
    """

    def __init__(
        self,
        text: str,
        bounds: Sequence[int],
        counter: TokenCounter,
        *,
        keep_over: int,
        exact: bool = True,
    ) -> None:
        self.text = text
        self.counter = counter
        self.bounds = list(bounds)
        self.exact = exact and counter.additive
        n = len(self.bounds) - 1
        counts: list[int] = []
        self._kept: dict[int, Measured] = {}
        for i in range(0, n, _BATCH):
            texts = [
                text[self.bounds[j] : self.bounds[j + 1]] for j in range(i, min(i + _BATCH, n))
            ]
            for j, m in enumerate(counter.measure_batch(texts), start=i):
                counts.append(m.count)
                if m.count > keep_over:
                    self._kept[j] = m
        self.counts = counts
        self._prefix = [0, *accumulate(counts)]
        self._lo: list[int] = []
        self._hi: list[int] = []
        for j in range(n):
            a, b = self.bounds[j], self.bounds[j + 1]
            piece = text[a:b]
            stripped = piece.lstrip()
            lo = a + len(piece) - len(stripped)
            self._lo.append(lo)
            self._hi.append(lo + len(stripped.rstrip()))

    def _spans(self, i: int) -> Spans:
        m = self._kept.get(i)
        if m is None:
            m = self.counter.measure_batch([self.text[self.bounds[i] : self.bounds[i + 1]]])[0]
            self._kept[i] = m
        return m.spans()

    def _partial(self, i: int, a: int, b: int) -> int:
        if a <= self._lo[i] and b >= self._hi[i]:
            return self.counts[i]
        if b <= self._lo[i] or a >= self._hi[i]:
            return 0
        base = self.bounds[i]
        starts, ends = self._spans(i)
        return bisect_left(starts, b - base) - bisect_right(ends, a - base)

    def count(self, a: int, b: int) -> int:
        """Tokens of ``text[a:b]``; a token cut by either end counts as whole."""
        if a >= b:
            return 0
        i = bisect_right(self.bounds, a) - 1
        j = bisect_right(self.bounds, b - 1) - 1
        if i == j:
            return self._partial(i, a, b)
        inner = self._prefix[j] - self._prefix[i + 1]
        return self._partial(i, a, self.bounds[i + 1]) + inner + self._partial(j, self.bounds[j], b)


Level = Callable[[int, int], list[int]]
"""Cut positions strictly inside ``(a, b)``, ascending, for one kind of boundary."""


def regex_level(text: str, pattern: re.Pattern[str]) -> Level:
    """Cut after each match of ``pattern`` (separators stay with the piece before)."""

    def cuts(a: int, b: int) -> list[int]:
        return [c for m in pattern.finditer(text, a, b) if a < (c := m.end()) < b]

    return cuts


_JOINERS = frozenset("\u200d\ufe0e\ufe0f\u20e3")


def safe_cut(text: str, i: int) -> bool:
    """Whether cutting before ``text[i]`` keeps user-perceived characters whole.

    An approximation of grapheme boundaries without a dependency: not before a
    combining mark, variation selector, ZWJ, keycap or skin-tone modifier, not after a
    ZWJ, not inside CRLF, not between the two halves of a surrogate pair.
    """
    if i <= 0 or i >= len(text):
        return True
    ch, prev = text[i], text[i - 1]
    if ch in _JOINERS or prev == "\u200d" or unicodedata.combining(ch):
        return False
    if "\U0001f3fb" <= ch <= "\U0001f3ff" or (prev == "\r" and ch == "\n"):
        return False
    return not ("\ud800" <= prev <= "\udbff" and "\udc00" <= ch <= "\udfff")


class Splitter:
    """Recursive splitting: the largest boundary first, then greedy merging to the limit."""

    def __init__(self, text: str, measure: Measure, limit: int, levels: Sequence[Level]) -> None:
        self.text = text
        self.measure = measure
        self.limit = limit
        self.levels = list(levels)

    def split(self, a: int, b: int, depth: int = 0) -> list[tuple[int, int]]:
        """Spans covering ``[a, b)`` in order, each within the limit when possible."""
        count = self.measure.count
        if count(a, b) <= self.limit:
            return [(a, b)]
        for d in range(depth, len(self.levels)):
            cuts = self.levels[d](a, b)
            if cuts:
                break
        else:
            return self.split_chars(a, b)
        pieces: list[tuple[int, int]] = []
        prev = a
        for c in [*cuts, b]:
            if count(prev, c) <= self.limit:
                pieces.append((prev, c))
            else:
                pieces.extend(self.split(prev, c, d + 1))
            prev = c
        return self.merge(pieces)

    def merge(self, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Join neighbours greedily while the joined span stays within the limit."""
        count = self.measure.count
        out: list[tuple[int, int]] = []
        ca, cb = pieces[0]
        for a, b in pieces[1:]:
            if count(ca, b) <= self.limit:
                cb = b
            else:
                out.append((ca, cb))
                ca, cb = a, b
        out.append((ca, cb))
        return out

    def split_chars(self, a: int, b: int) -> list[tuple[int, int]]:
        """Longest prefixes within the limit, cut where no character is broken."""
        count = self.measure.count
        out: list[tuple[int, int]] = []
        s = a
        while s < b:
            if count(s, b) <= self.limit:
                out.append((s, b))
                break
            lo, hi = s + 1, b - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if count(s, mid) <= self.limit:
                    lo = mid
                else:
                    hi = mid - 1
            e = lo
            back = e
            while back > s + 1 and not safe_cut(self.text, back):
                back -= 1
            if safe_cut(self.text, back):
                e = back
            out.append((s, e))
            s = e
        return out  # a single code point over the limit comes back alone


def tile(text: str, cuts: Level, a: int = 0, b: int | None = None) -> tuple[list[int], bool]:
    """Unit boundaries for a :class:`Measure`: ``cuts`` first, then lines, then words.

    Units stay under ``_TILE_CHARS`` so that batches parallelise and a unit that must
    be cut is cheap to re-read. Returns the boundaries and whether every boundary lies
    at whitespace (where counts add up exactly).
    """
    end = len(text) if b is None else b
    bounds = [a, *cuts(a, end), end] if end > a else [a, end]
    out: list[int] = [bounds[0]]
    exact = True
    for x, y in pairwise(bounds):
        pos = x
        lines = [m.end() for m in _LINE.finditer(text, x, y)] if y - x > _TILE_CHARS else []
        while y - pos > _TILE_CHARS:
            limit = pos + _TILE_CHARS
            i = bisect_right(lines, limit) - 1
            if i >= 0 and lines[i] > pos:
                cut = lines[i]
            else:
                spaces = [m.end() for m in _SPACE.finditer(text, pos + 1, limit + 1)]
                cut = spaces[-1] if spaces and spaces[-1] < y else limit
                if not spaces:
                    while cut > pos + 1 and not safe_cut(text, cut):
                        cut -= 1
                    exact = False
            out.append(cut)
            pos = cut
        if y > out[-1]:
            out.append(y)
    return out, exact


_CONTEXT_KEYS = frozenset({"overlap_tokens", "context_turns", "content_start"})
_LINE = re.compile(r"\n")
_SPACE = re.compile(r"\s+")


def _strip(text: str, a: int, b: int) -> tuple[int, int]:
    piece = text[a:b]
    left = piece.lstrip()
    s = a + len(piece) - len(left)
    return s, s + len(left.rstrip())


def _real_space(ch: str) -> bool:
    """Whitespace to tokenizers too: BERT-style normalizers delete control characters
    that Python calls spaces (U+001C-U+001F, U+0085, VT, FF), joining the words around
    them, so a cut there does not separate tokens."""
    return ch in " \t\n\r" or (ch.isspace() and unicodedata.category(ch) != "Cc")


def _ws_before(text: str, i: int) -> bool:
    while i > 0 and text[i - 1].isspace():
        if _real_space(text[i - 1]):
            return True
        i -= 1
    return i <= 0


def _ws_after(text: str, i: int) -> bool:
    n = len(text)
    while i < n and text[i].isspace():
        if _real_space(text[i]):
            return True
        i += 1
    return i >= n


def _word_starts(text: str, a: int, b: int) -> list[int]:
    return [i for i in range(a, b) if not text[i].isspace() and _ws_before(text, i)]


def finish(
    text: str,
    drafts: list[Draft],
    measure: Measure,
    limit: int,
    overlap: int,
    resplit: Callable[[int, int, int], list[tuple[int, int]]],
) -> list[Chunk]:
    """Strip, add overlap, recount what needs it, re-split what is over, build chunks.

    ``resplit(a, b, limit)`` splits a span again under a smaller limit; it is used when
    the real tokenizer finds a chunk over the limit that the unit counts let through.
    """
    stripped: list[Draft] = []
    for d in drafts:
        s, e = _strip(text, d.start, d.end)
        if s < e:
            core = min(max(d.core, s), e)
            stripped.append(Draft(s, e, d.metadata, core))
    fitted = _verify(text, stripped, measure, limit, resplit, 0)
    if overlap > 0:
        fitted = _add_overlap(text, fitted, measure, limit, overlap)
    return [Chunk(text[d.start : d.end], d.start, d.end, n, d.metadata) for d, n in fitted]


def _add_overlap(
    text: str, fitted: list[tuple[Draft, int]], measure: Measure, limit: int, overlap: int
) -> list[tuple[Draft, int]]:
    """Extend each chunk back into its predecessor by up to ``overlap`` tokens.

    The new start is a word start (or a safe cut in text without spaces), and the
    extended chunk must still be within the limit, so overlap never costs the limit;
    where the unit counts cannot be trusted the extended chunk is recounted, and kept
    without overlap if the real count is over.
    """
    count = measure.count
    out: list[tuple[Draft, int]] = fitted[:1]
    recount: list[int] = []
    for (prev, _), (cur, n) in pairwise(fitted):
        out.append((cur, n))
        if cur.core != cur.start or n >= limit:  # already carries context, or full
            continue
        lo = max(prev.start, cur.start - 64 * overlap)
        cands = _word_starts(text, lo, cur.start)
        if not cands:
            cands = [i for i in range(lo, cur.start) if not text[i].isspace() and safe_cut(text, i)]
        budget = min(overlap, limit - n)
        left, right = 0, len(cands)
        while left < right:  # first candidate whose overlap fits the budget
            mid = (left + right) // 2
            if count(cands[mid], cur.start) <= budget:
                right = mid
            else:
                left = mid + 1
        if left == len(cands):
            continue
        start = cands[left]
        taken = count(start, cur.start)
        total = count(start, cur.end)
        if taken <= 0 or total > limit:
            continue
        grown = Draft(start, cur.end, {**cur.metadata, "overlap_tokens": taken}, cur.core)
        out[-1] = (grown, total)
        if not (measure.exact and _ws_before(text, start)):
            recount.append(len(out) - 1)
    if recount:
        real = measure.counter.count_batch([text[out[i][0].start : out[i][0].end] for i in recount])
        for i, n in zip(recount, real, strict=True):
            if n <= limit:
                out[i] = (out[i][0], n)
            else:
                out[i] = fitted[i]
    return out


def _verify(
    text: str,
    drafts: list[Draft],
    measure: Measure,
    limit: int,
    resplit: Callable[[int, int, int], list[tuple[int, int]]],
    depth: int,
) -> list[tuple[Draft, int]]:
    """Count each draft (recounting where unit counts may be wrong); re-split the over."""
    counts: list[int] = []
    check: list[int] = []
    for i, d in enumerate(drafts):
        if measure.exact and _ws_before(text, d.start) and _ws_after(text, d.end):
            counts.append(measure.count(d.start, d.end))
        else:
            counts.append(-1)
            check.append(i)
    if check:
        real = measure.counter.count_batch([text[drafts[i].start : drafts[i].end] for i in check])
        for i, n in zip(check, real, strict=True):
            counts[i] = n
    out: list[tuple[Draft, int]] = []
    for d, n in zip(drafts, counts, strict=True):
        if n <= limit:
            out.append((d, n))
            continue
        if d.core != d.start:  # drop the context first, keep the content whole
            meta = {k: v for k, v in d.metadata.items() if k not in _CONTEXT_KEYS}
            out.extend(_verify(text, [Draft(d.core, d.end, meta)], measure, limit, resplit, depth))
            continue
        smaller = max(1, min(measure.count(d.start, d.end) - 1, limit - (n - limit)))
        subs: list[Draft] = []
        if d.end - d.start > 1 and depth <= 16:
            for a, b in resplit(d.start, d.end, smaller):
                s, e = _strip(text, a, b)
                if s < e:
                    subs.append(Draft(s, e, dict(d.metadata)))
        if len(subs) <= 1 and d.end - d.start > 1 and depth <= 16:
            # The unit counts think it fits: halve it, at a safe cut when there is one.
            mid = (d.start + d.end) // 2
            cut = next((i for i in range(mid, d.end) if safe_cut(text, i)), mid)
            subs = [Draft(a, b, dict(d.metadata)) for a, b in _halves(text, d.start, cut, d.end)]
        if len(subs) <= 1:  # one code point over the limit: nothing smaller exists
            out.append((Draft(d.start, d.end, {**d.metadata, "over_limit": True}), n))
            continue
        out.extend(_verify(text, subs, measure, limit, resplit, depth + 1))
    return out


def _halves(text: str, a: int, cut: int, b: int) -> list[tuple[int, int]]:
    out = []
    for x, y in ((a, cut), (cut, b)):
        s, e = _strip(text, x, y)
        if s < e:
            out.append((s, e))
    return out
