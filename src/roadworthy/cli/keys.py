"""``roadworthy keys``: API keys of the HTTP service (create, list, revoke)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..store import Store
from ..store.keys import PERIODS, SCOPES, ApiKey, KeyStore
from .common import EXIT_CONFIG, console, err_console, handle_errors, load

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys for `roadworthy serve`.", no_args_is_help=True)

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]


def _keys(project: Path | None) -> tuple[Store, KeyStore]:
    store = Store.open(load(project).storage_url)
    return store, KeyStore(store.engine)


@keys_app.command("create")
@handle_errors
def create_command(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help=f"Repeatable: {', '.join(SCOPES)} (default run)."),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option("--budget", help="USD this key may spend per --period (default: no cap)."),
    ] = None,
    period: Annotated[
        str, typer.Option("--period", help=f"Budget period: {', '.join(PERIODS)} (UTC).")
    ] = "day",
    rpm: Annotated[
        int | None,
        typer.Option("--rpm", help="Requests per minute; more get 429 with Retry-After."),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Create an API key and print it once; only its salted hash is stored.

    --budget and --rpm are the key's own limits, enforced by the model stack on every
    request made with it (over budget: 429 insufficient_quota; over RPM: 429 with
    Retry-After); its spend is in the ledger under the key's id.
    """
    store, keys = _keys(project)
    try:
        key, token = keys.create(
            name, tuple(scope or ["run"]), budget_usd=budget, period=period, rpm=rpm
        )
    finally:
        store.close()
    err_console.print(
        f"created key {key.prefix} ({key.name}, scopes: {', '.join(key.scopes)}, "
        f"limits: {_limits(key)}); it is shown only now, store it safely:",
        highlight=False,
    )
    typer.echo(token)


@keys_app.command("list")
@handle_errors
def list_command(project: ProjectOpt = None) -> None:
    """List API keys (prefix, name, scopes, created, revoked); secrets are never shown."""
    store, keys = _keys(project)
    try:
        rows = keys.list()
    finally:
        store.close()
    table = Table("prefix", "name", "scopes", "limits", "created", "revoked")
    for key in rows:
        table.add_row(
            key.prefix,
            key.name,
            ",".join(key.scopes),
            _limits(key),
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


def _limits(key: ApiKey) -> str:
    parts = []
    if key.budget_usd is not None:
        parts.append(f"${_usd(key.budget_usd)}/{key.budget_period}")
    if key.rpm is not None:
        parts.append(f"{key.rpm} rpm")
    return ", ".join(parts) or "none"


def _usd(amount: Decimal) -> str:
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@keys_app.command("revoke")
@handle_errors
def revoke_command(
    key: Annotated[str, typer.Argument(help="The key's prefix (from `keys list`) or id.")],
    project: ProjectOpt = None,
) -> None:
    """Revoke a key; the server refuses it within server.key_cache_s seconds."""
    store, keys = _keys(project)
    try:
        revoked = keys.revoke(key)
    finally:
        store.close()
    if not revoked:
        err_console.print(f"[red]no live key {key!r}[/]")
        raise typer.Exit(EXIT_CONFIG)
    console.print(f"revoked {key}")
