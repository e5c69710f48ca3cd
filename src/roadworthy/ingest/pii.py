"""Cheap, validated PII detection: emails, phone numbers, card numbers (Luhn), IBANs
(mod-97) and US social security numbers.

Checksums keep false positives down: a 16-digit order number is a card only if it passes
Luhn, a ``DE..`` reference is an IBAN only if its length matches the country and mod 97
gives 1. Reports keep a masked form (``****4242``), never the value, because they are
stored with the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .report import PiiMatch

__all__ = ["PLACEHOLDERS", "find_pii", "iban_valid", "luhn_valid", "redact"]

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "ssn": "[SSN]",
}
# IBAN length per country (ISO 13616 registry, the common ones); others: 15-34.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "ME": 22, "MK": 19, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29,
}  # fmt: skip

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\d-])")
_PHONE_NANP = re.compile(r"(?<![\w(+-])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\d-])")
# when two matches overlap, the earlier in this list wins
_ORDER = ("card", "iban", "ssn", "phone", "email")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    if not digits.isdigit() or len(set(digits)) == 1:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: country length (where known) and mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _mask(value: str) -> str:
    visible = 4 if len(value) > 8 else 1
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return "*" * max(len(value) - visible, 3) + value[-visible:]


def _candidates(text: str, kinds: Iterable[str]) -> list[tuple[int, int, str]]:
    wanted = set(kinds)
    found: list[tuple[int, int, str]] = []
    if "card" in wanted:
        for m in _CARD.finditer(text):
            if luhn_valid(re.sub(r"[ -]", "", m.group())):
                found.append((m.start(), m.end(), "card"))
    if "iban" in wanted:
        for m in _IBAN.finditer(text):
            compact = m.group().replace(" ", "")
            length = _IBAN_LENGTHS.get(compact[:2], len(compact))
            if len(compact) < length or not iban_valid(compact[:length]):
                continue
            # the regex may run into a following code; end where the IBAN ends
            end, seen = m.start(), 0
            while seen < length:
                seen += text[end] != " "
                end += 1
            found.append((m.start(), end, "iban"))
    if "ssn" in wanted:
        found.extend((m.start(), m.end(), "ssn") for m in _SSN.finditer(text))
    if "phone" in wanted:
        for pattern in (_PHONE_INTL, _PHONE_NANP):
            for m in pattern.finditer(text):
                digits = sum(ch.isdigit() for ch in m.group())
                if 8 <= digits <= 15 or pattern is _PHONE_NANP:
                    found.append((m.start(), m.end(), "phone"))
    if "email" in wanted:
        found.extend((m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
    return found


def find_pii(text: str, kinds: Iterable[str], field: str | None = None) -> list[PiiMatch]:
    """Non-overlapping PII matches in ``text``, in order of position."""
    candidates = sorted(_candidates(text, kinds), key=lambda c: (c[0], _ORDER.index(c[2])))
    matches: list[PiiMatch] = []
    taken_until = -1
    for start, end, kind in candidates:
        if start < taken_until:
            continue
        value = text[start:end]
        matches.append(PiiMatch(kind, field, start, end, _mask(value), PLACEHOLDERS[kind]))
        taken_until = end
    return matches


def redact(text: str, matches: list[PiiMatch]) -> str:
    """Replace each match with its typed placeholder, e.g. ``[EMAIL]``."""
    parts: list[str] = []
    cursor = 0
    for match in sorted(matches, key=lambda m: m.start):
        parts.append(text[cursor : match.start])
        parts.append(match.placeholder)
        cursor = match.end
    parts.append(text[cursor:])
    return "".join(parts)
