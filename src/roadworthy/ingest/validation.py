"""Stage 1: validate a raw payload before anything expensive touches it.

Checks run cheapest first: the size of the raw bytes (a 50 MB upload is refused before a
single byte is decoded), the declared type against the magic bytes, decoding, NUL bytes,
emptiness, then parsing of structured formats with depth and row limits, and finally the
per-pipeline field schema. Every failure is an :class:`~roadworthy.errors.InputRejected`
with a stable ``code``; :func:`validate` never lets one bad input raise anything else.

Rejection codes: ``too_large``, ``too_many_tokens``, ``empty``, ``nul_byte``,
``invalid_encoding``, ``binary``, ``unsupported_media_type``, ``type_mismatch``,
``malformed_json``, ``truncated_json``, ``too_deep``, ``malformed_jsonl``,
``malformed_csv``, ``too_many_rows``, ``not_an_object``, ``missing_field``,
``wrong_type``, ``corrupt_file``, ``no_text``, ``too_long``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputRejected
from .config import FieldRule, IngestConfig
from .decode import decode_bytes
from .report import ValidationReport
from .sniff import BINARY_KINDS, declared_kind, media_type_of, resolve_kind

__all__ = [
    "TokenCounter",
    "Validated",
    "check_fields",
    "check_tokens",
    "estimate_tokens",
    "json_depth",
    "payload_bytes",
    "validate",
]

TokenCounter = Callable[[str], int]

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper-leaning estimate: ASCII at 4 characters per token, every
    other code point as one token.

    BPE tokenizers average ~4 ASCII characters per token on English, and CJK or emoji
    cost about one token (or more) per character; counting non-ASCII as one each errs on
    the high side for accented Latin, which is the safe side for a limit. Pass a real
    counter (e.g. from ``roadworthy.chunking``) where exact counts matter.
    """
    if text.isascii():
        return math.ceil(len(text) / 4)
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def payload_bytes(payload: bytes | str | dict[str, Any]) -> bytes:
    """The canonical bytes hashed for a payload (dicts as sorted, compact JSON)."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return json.dumps(
        payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    ).encode("utf-8", "surrogatepass")


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion to blow up);
    stops counting once ``limit`` is exceeded."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass
class Validated:
    """A payload that passed validation: its report plus the decoded text or parsed data."""

    report: ValidationReport
    raw: bytes
    text: str | None = None
    data: Any = None


def _parse_json(text: str, limit: int, field: str | None = None, *, jsonl: bool = False) -> Any:
    code = "malformed_jsonl" if jsonl else "malformed_json"
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputRejected("too_deep", f"JSON nesting deeper than {limit}", field) from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            code = code if jsonl else "truncated_json"
            msg = f"JSON ends early ({exc.msg})"
        else:
            msg = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InputRejected(code, msg, field) from None
    if json_depth(value, limit) > limit:
        raise InputRejected("too_deep", f"JSON nesting deeper than {limit}", field)
    return value


def _parse_jsonl(text: str, config: IngestConfig) -> list[Any]:
    rows: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(rows) >= config.limits.max_rows:
            raise InputRejected("too_many_rows", f"more than {config.limits.max_rows} rows")
        rows.append(_parse_json(line, config.limits.max_json_depth, f"line {number}", jsonl=True))
    if not rows:
        raise InputRejected("empty", "no JSON lines")
    return rows


def _parse_csv(text: str, config: IngestConfig) -> list[dict[str, str]]:
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise InputRejected("malformed_csv", "no header row", "row 1")
        names = [h.strip() for h in header]
        if len(set(names)) != len(names) or "" in names:
            raise InputRejected("malformed_csv", "header has empty or duplicate names", "row 1")
        rows: list[dict[str, str]] = []
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(names):
                raise InputRejected(
                    "malformed_csv",
                    f"row has {len(values)} values, header has {len(names)} (ragged row)",
                    f"row {line}",
                )
            if len(rows) >= config.limits.max_rows:
                raise InputRejected("too_many_rows", f"more than {config.limits.max_rows} rows")
            rows.append(dict(zip(names, values, strict=True)))
    except csv.Error as exc:
        raise InputRejected("malformed_csv", str(exc), f"row {reader.line_num}") from None
    if not rows:
        raise InputRejected("empty", "CSV has a header but no rows")
    return rows


def check_tokens(text: str, limit: int | None, count: TokenCounter, field: str | None) -> int:
    """Count the tokens of ``text``; reject with ``too_many_tokens`` over ``limit``."""
    tokens = count(text)
    if limit is not None and tokens > limit:
        raise InputRejected("too_many_tokens", f"about {tokens} tokens, limit {limit}", field)
    return tokens


def _find_nul(value: Any, path: str) -> str | None:
    """The path of the first string value containing a NUL byte, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, child in value.items():
            found = _find_nul(child, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found = _find_nul(child, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _check_value(name: str, rule: FieldRule, value: Any, count: TokenCounter) -> None:
    expected = _PY_TYPES[rule.type]
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and rule.type in ("integer", "number")):
        raise InputRejected(
            "wrong_type", f"expected {rule.type}, got {type(value).__name__}", field=name
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise InputRejected("nul_byte", "text contains a NUL byte", field=name)
        if not rule.allow_empty and not value.strip():
            raise InputRejected("empty", "text is empty", field=name)
        if rule.max_bytes is not None:
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > rule.max_bytes:
                raise InputRejected(
                    "too_large", f"{size} bytes, limit {rule.max_bytes}", field=name
                )
        if rule.max_tokens is not None:
            check_tokens(value, rule.max_tokens, count, name)


def check_fields(
    data: Any, config: IngestConfig, count: TokenCounter, prefix: str = ""
) -> dict[str, Any]:
    """Check one object against ``config.fields``; unknown fields pass through."""
    if not isinstance(data, dict):
        raise InputRejected(
            "not_an_object", f"expected a JSON object, got {type(data).__name__}", prefix or None
        )
    for name, rule in config.fields.items():
        if name not in data or data[name] is None:
            if rule.required:
                raise InputRejected("missing_field", "required field is missing", prefix + name)
            continue
        _check_value(prefix + name, rule, data[name], count)
    return data


def _reject_nul_and_empty(text: str) -> None:
    nul = text.find("\x00")
    if nul != -1:
        raise InputRejected("nul_byte", f"text contains a NUL byte at character {nul}")
    if not text.strip():
        raise InputRejected("empty", "text is empty or only whitespace")


def validate(
    payload: bytes | str | dict[str, Any],
    *,
    media_type: str | None = None,
    filename: str | None = None,
    config: IngestConfig,
    count_tokens: TokenCounter = estimate_tokens,
    report: ValidationReport | None = None,
) -> Validated:
    """Validate ``payload``; return it decoded/parsed, or raise :class:`InputRejected`.

    The payload hash is computed first so callers can store it with a rejection (see
    :func:`payload_bytes`); :func:`~roadworthy.ingest.ingest` does that for you and passes
    its ``report`` in, so a rejection still carries what was learned before it.
    """
    raw = payload_bytes(payload)
    if report is None:
        report = ValidationReport(hashlib.sha256(raw).hexdigest(), len(raw))
    limits = config.limits
    if len(raw) > limits.max_bytes:
        raise InputRejected("too_large", f"{len(raw)} bytes, limit {limits.max_bytes}")
    if isinstance(payload, dict):
        report.kind = report.declared_kind = report.detected_kind = "object"
        report.media_type = media_type_of("object")
        if json_depth(payload, limits.max_json_depth) > limits.max_json_depth:
            raise InputRejected("too_deep", f"nesting deeper than {limits.max_json_depth}")
        nul_field = _find_nul(payload, "")
        if nul_field is not None:
            # A NUL in any string value is a broken or hostile producer, declared field or not.
            raise InputRejected("nul_byte", "text contains a NUL byte", field=nul_field or None)
        return Validated(report, raw, data=payload)
    if not raw:
        raise InputRejected("empty", "payload is empty (0 bytes)")

    declared = declared_kind(media_type, filename)
    if isinstance(payload, str):
        if declared in BINARY_KINDS:
            raise InputRejected(
                "type_mismatch", f"declared {declared} but got a text string", "media_type"
            )
        sniffed = resolve_kind(raw[:65536], declared)
    else:
        sniffed = resolve_kind(raw, declared)
    report.kind, report.media_type = sniffed.kind, sniffed.media_type
    report.declared_kind, report.detected_kind = sniffed.declared, sniffed.detected
    if config.kinds is not None and sniffed.kind not in config.kinds:
        raise InputRejected(
            "unsupported_media_type",
            f"{sniffed.kind} is not accepted here (allowed: {', '.join(config.kinds)})",
            "media_type",
        )
    if sniffed.kind in BINARY_KINDS:
        return Validated(report, raw)

    if isinstance(payload, str):
        text = payload
        report.encoding = "utf-8"
    else:
        charset = None
        if media_type and "charset=" in media_type.lower():
            charset = media_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'")
        decoded = decode_bytes(raw, charset=charset, allow_legacy=config.allow_legacy_encodings)
        text = decoded.text
        report.encoding, report.encoding_confidence = decoded.encoding, decoded.confidence
        if decoded.encoding not in ("utf-8", "ascii"):
            report.notes.append(f"decoded as {decoded.encoding}")
    _reject_nul_and_empty(text)
    if limits.max_tokens is not None:
        check_tokens(text, limits.max_tokens, count_tokens, None)

    data: Any = None
    depth = limits.max_json_depth
    if sniffed.kind == "json":
        data = _parse_json(text, depth)
    elif sniffed.kind == "jsonl":
        data = _parse_jsonl(text, config)
    elif sniffed.kind == "csv":
        data = _parse_csv(text, config)
    return Validated(report, raw, text=text, data=data)
