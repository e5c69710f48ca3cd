"""The ``roadworthy`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..pipeline.workspace import check_prompts
from ..prompts import load_prompts
from ..store import Store
from .cache import cache_app
from .chunk import chunk_command
from .common import console, handle_errors, load
from .eval import eval_command
from .ingest import ingest_app
from .keys import keys_app
from .ledger import calls_command, runs_command
from .prompts import prompts_app
from .review import retry_deferred_command, review_app
from .run import run_command
from .run_paths import batches_command
from .serve import serve_command
from .stack import budget_app, drill_command, fake_upstream_command
from .worker import worker_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="roadworthy",
    help=(
        "Run LLM pipelines in production: validated inputs, versioned prompts, a model "
        "stack with pricing, and a ledger of every call.\n\n"
        "Commands look for roadworthy.yaml in the current folder or above it; pass "
        "--project DIR to point elsewhere."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]

app.command("run")(run_command)
app.command("batches")(batches_command)
app.command("runs")(runs_command)
app.command("calls")(calls_command)
app.add_typer(prompts_app, name="prompts")
app.add_typer(review_app, name="review")
app.command("retry-deferred")(retry_deferred_command)
app.add_typer(ingest_app, name="ingest")
app.command("chunk")(chunk_command)
app.command("eval")(eval_command)
app.add_typer(budget_app, name="budget")
app.add_typer(cache_app, name="cache")
app.command("drill")(drill_command)
app.command("fake-upstream")(fake_upstream_command)
app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")
app.command("worker")(worker_command)


@app.command("check")
@handle_errors
def check_command(project: ProjectOpt = None) -> None:
    """Validate roadworthy.yaml, its prompt files and output schemas; exit 2 on problems."""
    loaded = load(project)
    folder = load_prompts(loaded.root)
    problems = check_prompts(loaded, folder)
    if problems:
        raise ConfigError(problems)
    cfg = loaded.config
    console.print(
        f"[green]ok[/] {loaded.config_path}: {len(cfg.providers)} providers, "
        f"{len(cfg.models)} models, {len(cfg.pipelines)} pipelines, "
        f"{len(folder.prompts)} prompts"
    )


@app.command("migrate")
@handle_errors
def migrate_command(project: ProjectOpt = None) -> None:
    """Bring the store's schema up to date (also done automatically on first use)."""
    loaded = load(project)
    store = Store.open(loaded.storage_url)
    try:
        console.print(
            f"store at revision {store.current_revision()} (head {store.head_revision()})"
        )
    finally:
        store.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
