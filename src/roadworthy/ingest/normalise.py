"""Stage 2b: one canonical form for text, with a report of every change.

Steps, in order (positions in the report are code point offsets into the text as that
step saw it):

1. ``surrogate``: surrogate pairs in a ``str`` are joined; lone surrogates (which cannot
   be stored as UTF-8) become U+FFFD.
2. ``line_ending``: CRLF, CR, NEL, U+2028 and U+2029 become ``\\n``.
3. One scan removes ``control`` (C0/C1 except newline and tab), ``bom``, ``zero_width``,
   ``soft_hyphen`` and ``noncharacter``; and, flagged ``suspicious`` as possible
   smuggling, ``tag_character`` (U+E0000-E007F, their hidden ASCII decoded into
   ``hidden_payloads``), ``bidi_control`` (overrides, embeddings, isolates) and
   ``variation_selector_run`` (bytes hidden as variation selectors after one character).
   Context decides the joiners: ZWJ stays inside emoji sequences, ZWJ/ZWNJ stay between
   letters of scripts that need them (Persian, Hindi, Malayalam, ...), the RGI flag tag
   sequences (England, Scotland, Wales) stay whole, and one variation selector after a
   character (emoji presentation, CJK ideographic variants) stays.
4. ``mojibake``: lines decoded with the wrong codec (``cafÃ©``) are repaired by ftfy's
   ``fix_encoding`` alone, its less certain heuristics off; ASCII is never touched. It
   runs after the scan (a stray BOM stops ftfy recognising a line) but before C1 controls
   go, since they are part of the evidence (``â€\\x9d`` is a UTF-8 right quote).
5. ``nfc``: Unicode NFC.

The steps run until the text stops changing (at most three rounds), so
``normalise_text(normalise_text(x)) == normalise_text(x)`` holds by construction.
Printable text of any script, emoji and their ZWJ sequences pass through unchanged.

:func:`skeleton` is a separate, lossy form (NFKD, case-folded, accents, invisibles and
confusables folded to ASCII look-alikes) used only to *match* patterns such as injection
phrases; it is never stored or sent as the text.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._chars import (
    BIDI_CONTROLS,
    CONFUSABLES,
    INVISIBLE,
    is_emoji,
    is_joiner_script,
    is_variation_selector,
)
from ._optional import require
from .config import NormaliseConfig
from .report import Change, NormalisationReport

__all__ = ["normalise_text", "skeleton"]

_MAX_POSITIONS = 20
_MAX_SAMPLES = 5
_LINE_ENDINGS = re.compile("\r\n|[\r\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FLAG_TAGS = re.compile("[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f")
_BLACK_FLAG = "\U0001f3f4"
_SUSPICIOUS = frozenset({"tag_character", "bidi_control", "variation_selector_run"})
_ftfy_config: Any = None


@dataclass
class _Log:
    """Accumulates changes by kind across steps and rounds."""

    field: str | None
    changes: dict[str, Change] = dataclasses.field(default_factory=dict)
    hidden: list[str] = dataclasses.field(default_factory=list)

    def add(self, kind: str, position: int | None, sample: str | None, count: int = 1) -> None:
        change = self.changes.get(kind)
        if change is None:
            change = self.changes[kind] = Change(
                kind, 0, self.field, suspicious=kind in _SUSPICIOUS
            )
        change.count += count
        if position is not None and len(change.positions) < _MAX_POSITIONS:
            change.positions.append(position)
        if (
            sample is not None
            and len(change.samples) < _MAX_SAMPLES
            and sample not in change.samples
        ):
            change.samples.append(sample)


def _cp(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _fix_surrogates(text: str, log: _Log) -> str:
    if not _SURROGATE.search(text):
        return text
    found = len(_SURROGATE.findall(text))
    # a UTF-16 round trip joins what can be paired and replaces what is left alone
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    lone = joined.count("\ufffd") - text.count("\ufffd")
    if found > lone:
        log.add("surrogate_pair", None, None, (found - lone) // 2)
    if lone:
        log.add("lone_surrogate", None, "U+FFFD", lone)
    return joined


# The characters cp1252 puts at 0x80-0x9F, where Latin-1 has C1 controls.
_CP1252_EXTRAS = frozenset(bytes(range(0x80, 0xA0)).decode("cp1252", errors="ignore"))


def _mojibake_candidate(line: str) -> bool:
    return not line.isascii() and all(ord(ch) < 0x100 or ch in _CP1252_EXTRAS for ch in line)


def _fix_mojibake(text: str, log: _Log) -> str:
    global _ftfy_config
    if text.isascii():
        return text
    ftfy = require("ftfy", "mojibake repair (normalise.fix_mojibake)")
    if _ftfy_config is None:
        _ftfy_config = ftfy.TextFixerConfig(
            unescape_html=False,
            remove_terminal_escapes=False,
            fix_encoding=True,
            restore_byte_a0=False,
            replace_lossy_sequences=False,
            decode_inconsistent_utf8=False,
            fix_c1_controls=False,
            fix_latin_ligatures=False,
            fix_character_width=False,
            uncurl_quotes=False,
            fix_line_breaks=False,
            fix_surrogates=False,
            remove_control_chars=False,
            normalization=None,
            explain=False,
        )
    # Only lines whose non-ASCII characters could all come from the Latin-1/cp1252 view of
    # UTF-8 bytes are candidates: that is the unambiguous, common case (cafÃ©). Text in
    # Latin Extended, Cyrillic, CJK... is never "repaired" into another script.
    lines = text.split("\n")
    fixed = "\n".join(
        str(ftfy.fix_text(line, _ftfy_config)) if _mojibake_candidate(line) else line
        for line in lines
    )
    if fixed != text:
        before, after = text.split("\n"), fixed.split("\n")
        changed = [(b, a) for b, a in zip(before, after, strict=False) if b != a]
        for b, a in changed[:_MAX_SAMPLES]:
            log.add("mojibake", None, f"{b[:40]!r} -> {a[:40]!r}", 0)
        log.add("mojibake", None, None, max(len(changed), 1))
    return fixed


def _fix_line_endings(text: str, log: _Log) -> str:
    if "\r" not in text and text.isascii():
        return text

    def replace(match: re.Match[str]) -> str:
        log.add("line_ending", match.start(), repr(match.group())[1:-1])
        return "\n"

    return _LINE_ENDINGS.sub(replace, text)


def _is_joined_letter(ch: str) -> bool:
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        return True
    return cat[0] == "M" and ch not in INVISIBLE and not is_variation_selector(ch)


def _keep_joiner(ch: str, prev: str | None, nxt: str | None) -> bool:
    if prev is None or nxt is None:
        return False
    if ch == "\u200d" and is_emoji(nxt) and (is_emoji(prev) or prev in "\ufe0f\U000e007f"):
        return True
    return is_joiner_script(prev) and _is_joined_letter(nxt) and is_joiner_script(nxt)


def _decode_selectors(run: str) -> str:
    data = bytearray()
    for ch in run:
        cp = ord(ch)
        data.append(cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16)
    return data.decode("utf-8", "replace")


_NONCHARACTERS = "\ufdd0-\ufdef\ufffe\uffff" + "".join(
    chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 17)
)
# Every code point _strip may act on; everything else is copied in spans.
_SCAN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200c\u200d\u202a-\u202e\u2066-\u2069"
    "\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef"
    + "".join(sorted(INVISIBLE))
    + _NONCHARACTERS
    + "]"
)


def _last(out: list[str]) -> str | None:
    return out[-1][-1] if out else None


def _strip(text: str, log: _Log, smuggling: bool, keep_c1: bool = False) -> str:
    out: list[str] = []
    pos, n = 0, len(text)
    for match in _SCAN.finditer(text):
        i = match.start()
        if i < pos:  # inside a run already handled
            continue
        if i > pos:
            out.append(text[pos:i])
        ch = text[i]
        cp = ord(ch)
        j = i + 1
        if cp < 0x20 or cp == 0x7F or (0x80 <= cp <= 0x9F and not keep_c1):
            log.add("control", i, _cp(ch))
        elif 0x80 <= cp <= 0x9F:
            out.append(ch)
        elif ch == "\ufeff" and i == 0:
            log.add("bom", i, _cp(ch))
        elif ch in INVISIBLE:
            log.add("zero_width", i, _cp(ch))
        elif ch == "\u00ad":
            log.add("soft_hyphen", i, _cp(ch))
        elif ch in "\u200c\u200d":
            if _keep_joiner(ch, _last(out), text[i + 1] if i + 1 < n else None):
                out.append(ch)
            else:
                log.add("zero_width", i, _cp(ch))
        elif 0xE0000 <= cp <= 0xE007F:
            while j < n and 0xE0000 <= ord(text[j]) <= 0xE007F:
                j += 1
            run = text[i:j]
            if (_last(out) == _BLACK_FLAG and _FLAG_TAGS.fullmatch(run)) or not smuggling:
                out.append(run)
            else:
                hidden = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) < 0xE007F)
                log.add("tag_character", i, hidden[:80] or _cp(ch), j - i)
                if hidden.strip():
                    log.hidden.append(hidden)
        elif ch in BIDI_CONTROLS:
            if smuggling:
                log.add("bidi_control", i, _cp(ch))
            else:
                out.append(ch)
        elif is_variation_selector(ch):
            while j < n and is_variation_selector(text[j]):
                j += 1
            prev = _last(out)
            if j - i > 1 and smuggling:
                hidden = _decode_selectors(text[i:j])
                log.add("variation_selector_run", i, hidden[:80], j - i)
                if hidden.strip():
                    log.hidden.append(hidden)
            elif prev is not None and prev not in "\n\t" and not is_variation_selector(prev):
                out.append(text[i:j])
            else:
                log.add("zero_width", i, _cp(ch), j - i)
        else:
            log.add("noncharacter", i, _cp(ch))
        pos = j
    if not out:
        return text if pos == 0 else text[pos:]
    out.append(text[pos:])
    return "".join(out)


def _nfc(text: str, log: _Log) -> str:
    if unicodedata.is_normalized("NFC", text):
        return text
    fixed = unicodedata.normalize("NFC", text)
    log.add("nfc", None, None, max(len(text) - len(fixed), 1))
    return fixed


def normalise_text(
    text: str, config: NormaliseConfig | None = None, *, field: str | None = None
) -> tuple[str, NormalisationReport]:
    """Return the canonical form of ``text`` and what was changed to get there."""
    config = config or NormaliseConfig()
    log = _Log(field)
    if not config.enabled:
        return text, NormalisationReport()
    smuggling, mojibake = config.strip_smuggling, config.fix_mojibake
    steps: list[Callable[[str, _Log], str]] = [
        _fix_surrogates,
        _fix_line_endings,
        lambda t, lg: _strip(t, lg, smuggling, keep_c1=mojibake),
    ]
    if mojibake:
        steps += [_fix_mojibake, lambda t, lg: _strip(t, lg, smuggling)]
    steps.append(_nfc)
    for _ in range(3):
        before = text
        for step in steps:
            text = step(text, log)
        if text == before:
            break
    return text, NormalisationReport(list(log.changes.values()), log.hidden)


_WS = re.compile(r"\s+")


def _ignorable(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return (cat in ("Mn", "Me", "Cf", "Cc") and ch not in "\n\t") or ch in INVISIBLE


def skeleton(text: str) -> str:
    """A lossy matching key: ``"IGN\\u041eRE\\u200b prévious"`` -> ``"ignore previous"``.

    NFKD folds compatibility forms (fullwidth, mathematical letters, ligatures), case
    folding and accent stripping follow, invisibles and bidi controls disappear, a table of
    cross-script look-alikes maps to ASCII, and all whitespace runs become one space.
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    kept = "".join(CONFUSABLES.get(ch, ch) for ch in folded if not _ignorable(ch))
    return _WS.sub(" ", kept).strip()
