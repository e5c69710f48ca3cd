"""``roadworthy keys``: API keys of the HTTP service (create, list, revoke)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..store import Store
from ..store.keys import SCOPES, KeyStore
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
    project: ProjectOpt = None,
) -> None:
    """Create an API key and print it once; only its salted hash is stored."""
    store, keys = _keys(project)
    try:
        key, token = keys.create(name, tuple(scope or ["run"]))
    finally:
        store.close()
    err_console.print(
        f"created key {key.prefix} ({key.name}, scopes: {', '.join(key.scopes)}); "
        "it is shown only now, store it safely:",
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
    table = Table("prefix", "name", "scopes", "created", "revoked")
    for key in rows:
        table.add_row(
            key.prefix,
            key.name,
            ",".join(key.scopes),
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


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
