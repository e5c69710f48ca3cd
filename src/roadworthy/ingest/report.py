"""The reports each ingest stage returns: plain dataclasses that serialise to JSON.

The lead stores them on the item's row, so they hold no bytes, no live objects and no raw
PII (matches are masked); :func:`to_jsonable` turns any of them into ``json.dumps`` input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Action",
    "AudioInfo",
    "Change",
    "ExtractionReport",
    "Flag",
    "IngestResult",
    "NormalisationReport",
    "PiiMatch",
    "Rejection",
    "RouteDecision",
    "ScreenReport",
    "ValidationReport",
    "to_jsonable",
]

Action = Literal["continue", "review", "reject"]


def to_jsonable(obj: Any) -> Any:
    """A dataclass (or nest of them) as dicts and lists; ``bytes`` fields are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)
        }
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


class _Jsonable:
    def to_dict(self) -> dict[str, Any]:
        result = to_jsonable(self)
        assert isinstance(result, dict)
        return result


@dataclass
class ValidationReport(_Jsonable):
    """What validation learned about the raw payload before extraction."""

    payload_sha256: str
    size_bytes: int
    kind: str | None = None
    media_type: str | None = None
    declared_kind: str | None = None
    detected_kind: str | None = None
    encoding: str | None = None
    encoding_confidence: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclass
class AudioInfo(_Jsonable):
    """The source audio as decoded, and the 16 kHz mono PCM WAV made from it."""

    format: str
    subtype: str | None
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    peak: float
    out_sample_rate: int
    out_channels: int
    out_frames: int
    out_bytes: int
    out_sha256: str


@dataclass
class ExtractionReport(_Jsonable):
    kind: str
    pages: int | None = None
    empty_pages: list[int] = dataclasses.field(default_factory=list)
    rows: int | None = None
    hidden_text: list[str] = dataclasses.field(default_factory=list)
    audio: AudioInfo | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclass
class Change(_Jsonable):
    """One kind of normalisation change: how often, where (code point offsets into the
    text as that step saw it, first 20) and a few samples (escaped, never raw controls)."""

    kind: str
    count: int
    field: str | None = None
    positions: list[int] = dataclasses.field(default_factory=list)
    samples: list[str] = dataclasses.field(default_factory=list)
    suspicious: bool = False


@dataclass
class NormalisationReport(_Jsonable):
    changes: list[Change] = dataclasses.field(default_factory=list)
    hidden_payloads: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def suspicious(self) -> bool:
        return any(c.suspicious for c in self.changes)

    def extend(self, other: NormalisationReport) -> None:
        self.changes.extend(other.changes)
        self.hidden_payloads.extend(other.hidden_payloads)


@dataclass
class Flag(_Jsonable):
    """A screening finding: ``kind`` is the policy it falls under (injection, hidden_text,
    pii), ``rule`` the specific detector, ``sample`` a short excerpt of what matched."""

    kind: str
    rule: str
    field: str | None = None
    sample: str = ""
    action: Action = "continue"


@dataclass
class PiiMatch(_Jsonable):
    """Where PII was found; ``masked`` keeps the last few characters only."""

    kind: str
    field: str | None
    start: int
    end: int
    masked: str
    placeholder: str


@dataclass
class ScreenReport(_Jsonable):
    flags: list[Flag] = dataclasses.field(default_factory=list)
    pii: list[PiiMatch] = dataclasses.field(default_factory=list)
    action: Action = "continue"
    redacted: bool = False


@dataclass
class RouteDecision(_Jsonable):
    """Where an input goes and why (``rule:<name>``, ``classifier`` or ``default``)."""

    route: str
    reason: str
    language: str = "und"
    script: str | None = None
    label: str | None = None
    score: float | None = None


@dataclass
class Rejection(_Jsonable):
    code: str
    message: str
    field: str | None = None


@dataclass
class IngestResult(_Jsonable):
    """The outcome of :func:`~roadworthy.ingest.ingest` for one payload.

    ``status`` is ``accepted`` or ``rejected``; an accepted input still carries the screen's
    ``action`` (``continue`` or ``review``). ``text`` is the normalised (and, under
    ``pii: redact``, redacted) text for the prompt; ``fields`` the structured form;
    ``audio_wav`` the 16 kHz mono PCM WAV for audio inputs (not part of ``to_dict``).
    """

    status: Literal["accepted", "rejected"]
    payload_sha256: str
    validation: ValidationReport
    rejection: Rejection | None = None
    action: Action = "continue"
    text: str | None = None
    fields: dict[str, Any] | None = None
    tokens: int | None = None
    extraction: ExtractionReport | None = None
    normalisation: NormalisationReport | None = None
    screen: ScreenReport | None = None
    route: RouteDecision | None = None
    audio_wav: bytes | None = dataclasses.field(default=None, repr=False, metadata={"json": False})

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"
