"""``roadworthy cache``: what the cache saved, how big it is, and emptying it.

Registered in ``cli/main.py`` with ``app.add_typer(cache_app, name="cache")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import Project
from ..store import Store
from ..store.cache import CacheBackend, RedisCache, StoreCache, cache_stats
from .common import console, handle_errors, load

__all__ = ["cache_app"]

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

cache_app = typer.Typer(
    help="The exact and semantic cache: hit rates, savings, size.", no_args_is_help=True
)


def _backends(loaded: Project, store: Store) -> list[CacheBackend]:
    """The store's cache plus every Redis cache a route names."""
    backends: list[CacheBackend] = [StoreCache(store.engine)]
    urls = {r.cache.redis_url for r in loaded.config.routes.values() if r.cache is not None}
    backends.extend(RedisCache(url) for url in sorted(u for u in urls if u is not None))
    return backends


@cache_app.command("stats")
@handle_errors
def cache_stats_command(
    project: ProjectOpt = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Only this prompt's calls.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show per route: calls, hits, hit rate, USD saved, audits and wrong-hit rate, entries."""
    loaded = load(project)
    store = Store.open(loaded.storage_url)
    try:
        stats = cache_stats(store.engine, prompt_id=prompt)
        sizes: dict[str, int] = {}
        for backend in _backends(loaded, store):
            for route, n in backend.sizes().items():
                sizes[route] = sizes.get(route, 0) + n
    finally:
        store.close()
    rows = [
        {
            "route": s.route,
            "calls": s.calls,
            "exact_hits": s.exact_hits,
            "semantic_hits": s.semantic_hits,
            "hit_rate": round(s.hit_rate, 4),
            "saved_usd": str(s.saved_usd),
            "audited": s.audited,
            "audit_mismatches": s.audit_mismatches,
            "audit_unjudged": s.audit_unjudged,
            "wrong_hit_rate": None if s.wrong_hit_rate is None else round(s.wrong_hit_rate, 4),
            "entries": sizes.get(s.route, 0),
        }
        for s in stats
    ]
    seen = {s.route for s in stats}
    rows.extend(
        {
            "route": route,
            "calls": 0,
            "exact_hits": 0,
            "semantic_hits": 0,
            "hit_rate": 0.0,
            "saved_usd": "0",
            "audited": 0,
            "audit_mismatches": 0,
            "audit_unjudged": 0,
            "wrong_hit_rate": None,
            "entries": n,
        }
        for route, n in sorted(sizes.items())
        if route not in seen
    )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="cache")
    for column in rows[0] if rows else ["route", "calls", "entries"]:
        table.add_column(column, justify="left" if column == "route" else "right")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    console.print(table)


@cache_app.command("clear")
@handle_errors
def cache_clear_command(
    project: ProjectOpt = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Only this prompt's entries (all versions).")
    ] = None,
) -> None:
    """Remove cached answers: all of them, or one prompt's."""
    loaded = load(project)
    store = Store.open(loaded.storage_url)
    try:
        removed = sum(b.clear(prompt_id=prompt) for b in _backends(loaded, store))
    finally:
        store.close()
    what = f"prompt {prompt!r}" if prompt else "all prompts"
    console.print(f"removed {removed} cached answers ({what})")
