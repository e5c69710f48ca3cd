"""Character classes the normaliser and the skeleton need, kept as small literal tables.

The stdlib has no script or emoji property, and a full confusables table is 6,000 lines;
these tables cover what matters here (emoji sequences, scripts that need joiners, the
Latin look-alikes attackers actually use) and are easy to audit.
"""

from __future__ import annotations

__all__ = [
    "BIDI_CONTROLS",
    "CONFUSABLES",
    "INVISIBLE",
    "is_emoji",
    "is_joiner_script",
    "is_variation_selector",
    "script_of",
]

# Explicit embeddings, overrides and isolates (Trojan Source, CVE-2021-42574). LRM/RLM/ALM
# marks are legitimate in right-to-left text and are kept.
BIDI_CONTROLS = frozenset(
    chr(c) for c in (0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069)
)

# Invisible characters removed outright. ZWJ (U+200D) and ZWNJ (U+200C) are handled by
# context (emoji sequences, joining scripts); U+FEFF is reported as a BOM at the start.
INVISIBLE = frozenset(
    chr(c)
    for c in (
        0x200B,  # zero width space
        0x2060,  # word joiner
        0x2061, 0x2062, 0x2063, 0x2064,  # invisible math operators
        0x180E,  # mongolian vowel separator (no longer a space)
        0xFEFF,  # zero width no-break space / BOM
        0xFFF9, 0xFFFA, 0xFFFB,  # interlinear annotation controls
        0x115F, 0x1160, 0x3164, 0xFFA0,  # hangul fillers, used as "blank" names
        0x034F,  # combining grapheme joiner
    )
)  # fmt: skip

_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),
    (0x2600, 0x27BF),
    (0x2300, 0x23FF),
    (0x2B00, 0x2BFF),
    (0x2190, 0x21FF),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3299),
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x20E3, 0x20E3),  # combining enclosing keycap
    (0x1F3FB, 0x1F3FF),  # skin tone modifiers
)

# Scripts whose orthography uses ZWJ/ZWNJ between letters (Persian, Hindi, Malayalam,
# Sinhala, ...): removing them changes how words are written.
_JOINER_SCRIPTS = (
    (0x0590, 0x08FF),  # Hebrew, Arabic, Syriac, Thaana, NKo, ...
    (0x0900, 0x0DFF),  # Devanagari ... Sinhala
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x18AF),  # Khmer, Mongolian
    (0xA8E0, 0xA8FF),  # Devanagari extended
    (0xFB1D, 0xFDFF),  # Hebrew/Arabic presentation forms
    (0xFE70, 0xFEFE),
)

_SCRIPTS = (
    (0x0041, 0x024F, "Latin"),
    (0x1E00, 0x1EFF, "Latin"),
    (0x0370, 0x03FF, "Greek"),
    (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"),
    (0x0530, 0x058F, "Armenian"),
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"),
    (0x0750, 0x077F, "Arabic"),
    (0x08A0, 0x08FF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0980, 0x09FF, "Bengali"),
    (0x0A00, 0x0A7F, "Gurmukhi"),
    (0x0A80, 0x0AFF, "Gujarati"),
    (0x0B80, 0x0BFF, "Tamil"),
    (0x0C00, 0x0C7F, "Telugu"),
    (0x0C80, 0x0CFF, "Kannada"),
    (0x0D00, 0x0D7F, "Malayalam"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul"),
    (0x3040, 0x309F, "Hiragana"),
    (0x30A0, 0x30FF, "Katakana"),
    (0x3130, 0x318F, "Hangul"),
    (0x3400, 0x4DBF, "Han"),
    (0x4E00, 0x9FFF, "Han"),
    (0xAC00, 0xD7AF, "Hangul"),
    (0xF900, 0xFAFF, "Han"),
    (0x20000, 0x3134F, "Han"),
)

# Look-alikes of Latin letters from other scripts (a subset of Unicode confusables.txt,
# lower case, applied after case folding). NFKC already folds fullwidth and mathematical
# alphanumerics, so they are not listed.
CONFUSABLES: dict[str, str] = {
    "\u0430": "a",  # cyrillic small letter a
    "\u0432": "b",  # cyrillic small letter ve
    "\u0441": "c",  # cyrillic small letter es
    "\u0501": "d",  # cyrillic small letter komi de
    "\u0435": "e",  # cyrillic small letter ie
    "\u0451": "e",  # cyrillic small letter io
    "\u04bb": "h",  # cyrillic small letter shha
    "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
    "\u0457": "i",  # cyrillic small letter yi
    "\u0458": "j",  # cyrillic small letter je
    "\u043a": "k",  # cyrillic small letter ka
    "\u04cf": "l",  # cyrillic small letter palochka
    "\u043c": "m",  # cyrillic small letter em
    "\u043f": "n",  # cyrillic small letter pe
    "\u043e": "o",  # cyrillic small letter o
    "\u0440": "p",  # cyrillic small letter er
    "\u051b": "q",  # cyrillic small letter qa
    "\u0433": "r",  # cyrillic small letter ghe
    "\u0455": "s",  # cyrillic small letter dze
    "\u0442": "t",  # cyrillic small letter te
    "\u0446": "u",  # cyrillic small letter tse
    "\u0475": "v",  # cyrillic small letter izhitsa
    "\u051d": "w",  # cyrillic small letter we
    "\u0445": "x",  # cyrillic small letter ha
    "\u0443": "y",  # cyrillic small letter u
    "\u04af": "y",  # cyrillic small letter straight u
    "\u0437": "3",  # cyrillic small letter ze
    "\u0261": "g",  # latin small letter script g
    "\u050d": "g",  # cyrillic small letter komi sje
    "\u043d": "h",  # cyrillic small letter en
    "\u044c": "b",  # cyrillic small letter soft sign
    "\u0461": "w",  # cyrillic small letter omega
    "\u03b1": "a",  # greek small letter alpha
    "\u03b2": "b",  # greek small letter beta
    "\u03f2": "c",  # greek lunate sigma symbol
    "\u03b5": "e",  # greek small letter epsilon
    "\u03b7": "n",  # greek small letter eta
    "\u03b9": "i",  # greek small letter iota
    "\u03ba": "k",  # greek small letter kappa
    "\u03bd": "v",  # greek small letter nu
    "\u03bf": "o",  # greek small letter omicron
    "\u03c1": "p",  # greek small letter rho
    "\u03c4": "t",  # greek small letter tau
    "\u03c5": "u",  # greek small letter upsilon
    "\u03c7": "x",  # greek small letter chi
    "\u03b3": "y",  # greek small letter gamma
    "\u03c9": "w",  # greek small letter omega
    "\u03f3": "j",  # greek letter yot
    "\u03bc": "u",  # greek small letter mu
    "\u03c3": "o",  # greek small letter sigma
    "\u03c2": "c",  # greek small letter final sigma
    "\u0585": "o",  # armenian small letter oh
    "\u057d": "u",  # armenian small letter seh
    "\u0581": "g",  # armenian small letter co
    "\u0570": "h",  # armenian small letter ho
    "\u0578": "n",  # armenian small letter vo
    "\u0131": "i",  # latin small letter dotless i
    "\u0237": "j",  # latin small letter dotless j
    "\u029f": "l",  # latin letter small capital l
    "\u026a": "i",  # latin letter small capital i
    "\u0274": "n",  # latin letter small capital n
    "\u0280": "r",  # latin letter small capital r
    "\ua731": "s",  # latin letter small capital s
    "\u1d00": "a",  # latin letter small capital a
    "\u1d04": "c",  # latin letter small capital c
    "\u1d05": "d",  # latin letter small capital d
    "\u1d07": "e",  # latin letter small capital e
    "\u1d0a": "j",  # latin letter small capital j
    "\u1d0b": "k",  # latin letter small capital k
    "\u1d0d": "m",  # latin letter small capital m
    "\u1d0f": "o",  # latin letter small capital o
    "\u1d18": "p",  # latin letter small capital p
    "\u1d1b": "t",  # latin letter small capital t
    "\u1d1c": "u",  # latin letter small capital u
    "\u1d20": "v",  # latin letter small capital v
    "\u1d21": "w",  # latin letter small capital w
    "\u1d22": "z",  # latin letter small capital z
    "\u0251": "a",  # latin small letter alpha
    "\u0269": "i",  # latin small letter iota
    "\u2113": "l",  # script small l
    "\u01c0": "l",  # latin letter dental click
}


def _in(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def is_emoji(ch: str) -> bool:
    """Pictographic or an emoji component (modifier, keycap); approximate but stdlib-only."""
    return _in(ord(ch), _EMOJI_RANGES)


def is_variation_selector(ch: str) -> bool:
    cp = ord(ch)
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def is_joiner_script(ch: str) -> bool:
    return _in(ord(ch), _JOINER_SCRIPTS)


def script_of(ch: str) -> str | None:
    """The script of a letter, for the few scripts the language heuristic tells apart."""
    cp = ord(ch)
    if cp < 0x41:
        return None
    for lo, hi, name in _SCRIPTS:
        if lo <= cp <= hi:
            return name
    return None
