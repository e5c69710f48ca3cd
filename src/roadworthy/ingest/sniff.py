"""Decide what a payload is from its bytes as well as from what the caller declared.

A declared type is a claim, not a fact: a ``.pdf`` that is really HTML, or a ``.txt`` that
is really a ZIP, is rejected as ``type_mismatch`` instead of being handed to the wrong
parser. Magic bytes decide binary formats; text formats are told apart by the declaration
(Markdown cannot be sniffed) and, without one, by a cheap look at the first bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputRejected

__all__ = [
    "AUDIO_KINDS",
    "BINARY_KINDS",
    "TEXT_KINDS",
    "Sniffed",
    "declared_kind",
    "detect_binary",
    "detect_text_kind",
    "media_type_of",
    "resolve_kind",
]

TEXT_KINDS = frozenset({"text", "markdown", "html", "json", "jsonl", "csv"})
AUDIO_KINDS = frozenset({"wav", "flac", "ogg", "mp3"})
BINARY_KINDS = AUDIO_KINDS | {"pdf"}

_MEDIA_TYPES: dict[str, str] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/pdf": "pdf",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/vorbis": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
}
_CANONICAL: dict[str, str] = {
    "text": "text/plain",
    "markdown": "text/markdown",
    "html": "text/html",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "csv": "text/csv",
    "pdf": "application/pdf",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "object": "application/json",
}
_EXTENSIONS: dict[str, str] = {
    "txt": "text",
    "text": "text",
    "log": "text",
    "md": "markdown",
    "markdown": "markdown",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "json": "json",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "csv": "csv",
    "tsv": "csv",
    "pdf": "pdf",
    "wav": "wav",
    "wave": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "oga": "ogg",
    "mp3": "mp3",
}
# Binary formats we recognise only to reject them with a clear name.
_UNSUPPORTED_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"PK\x03\x04", "ZIP archive (or DOCX/XLSX)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE document (DOC/XLS)"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000 image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
]
_HTML_START = re.compile(rb"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Sniffed:
    kind: str
    media_type: str
    declared: str | None
    detected: str | None


def media_type_of(kind: str) -> str:
    return _CANONICAL.get(kind, "application/octet-stream")


def declared_kind(media_type: str | None, filename: str | None) -> str | None:
    """The kind the caller claims; an unknown media type or extension is rejected."""
    if media_type:
        base = media_type.split(";", 1)[0].strip().lower()
        kind = _MEDIA_TYPES.get(base)
        if kind is None:
            raise InputRejected(
                "unsupported_media_type", f"media type {base!r} is not supported", "media_type"
            )
        return kind
    if filename and "." in filename.rsplit("/", 1)[-1]:
        ext = filename.rsplit(".", 1)[1].lower()
        kind = _EXTENSIONS.get(ext)
        if kind is None:
            raise InputRejected(
                "unsupported_media_type", f"file extension .{ext} is not supported", "filename"
            )
        return kind
    return None


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio Layer III frame header (not just any 0xFF 0xE0 sync: FF FE is the
    UTF-16 byte-order mark)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def detect_binary(head: bytes) -> str | None:
    """The binary kind the magic bytes say, ``None`` for (probably) text.

    Raises ``unsupported_media_type`` for recognised formats roadworthy does not read.
    """
    if (head.startswith(b"RIFF") and head[8:12] == b"WAVE") or head.startswith(b"RF64"):
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "mp3"
    pdf_at = head.find(b"%PDF-", 0, 1024)
    if pdf_at != -1 and not head[:pdf_at].strip(b" \t\r\n\x00"):
        return "pdf"
    if head.startswith(_BOMS):
        return None
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise InputRejected("unsupported_media_type", f"content is a {name}")
    return None


def detect_text_kind(data: bytes) -> str:
    """html, json or text, guessed for an undeclared text payload.

    JSON needs both ends to look like JSON, so prose that starts with ``[`` stays text.
    """
    head = data[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if _HTML_START.match(head):
        return "html"
    first, last = head.lstrip()[:1], data[-64:].rstrip()[-1:]
    if (first, last) in ((b"{", b"}"), (b"[", b"]")):
        return "json"
    return "text"


def resolve_kind(data: bytes, declared: str | None) -> Sniffed:
    """Reconcile the declared kind with the content; raise ``type_mismatch`` on conflict."""
    binary = detect_binary(data[:1024])
    if binary is not None:
        if declared is not None and declared != binary:
            raise InputRejected(
                "type_mismatch",
                f"declared {declared} but the content is {binary} (magic bytes)",
                "media_type",
            )
        return Sniffed(binary, media_type_of(binary), declared, binary)
    detected = detect_text_kind(data)
    if declared in BINARY_KINDS:
        described = "HTML" if detected == "html" else "text"
        raise InputRejected(
            "type_mismatch",
            f"declared {declared} but the content is {described} (no {declared} signature)",
            "media_type",
        )
    kind = declared or detected
    return Sniffed(kind, media_type_of(kind), declared, detected)
