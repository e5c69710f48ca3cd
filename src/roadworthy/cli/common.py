"""What every command shares: finding the project and turning errors into exit codes.

Exit codes: 0 success; 1 the work ran but some items did not finish ``done``; 2 a
configuration or usage problem (nothing ran); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from ..config import Project, find_project, load_project
from ..errors import ConfigError
from ..secrets import redact

__all__ = ["EXIT_CONFIG", "console", "err_console", "handle_errors", "load"]

EXIT_CONFIG = 2
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def load(project: Path | None) -> Project:
    return load_project(project if project is not None else find_project())


def print_config_error(exc: ConfigError) -> None:
    err_console.print(
        f"[bold red]configuration error[/] ({len(exc.problems)} problem"
        f"{'s' if len(exc.problems) != 1 else ''}):"
    )
    for problem in exc.problems:
        sys.stderr.write(f"  {redact(problem)}\n")


def handle_errors(func: F) -> F:
    """Print ConfigError as a list of problems and exit 2, never with a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            print_config_error(exc)
            raise typer.Exit(EXIT_CONFIG) from None

    return wrapper  # type: ignore[return-value]
