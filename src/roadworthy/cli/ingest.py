"""``roadworthy ingest``: check inputs against the input layer without running a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from ..ingest import IngestConfig, Ingestor, IngestResult
from .common import EXIT_CONFIG, err_console, handle_errors

__all__ = ["check_command", "ingest_app"]

ingest_app = typer.Typer(
    name="ingest",
    help="Validate, normalise, screen and route inputs (the pipeline's ingest step).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@ingest_app.callback()
def ingest_group() -> None:
    """Validate, normalise, screen and route inputs (the pipeline's ingest step)."""


def _load_config(path: Path | None) -> IngestConfig:
    if path is None:
        return IngestConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read ingest config: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("ingest"), dict):
        data = data["ingest"]
    try:
        return IngestConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{path}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                for err in exc.errors()
            ]
        ) from None


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files.append(path)
    return files


def _verdict(path: Path, result: IngestResult, show_text: bool) -> dict[str, Any]:
    data = result.to_dict()
    verdict: dict[str, Any] = {"path": str(path), "status": result.status}
    if result.rejection is not None:
        verdict.update(code=result.rejection.code, message=result.rejection.message)
        verdict["field"] = result.rejection.field
    verdict["action"] = result.action
    verdict["sha256"] = result.payload_sha256
    verdict["kind"] = result.validation.kind
    verdict["encoding"] = result.validation.encoding
    verdict["tokens"] = result.tokens
    verdict["changes"] = (data.get("normalisation") or {}).get("changes", [])
    screen = data.get("screen") or {}
    verdict["flags"] = screen.get("flags", [])
    verdict["pii"] = screen.get("pii", [])
    verdict["route"] = data.get("route")
    if result.extraction is not None:
        verdict["extraction"] = data["extraction"]
    if show_text:
        verdict["text"] = result.text
    return verdict


@ingest_app.command("check")
@handle_errors
def check_command(
    paths: Annotated[
        list[Path],
        typer.Argument(exists=True, readable=True, help="Files or folders (searched recursively)."),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            exists=True,
            dir_okay=False,
            help="YAML file with an ingest config (or a mapping with an `ingest:` key).",
        ),
    ] = None,
    media_type: Annotated[
        str | None,
        typer.Option("--media-type", help="Declared media type for every input."),
    ] = None,
    show_text: Annotated[
        bool, typer.Option("--text", help="Include the normalised text in each verdict.")
    ] = False,
) -> None:
    """Check each input and print one JSON verdict per line.

    A verdict says accepted or rejected (with code and message), the normalisation
    changes, screening flags, PII found (masked) and the route. The type is taken from the
    content and the file extension (or --media-type). Exit codes: 0 when every input is
    accepted, 1 when any is rejected, 2 on usage or configuration errors.
    """
    ingest_config = _load_config(config)
    files = _expand(paths)
    if not files:
        err_console.print("[red]no input files found[/]")
        raise typer.Exit(EXIT_CONFIG)
    ingestor = Ingestor(ingest_config)
    rejected = 0
    for path in files:
        try:
            payload = path.read_bytes()
        except OSError as exc:
            err_console.print(f"[red]cannot read[/] {path}: {exc}")
            raise typer.Exit(EXIT_CONFIG) from None
        (result,) = ingestor.ingest_many([(payload, media_type, path.name)])
        rejected += not result.accepted
        sys.stdout.write(json.dumps(_verdict(path, result, show_text), ensure_ascii=False) + "\n")
    raise typer.Exit(1 if rejected else 0)
