"""The single entry point: :func:`ingest` runs validate, extract, normalise, screen and
route, and always returns an :class:`~roadworthy.ingest.report.IngestResult`.

An input that fails any stage comes back ``rejected`` with a stable code, message, field
and the sha256 of the original payload, so the item row can record it: nothing is lost
and one bad input never stops a batch. Developer mistakes (a missing extra, a classifier
without an embedding function) still raise :class:`~roadworthy.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import ConfigError, InputRejected
from .classify import EmbedFn, Router
from .config import IngestConfig
from .extraction import extract
from .normalise import normalise_text
from .report import (
    IngestResult,
    NormalisationReport,
    Rejection,
    ScreenReport,
    ValidationReport,
)
from .screening import ScreenInput, screen
from .validation import TokenCounter, check_tokens, estimate_tokens, payload_bytes, validate

__all__ = ["Ingestor", "Payload", "ingest"]

Payload = bytes | str | dict[str, Any]


def _collect(value: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for key, child in value.items():
            _collect(child, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _collect(child, f"{path}[{index}]", out)


def _replace(value: Any, path: str, new: dict[str, str]) -> Any:
    if isinstance(value, str):
        return new.get(path, value)
    if isinstance(value, dict):
        return {k: _replace(v, f"{path}.{k}" if path else str(k), new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, f"{path}[{i}]", new) for i, v in enumerate(value)]
    return value


def _rejected(report: ValidationReport, exc: InputRejected, **parts: Any) -> IngestResult:
    return IngestResult(
        "rejected",
        report.payload_sha256,
        report,
        Rejection(exc.code, exc.message, exc.field),
        action="reject",
        **parts,
    )


class Ingestor:
    """Ingests many payloads with one config; fits the route classifier once."""

    def __init__(
        self,
        config: IngestConfig | None = None,
        *,
        count_tokens: TokenCounter = estimate_tokens,
        embed: EmbedFn | None = None,
    ) -> None:
        self.config = config or IngestConfig()
        self.count_tokens = count_tokens
        self.router = Router(self.config.routes, embed)

    def ingest(
        self, payload: Payload, *, media_type: str | None = None, filename: str | None = None
    ) -> IngestResult:
        """Run every stage on one payload; never raises :class:`InputRejected`."""
        raw = payload_bytes(payload)
        report = ValidationReport(hashlib.sha256(raw).hexdigest(), len(raw))
        del raw
        try:
            validated = validate(
                payload,
                media_type=media_type,
                filename=filename,
                config=self.config,
                count_tokens=self.count_tokens,
                report=report,
            )
            extracted = extract(validated, self.config, self.count_tokens)
        except InputRejected as exc:
            return _rejected(report, exc)

        cfg = self.config
        norm = NormalisationReport()
        leaves: list[tuple[str, str]] = []
        if extracted.pages is not None:
            leaves = [(f"pages[{i}]", page) for i, page in enumerate(extracted.pages)]
        else:
            _collect(extracted.fields, "", leaves)
        normalised: dict[str, str] = {}
        for path, value in leaves:
            text, change = normalise_text(value, cfg.normalise, field=path)
            normalised[path] = text
            norm.extend(change)
        parts: dict[str, Any] = {"extraction": extracted.report, "normalisation": norm}

        hidden = [ScreenInput(h, "hidden") for h in norm.hidden_payloads]
        hidden += [ScreenInput(h, "html:hidden") for h in extracted.report.hidden_text]
        screen_report, outputs = screen(
            [ScreenInput(normalised[path], path) for path, _ in leaves],
            cfg.screen,
            hidden=hidden,
            suspicious=[c for c in norm.changes if c.suspicious],
        )
        final = {path: out for (path, _), out in zip(leaves, outputs, strict=True)}
        parts["screen"] = screen_report

        if extracted.pages is not None:
            pages = [final[f"pages[{i}]"] for i in range(len(extracted.pages))]
            text = "\n\n".join(p for p in pages if p.strip())
            fields: dict[str, Any] = {cfg.text_field: text, "pages": pages}
        else:
            fields = _replace(extracted.fields, "", final)
            main = fields.get(cfg.text_field)
            text = main if isinstance(main, str) else "\n".join(final.values())

        try:
            tokens = sum(self.count_tokens(v) for v in final.values())
            if cfg.limits.max_tokens is not None and tokens > cfg.limits.max_tokens:
                check_tokens(text, cfg.limits.max_tokens, lambda _: tokens, None)
            if extracted.audio_wav is None and not any(v.strip() for v in final.values()):
                raise InputRejected("empty", "no text left after normalisation")
            _apply_policy(screen_report)
        except InputRejected as exc:
            return _rejected(report, exc, tokens=None, **parts)

        route = self.router.route(report.kind or "text", text)
        return IngestResult(
            "accepted",
            report.payload_sha256,
            report,
            action=screen_report.action,
            text=text if extracted.audio_wav is None else None,
            fields=fields,
            tokens=tokens,
            route=route,
            audio_wav=extracted.audio_wav,
            **parts,
        )

    def ingest_many(
        self,
        items: Iterable[tuple[Payload, str | None, str | None]],
        on_error: Callable[[Exception], None] | None = None,
    ) -> Iterator[IngestResult]:
        """Ingest ``(payload, media_type, filename)`` items one by one.

        A bug triggered by one input becomes a rejection with code ``internal_error`` (and
        is passed to ``on_error``) instead of ending the batch; configuration errors still
        raise, since every later input would fail the same way.
        """
        for payload, media_type, filename in items:
            try:
                yield self.ingest(payload, media_type=media_type, filename=filename)
            except ConfigError:
                raise
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                raw = payload_bytes(payload)
                report = ValidationReport(hashlib.sha256(raw).hexdigest(), len(raw))
                yield _rejected(
                    report, InputRejected("internal_error", f"{type(exc).__name__}: {exc}")
                )


def _apply_policy(report: ScreenReport) -> None:
    if report.action != "reject":
        return
    worst = [f for f in report.flags if f.action == "reject"]
    kinds = sorted({f.kind for f in worst})
    rules = sorted({f.rule for f in worst})
    raise InputRejected(
        "screen_" + kinds[0] if len(kinds) == 1 else "screen_rejected",
        f"screening policy rejects: {', '.join(rules)}",
        worst[0].field,
    )


def ingest(
    payload: Payload,
    *,
    media_type: str | None = None,
    filename: str | None = None,
    config: IngestConfig | None = None,
    count_tokens: TokenCounter = estimate_tokens,
    embed: EmbedFn | None = None,
) -> IngestResult:
    """Validate, extract, normalise, screen and route one payload.

    Returns ``accepted`` (text, fields, reports, route) or ``rejected`` (code, message,
    field, payload hash). For many payloads with a route classifier, build an
    :class:`Ingestor` once instead: it embeds the labelled examples only once.
    """
    return Ingestor(config, count_tokens=count_tokens, embed=embed).ingest(
        payload, media_type=media_type, filename=filename
    )
