"""The Markdown splitter: sections first, code fences and tables kept whole.

The document is read into blocks (ATX and setext headings, fenced code, pipe tables,
paragraphs). Cuts are tried at level-1 headings, then level 2, 3, 4-6, then between
blocks (between a heading and the block under it only when both do not fit), then inside a block at
lines, sentences, clauses, words and characters. A fence or table is only cut when it
alone is over the limit; it is then cut at its own lines and every chunk holding part
of it says so in ``metadata["split_block"]``. Each chunk carries the heading path in
force at its start (``metadata["headings"]``).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from ._engine import Draft, Level, Measure, Splitter, tile
from .counters import TokenCounter
from .text import text_levels

__all__ = ["Block", "MarkdownDoc", "parse_blocks"]

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*\n?$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*\n?$")
_DELIM = re.compile(r" {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*\n?$")
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")


@dataclass(frozen=True, slots=True)
class Block:
    start: int
    end: int
    kind: str  # heading, code, table, paragraph
    level: int = 0
    title: str = ""


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(fence)
        and set(stripped) == {fence[0]}
    )


def parse_blocks(text: str) -> list[Block]:
    """Blocks tiling ``text``; blank lines belong to the block before them."""
    lines = [(m.start(), m.group()) for m in _LINES.finditer(text)]
    blocks: list[Block] = []
    i = 0
    n = len(lines)

    def add(start: int, end: int, kind: str, level: int = 0, title: str = "") -> None:
        blocks.append(Block(start, end, kind, level, title))

    while i < n:
        pos, line = lines[i]
        if not line.strip():
            if blocks:
                last = blocks[-1]
                blocks[-1] = Block(last.start, pos + len(line), last.kind, last.level, last.title)
            else:
                add(pos, pos + len(line), "paragraph")
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in line[fence.end() :]):
            j = i + 1
            while j < n and not _closes(lines[j][1], fence.group(1)):
                j += 1
            j = min(j, n - 1)
            add(pos, lines[j][0] + len(lines[j][1]), "code")
            i = j + 1
            continue
        atx = _ATX.match(line)
        if atx:
            add(pos, pos + len(line), "heading", len(atx.group(1)), (atx.group(2) or "").strip())
            i += 1
            continue
        if "|" in line and i + 1 < n and _DELIM.match(lines[i + 1][1]) and "|" in lines[i + 1][1]:
            j = i + 2
            while j < n and "|" in lines[j][1] and lines[j][1].strip():
                j += 1
            add(pos, lines[j - 1][0] + len(lines[j - 1][1]), "table")
            i = j
            continue
        j = i + 1
        kind, level = "paragraph", 0
        while j < n:
            nxt = lines[j][1]
            if not nxt.strip() or _FENCE.match(nxt) or _ATX.match(nxt):
                break
            if _SETEXT.match(nxt):
                kind, level = "heading", 1 if nxt.strip()[0] == "=" else 2
                j += 1
                break
            j += 1
        end = lines[j - 1][0] + len(lines[j - 1][1])
        title = " ".join(text[pos:end].split("\n")[: -2 if kind == "heading" else 1]).strip()
        add(pos, end, kind, level, title if kind == "heading" else "")
        i = j
    return blocks


class MarkdownDoc:
    """A Markdown text measured once, block by block, with its cut levels."""

    def __init__(self, text: str, counter: TokenCounter, limit: int) -> None:
        self.text = text
        self.limit = limit
        self.blocks = parse_blocks(text)
        starts = [b.start for b in self.blocks]
        bounds, exact = tile(
            text, lambda a, b: starts[bisect_right(starts, a) : bisect_left(starts, b)]
        )
        self.measure = Measure(text, bounds, counter, keep_over=limit, exact=exact)
        self.levels: list[Level] = [
            *(self._heading_level(lv) for lv in ((1,), (2,), (3,), (4, 5, 6))),
            self._sorted_level(
                [
                    b.start
                    for prev, b in zip(self.blocks, self.blocks[1:], strict=False)
                    if prev.kind != "heading"
                ]
            ),
            self._sorted_level(starts[1:]),  # a heading parts from its block only if it must
            *text_levels(text, start=2),
        ]
        self._paths: list[tuple[int, list[str]]] = []
        stack: list[tuple[int, str]] = []
        for b in self.blocks:
            if b.kind == "heading":
                while stack and stack[-1][0] >= b.level:
                    stack.pop()
                stack.append((b.level, b.title))
                self._paths.append((b.start, [t for _, t in stack]))

    @staticmethod
    def _sorted_level(points: list[int]) -> Level:
        def cuts(a: int, b: int) -> list[int]:
            return points[bisect_right(points, a) : bisect_left(points, b)]

        return cuts

    def _heading_level(self, levels: tuple[int, ...]) -> Level:
        return self._sorted_level(
            [b.start for b in self.blocks if b.kind == "heading" and b.level in levels]
        )

    def headings_at(self, pos: int) -> list[str]:
        i = bisect_right([p for p, _ in self._paths], pos) - 1
        return list(self._paths[i][1]) if i >= 0 else []

    def split(self) -> list[Draft]:
        splitter = Splitter(self.text, self.measure, self.limit, self.levels)
        count = self.measure.count
        big = [
            b
            for b in self.blocks
            if b.kind in {"code", "table"} and count(b.start, b.end) > self.limit
        ]
        drafts: list[Draft] = []
        for a, b in splitter.split(0, len(self.text)):
            first = a + len(self.text[a:b]) - len(self.text[a:b].lstrip())
            meta: dict[str, object] = {"kind": "markdown", "headings": self.headings_at(first)}
            for blk in big:
                if blk.start < b and a < blk.end and not (a <= blk.start and blk.end <= b):
                    meta["split_block"] = blk.kind
                    break
            drafts.append(Draft(a, b, meta))
        return drafts
