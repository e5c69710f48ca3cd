"""Bytes to text, strictly: detect the encoding, refuse what cannot be decoded honestly.

Order of trust: a byte-order mark, then a declared ``charset``, then strict UTF-8, then a
UTF-16 pattern without BOM (NUL bytes at every other position), then charset-normalizer
for legacy single- and multi-byte encodings. Bytes that are *mostly* valid UTF-8 with a
few broken sequences are rejected rather than re-guessed as cp1252: that is a damaged
UTF-8 file, and guessing would silently turn it into mojibake.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from ..errors import InputRejected
from ._optional import require

__all__ = ["Decoded", "decode_bytes"]

_BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_SAMPLE = 64 * 1024


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    confidence: float
    had_bom: bool = False


def _strict(data: bytes, encoding: str, why: str) -> str:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
        raise InputRejected(
            "invalid_encoding", f"{why}, but it is not valid {encoding}{where}"
        ) from None


def _utf16_without_bom(data: bytes) -> str | None:
    """Mostly-ASCII UTF-16 has NUL in every other byte; decode it if that pattern holds."""
    sample = data[:_SAMPLE]
    if len(sample) < 4 or len(data) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nul, odd_nul = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nul > 0.3 and even_nul < 0.05:
        encoding = "utf-16-le"
    elif even_nul > 0.3 and odd_nul < 0.05:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _control_ratio(text: str) -> float:
    sample = text[:_SAMPLE]
    if not sample:
        return 0.0
    bad = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    return bad / len(sample)


def decode_bytes(data: bytes, *, charset: str | None = None, allow_legacy: bool = True) -> Decoded:
    """Decode ``data`` or raise :class:`InputRejected` (``invalid_encoding``, ``binary``)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return Decoded(
                _strict(data[len(bom) :], encoding, f"starts with a {encoding} BOM"),
                encoding,
                1.0,
                had_bom=True,
            )
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            raise InputRejected(
                "invalid_encoding", f"unknown charset {charset!r}", "media_type"
            ) from None
        return Decoded(_strict(data, charset, f"declared charset {charset}"), charset, 1.0)
    if b"\x00" in data[:_SAMPLE]:
        text16 = _utf16_without_bom(data)
        if text16 is not None:
            encoding = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
            return Decoded(text16, encoding, 0.9)
    try:
        return Decoded(data.decode("utf-8"), "utf-8", 1.0)
    except UnicodeDecodeError as exc:
        error = exc
    if _UTF8_MULTIBYTE.search(data, 0, error.start + 1) or _UTF8_MULTIBYTE.search(data, error.end):
        kind = "truncated" if error.reason == "unexpected end of data" else "invalid"
        raise InputRejected(
            "invalid_encoding",
            f"{kind} UTF-8 at byte {error.start} ({error.reason}) in otherwise UTF-8 text",
        )
    if not allow_legacy:
        raise InputRejected("invalid_encoding", f"not valid UTF-8 at byte {error.start}")
    cn = require("charset_normalizer", "decoding non-UTF-8 text")
    matches = list(cn.from_bytes(data))
    best = matches[0] if matches else None
    # Short samples tie between code pages; cp1252 is what the web means by "latin-1".
    for match in matches[1:]:
        if match.encoding == "cp1252" and best is not None and match.chaos <= best.chaos:
            best = match
    if best is None:
        raise InputRejected("binary", "content is not text in any known encoding")
    text = str(best)
    if _control_ratio(text) > 0.05:
        raise InputRejected("binary", f"content decodes as {best.encoding} but is mostly controls")
    return Decoded(text, str(best.encoding), round(1.0 - float(best.chaos), 3))
