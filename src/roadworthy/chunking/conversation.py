"""The conversation splitter: transcripts cut between turns, never inside one.

A turn starts at a line that opens with a speaker label (``Alice:``, ``[10:02] Bob:``,
``**User**:``) and runs to the next such line. Chunks hold whole turns; a turn that is
alone over the limit is split with the text splitter and each part is marked. With
``context_turns=k`` each chunk starts with up to ``k`` turns that precede its own, so a
reader sees what is being answered; that context counts against the limit, and the
oldest context turns are dropped first when it does not fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._engine import Draft, Measure, Splitter, tile
from .counters import TokenCounter
from .text import text_levels, text_measure

__all__ = ["Turn", "find_turns", "split_conversation"]

_LABEL = re.compile(
    r"^[ \t]*(?:\[[^\]\n]{1,24}\][ \t]*)?(?:\*\*)?"
    r"(?P<speaker>[^\W\d_][\w.'\- ]{0,30}?)(?:\*\*)?[ \t]*:(?:\*\*)?(?:[ \t]+|$)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Turn:
    start: int
    end: int
    speaker: str
    body: int  # where the text after the label starts


def find_turns(text: str) -> list[Turn]:
    """Turns in order; text before the first label is not a turn."""
    marks = [(m.start(), m.end(), m.group("speaker").strip()) for m in _LABEL.finditer(text)]
    if not marks:
        return []
    ends = [s for s, _, _ in marks[1:]] + [len(text)]
    return [Turn(s, e, who, body) for (s, body, who), e in zip(marks, ends, strict=True)]


def split_conversation(
    text: str, counter: TokenCounter, limit: int, context_turns: int
) -> tuple[Measure, list[Draft]]:
    """Measure the transcript once, turn by turn, then pack whole turns into chunks."""
    turns = find_turns(text)
    if not turns:
        measure = text_measure(text, counter, limit)
        splitter = Splitter(text, measure, limit, text_levels(text))
        return measure, [
            Draft(a, b, {"kind": "conversation"}) for a, b in splitter.split(0, len(text))
        ]
    starts = [t.start for t in turns]

    def turn_cuts(a: int, b: int) -> list[int]:
        return [s for s in starts if a < s < b]

    bounds, exact = tile(text, turn_cuts)
    measure = Measure(text, bounds, counter, keep_over=limit, exact=exact)
    count = measure.count
    splitter = Splitter(text, measure, limit, text_levels(text, start=1))
    drafts: list[Draft] = []
    meta: dict[str, object]
    if turns[0].start > 0 and text[: turns[0].start].strip():
        for a, b in splitter.split(0, turns[0].start):
            drafts.append(Draft(a, b, {"kind": "conversation", "speakers": []}))
    sizes = [count(t.start, t.end) for t in turns]
    i = 0
    while i < len(turns):
        turn = turns[i]
        if sizes[i] > limit:
            parts = splitter.split(turn.body, turn.end)
            # The label goes with the first part (alone only if the two do not fit).
            if count(turn.start, parts[0][1]) <= limit:
                parts[0] = (turn.start, parts[0][1])
            else:
                parts.insert(0, (turn.start, turn.body))
            for k, (a, b) in enumerate(parts, start=1):
                part: dict[str, object] = {
                    "kind": "conversation",
                    "speakers": [turn.speaker],
                    "turns": [i, i],
                    "turn_part": [k, len(parts)],
                }
                drafts.append(Draft(a, b, part))
            i += 1
            continue
        head = turn.start
        context = 0
        for k in range(i - 1, max(-1, i - 1 - context_turns), -1):
            if sizes[k] > limit or count(turns[k].start, turn.end) > limit:
                break
            head = turns[k].start
            context += 1
        j = i
        while j + 1 < len(turns) and sizes[j + 1] <= limit:
            if count(head, turns[j + 1].end) > limit:
                break
            j += 1
        speakers = list(dict.fromkeys(t.speaker for t in turns[i : j + 1]))
        meta = {"kind": "conversation", "speakers": speakers, "turns": [i, j]}
        if context:
            meta["context_turns"] = context
            meta["content_start"] = turn.start
        drafts.append(Draft(head, turns[j].end, meta, core=turn.start))
        i = j + 1
    return measure, drafts
