"""The input layer: validate, extract and normalise, screen and classify every input.

Each stage is usable on its own and returns a JSON-serialisable report:

- :func:`validate` — size, type (magic bytes vs. declared), decoding, parsing, schema;
- :func:`extract` and :func:`normalise_text` — formats to fields, text to one canonical
  form, with every change reported (:func:`skeleton` is for matching only);
- :func:`screen` and :class:`Router` — injection and PII flags with the policy's action,
  and the processing route.

:func:`ingest` runs them all and returns an :class:`IngestResult` that is either accepted
or rejected with a stable code; it never raises for a bad input.
"""

from __future__ import annotations

from .api import Ingestor, Payload, ingest
from .classify import CentroidClassifier, EmbedFn, Router, detect_language
from .config import (
    CentroidClassifierConfig,
    FieldRule,
    IngestConfig,
    LimitsConfig,
    NormaliseConfig,
    RouteRule,
    RoutingConfig,
    ScreenConfig,
)
from .extraction import Extracted, extract
from .normalise import normalise_text, skeleton
from .pii import find_pii, iban_valid, luhn_valid, redact
from .report import (
    AudioInfo,
    Change,
    ExtractionReport,
    Flag,
    IngestResult,
    NormalisationReport,
    PiiMatch,
    Rejection,
    RouteDecision,
    ScreenReport,
    ValidationReport,
    to_jsonable,
)
from .screening import ScreenInput, find_injection, screen
from .validation import TokenCounter, Validated, estimate_tokens, validate

__all__ = [
    "AudioInfo",
    "CentroidClassifier",
    "CentroidClassifierConfig",
    "Change",
    "EmbedFn",
    "Extracted",
    "ExtractionReport",
    "FieldRule",
    "Flag",
    "IngestConfig",
    "IngestResult",
    "Ingestor",
    "LimitsConfig",
    "NormalisationReport",
    "NormaliseConfig",
    "Payload",
    "PiiMatch",
    "Rejection",
    "RouteDecision",
    "RouteRule",
    "Router",
    "RoutingConfig",
    "ScreenConfig",
    "ScreenInput",
    "ScreenReport",
    "TokenCounter",
    "Validated",
    "ValidationReport",
    "detect_language",
    "estimate_tokens",
    "extract",
    "find_injection",
    "find_pii",
    "iban_valid",
    "ingest",
    "luhn_valid",
    "normalise_text",
    "redact",
    "screen",
    "skeleton",
    "to_jsonable",
    "validate",
]
