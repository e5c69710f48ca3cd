"""``roadworthy serve``: the HTTP service under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..pipeline import Workspace
from .common import err_console, handle_errors, load

__all__ = ["serve_command"]


@handle_errors
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")] = None,
) -> None:
    """Serve the pipeline API and the OpenAI-compatible endpoint (one process).

    POST /v1/pipelines/NAME/run, POST /v1/chat/completions, GET /healthz, GET /readyz.
    Calls need an API key (`roadworthy keys create`) unless roadworthy.yaml sets
    `server: {auth: none}`.
    """
    try:
        import uvicorn
    except ImportError:
        err_console.print(
            "serving needs the [server] extra: pip install 'roadworthy[server]'", markup=False
        )
        raise typer.Exit(2) from None
    from ..server import create_app

    loaded = load(project)
    workspace = Workspace(loaded)
    try:
        app = create_app(workspace)
        if loaded.config.server.auth == "none":
            err_console.print("[yellow]server.auth is none[/]: every caller is trusted (dev mode)")
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        workspace.close()
