"""The typed shape of a pipeline's ``ingest`` settings.

Like :mod:`roadworthy.config.model`, every model forbids unknown keys so that a typo such
as ``pii: redcat`` fails when the project loads, not when the first input with an email
address reaches a model. The lead plugs :class:`IngestConfig` into the pipeline config;
nothing here imports from the rest of the config package so the two can evolve apart.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CentroidClassifierConfig",
    "FieldRule",
    "IngestConfig",
    "InjectionPolicy",
    "Kind",
    "LimitsConfig",
    "NormaliseConfig",
    "PiiKind",
    "PiiPolicy",
    "RouteRule",
    "RoutingConfig",
    "ScreenConfig",
]

Kind = Literal[
    "text", "markdown", "html", "json", "jsonl", "csv", "pdf", "wav", "flac", "ogg", "mp3"
]
InjectionPolicy = Literal["continue", "review", "reject"]
PiiPolicy = Literal["continue", "redact", "review", "reject"]
PiiKind = Literal["email", "phone", "card", "iban", "ssn"]
FieldType = Literal["string", "integer", "number", "boolean", "object", "array"]

MIB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Strict):
    """One declared input field: its JSON type, whether it must be there, and its size."""

    type: FieldType = "string"
    required: bool = True
    allow_empty: bool = False
    max_bytes: int | None = Field(None, ge=1, description="UTF-8 bytes of a string value")
    max_tokens: int | None = Field(None, ge=1, description="estimated tokens of a string value")
    description: str | None = None


class LimitsConfig(_Strict):
    """Hard limits checked before any expensive work, so hostile inputs fail fast."""

    max_bytes: int = Field(20 * MIB, ge=1, description="raw payload size, checked first")
    max_tokens: int | None = Field(None, ge=1, description="estimated tokens of all text")
    max_json_depth: int = Field(64, ge=1)
    max_rows: int = Field(100_000, ge=1, description="CSV/JSONL rows")
    max_pdf_pages: int = Field(500, ge=1)
    max_audio_seconds: float = Field(4 * 3600.0, gt=0)


class NormaliseConfig(_Strict):
    """Which text repairs run. ``normalise: true``/``false`` is shorthand for all/none."""

    enabled: bool = True
    fix_mojibake: bool = Field(True, description="repair unambiguous mojibake with ftfy")
    strip_smuggling: bool = Field(
        True, description="remove tag characters, bidi overrides and variation-selector runs"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value


class ScreenConfig(_Strict):
    """What each kind of flag does: ``continue``, ``review`` (queue for a human) or ``reject``.

    ``pii: redact`` replaces each match with a typed placeholder such as ``[EMAIL]`` in the
    text that reaches the prompt and the stored record.
    """

    enabled: bool = True
    injection: InjectionPolicy = "review"
    hidden_text: InjectionPolicy = "review"
    pii: PiiPolicy = "continue"
    pii_kinds: list[PiiKind] = ["email", "phone", "card", "iban", "ssn"]
    extra_injection_patterns: list[str] = Field(
        [], description="more regexes, matched against the lower-cased confusable skeleton"
    )

    @field_validator("extra_injection_patterns")
    @classmethod
    def _compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return patterns

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value


class RouteRule(_Strict):
    """Send inputs that match every given condition to ``route``; unset conditions match all."""

    route: str
    name: str | None = None
    kinds: list[Kind] = []
    languages: list[str] = Field([], description="ISO 639-1 codes from the cheap detector")
    scripts: list[str] = Field([], description="e.g. Latin, Cyrillic, Han, Arabic")
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    pattern: str | None = Field(None, description="regex searched in the normalised text")
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compile(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return pattern


class CentroidClassifierConfig(_Strict):
    """A nearest-centroid classifier trained from labelled examples in the config.

    ``routes`` maps a label to a route name (default: the label itself). Below
    ``min_similarity`` (cosine) the classifier abstains and the default route applies.
    """

    examples: dict[str, list[str]] = Field(min_length=1)
    routes: dict[str, str] = {}
    min_similarity: float = Field(0.0, ge=-1, le=1)

    @field_validator("examples")
    @classmethod
    def _non_empty(cls, examples: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [label for label, texts in examples.items() if not texts]
        if empty:
            raise ValueError(f"labels without examples: {', '.join(empty)}")
        return examples


class RoutingConfig(_Strict):
    """Rules are tried in order; then the classifier (if any); then ``default``."""

    rules: list[RouteRule] = []
    classifier: CentroidClassifierConfig | None = None
    default: str = "default"


class IngestConfig(_Strict):
    """Everything the input layer needs for one pipeline.

    ``fields`` is the input schema for structured payloads (dicts, JSON objects, and each
    CSV/JSONL row); documents (text, Markdown, HTML, PDF) arrive as one field named
    ``text_field``. ``kinds`` limits the accepted formats (default: all).
    """

    fields: dict[str, FieldRule] = {}
    text_field: str = "text"
    kinds: list[Kind] | None = None
    limits: LimitsConfig = LimitsConfig()
    normalise: NormaliseConfig = NormaliseConfig()
    screen: ScreenConfig = ScreenConfig()
    routes: RoutingConfig = RoutingConfig()
    allow_legacy_encodings: bool = Field(
        True, description="decode non-UTF-8 text (cp1252, Shift-JIS, ...) by detection"
    )
