"""``roadworthy chunk``: split a file into token-bounded chunks, one JSON line each."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..chunking import chunk, get_counter
from .common import EXIT_CONFIG, err_console, handle_errors

__all__ = ["chunk_command"]


@handle_errors
def chunk_command(
    path: Annotated[Path, typer.Argument(help="A UTF-8 text, Markdown or transcript file.")],
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", "-n", min=1, help="Most tokens in one chunk.")
    ],
    overlap: Annotated[
        int, typer.Option("--overlap", min=0, help="Tokens repeated from the previous chunk.")
    ] = 0,
    kind: Annotated[
        str, typer.Option("--kind", "-k", help="auto, text, markdown or conversation.")
    ] = "auto",
    counter: Annotated[
        str,
        typer.Option(
            "--counter",
            help="Tokenizer: auto, local[:MODEL.gguf], minilm, hf:TOKENIZER.json, "
            "tiktoken:ENCODING or estimate.",
        ),
    ] = "auto",
    context_turns: Annotated[
        int, typer.Option("--context-turns", min=0, help="Conversations: preceding turns repeated.")
    ] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Split PATH into chunks of at most --max-tokens tokens and write them as JSONL.

    Each line is {"text", "start", "end", "tokens", "metadata"}, where start and end are
    code point offsets into the file's text (text == source[start:end]). Tokens are
    counted with the local model's tokenizer unless --counter says otherwise. Exit
    code 2 for a missing file, a bad option or a tokenizer that is not installed.
    """
    if not path.is_file():
        err_console.print(f"[red]file not found:[/] {path}")
        raise typer.Exit(EXIT_CONFIG)
    if kind not in {"auto", "text", "markdown", "conversation"}:
        err_console.print(
            f"[red]unknown --kind {kind!r}[/]: use auto, text, markdown or conversation"
        )
        raise typer.Exit(EXIT_CONFIG)
    if overlap >= max_tokens:
        err_console.print("[red]--overlap must be smaller than --max-tokens[/]")
        raise typer.Exit(EXIT_CONFIG)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        err_console.print(f"[red]{path} is not UTF-8:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    chunks = chunk(
        text,
        max_tokens,
        overlap=overlap,
        kind=kind,  # type: ignore[arg-type]
        counter=get_counter(counter),
        context_turns=context_turns,
    )
    out = output.open("w", encoding="utf-8") if output is not None else sys.stdout
    try:
        for c in chunks:
            out.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    finally:
        if output is not None:
            out.close()
    err_console.print(f"{len(chunks)} chunk(s) from {path}")
