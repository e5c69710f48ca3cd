"""Stage 2a: turn a validated payload into fields (and pages, and audio) to normalise.

Documents (text, Markdown, HTML, PDF) become one text field named by
``IngestConfig.text_field``; JSON objects and dicts keep their shape and are checked
against the field schema; CSV, JSONL and JSON arrays become ``{"rows": [...]}`` with the
schema checked per row; audio becomes a 16 kHz mono WAV with no text fields (the
transcription step adds them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputRejected
from .audio import normalise_audio
from .config import IngestConfig
from .html import html_to_text
from .pdf import pdf_pages
from .report import ExtractionReport
from .sniff import AUDIO_KINDS
from .validation import TokenCounter, Validated, check_fields, estimate_tokens

__all__ = ["Extracted", "extract"]


@dataclass
class Extracted:
    report: ExtractionReport
    fields: dict[str, Any]
    pages: list[str] | None = None
    audio_wav: bytes | None = None


def _rows(rows: list[Any], config: IngestConfig, count: TokenCounter) -> list[Any]:
    if config.fields:
        for index, row in enumerate(rows):
            check_fields(row, config, count, prefix=f"rows[{index}].")
    return rows


def extract(
    validated: Validated, config: IngestConfig, count_tokens: TokenCounter = estimate_tokens
) -> Extracted:
    """Extract fields from ``validated``; raise :class:`InputRejected` on corrupt content."""
    kind = validated.report.kind or "text"
    report = ExtractionReport(kind)
    name = config.text_field
    if kind == "object":
        return Extracted(report, check_fields(dict(validated.data), config, count_tokens))
    if kind in ("json", "jsonl", "csv"):
        data = validated.data
        if isinstance(data, dict):
            return Extracted(report, check_fields(data, config, count_tokens))
        if isinstance(data, list):
            report.rows = len(data)
            return Extracted(report, {"rows": _rows(data, config, count_tokens)})
        if config.fields:
            raise InputRejected(
                "not_an_object", f"expected a JSON object, got {type(data).__name__}"
            )
        return Extracted(report, {name: data})
    if kind in AUDIO_KINDS:
        info, wav = normalise_audio(
            validated.raw, kind=kind, max_seconds=config.limits.max_audio_seconds
        )
        report.audio = info
        if info.peak == 0.0:
            report.notes.append("audio is silent")
        return Extracted(report, {}, audio_wav=wav)
    if kind == "pdf":
        pages = pdf_pages(validated.raw, max_pages=config.limits.max_pdf_pages)
        report.pages = len(pages)
        report.empty_pages = [i + 1 for i, page in enumerate(pages) if not page.strip()]
        return Extracted(report, {}, pages=pages)
    text = validated.text or ""
    if kind == "html":
        converted = html_to_text(text)
        report.hidden_text = converted.hidden
        if converted.title:
            report.notes.append(f"title: {converted.title[:200]}")
        if not converted.text.strip():
            raise InputRejected("no_text", "HTML has no visible text", name)
        text = converted.text
    fields = {name: text}
    if config.fields:
        check_fields(fields, config, count_tokens)
    return Extracted(report, fields)
