"""``roadworthy prompts``: sync prompt files into versions, move labels, inspect history."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from ..errors import ConfigError
from ..prompts import PromptDoc, PromptRegistry, parse_ref, render_messages
from ..store import Store
from .common import console, err_console, handle_errors, load

__all__ = ["prompts_app"]

prompts_app = typer.Typer(
    help=(
        "Versioned prompts: files in prompts/ become immutable versions; labels such as "
        "production point at versions and move without a deploy."
    ),
    no_args_is_help=True,
)

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")]


def _registry(project: Path | None) -> PromptRegistry:
    loaded = load(project)
    settings = loaded.config.prompts
    return PromptRegistry(
        Store.open(loaded.storage_url),
        loaded.root,
        ttl_s=settings.label_ttl_s,
        default_label=settings.default_label,
    )


def _doc_for(registry: PromptRegistry, ref: str) -> tuple[PromptDoc, str]:
    prompt_id, label, version = parse_ref(ref)
    if label is None and version is None:
        latest = registry.store.prompts.latest(prompt_id)
        if latest is None:
            raise ConfigError(
                f"prompt {prompt_id!r} has no versions (hint: roadworthy prompts sync)"
            )
        return PromptDoc.model_validate(latest.content), f"{prompt_id} v{latest.version} (latest)"
    resolved = registry.resolve(ref)
    return resolved.doc, resolved.ref


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as ``|`` blocks so diffs show template lines as lines."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def _as_text(doc: PromptDoc) -> str:
    content = doc.content()
    content.pop("samples", None)
    return yaml.dump(content, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


@prompts_app.command("sync")
@handle_errors
def sync_command(
    actor: Annotated[
        str | None, typer.Option(help="Who is syncing (default: $ROADWORTHY_ACTOR or the OS user).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Create a new version of every prompt file whose content changed.

    Broken files are refused with file:line and a reason; the valid files still sync.
    A new prompt's first version gets the default label (production). Exit code 1 when
    any file was refused.
    """
    registry = _registry(project)
    report = registry.sync(actor=actor)
    for version in report.created:
        tokens = (
            f", ~{version.rendered_tokens:.0f} tokens rendered" if version.rendered_tokens else ""
        )
        console.print(f"[green]new[/]       {version.prompt_id} v{version.version}{tokens}")
    for version in report.unchanged:
        console.print(f"unchanged  {version.prompt_id} v{version.version}")
    for move in report.labelled:
        console.print(f"[green]label[/]     {move.prompt_id}@{move.label} -> v{move.to_version}")
    for problem in report.problems:
        err_console.print(f"[red]refused[/]   {problem}", highlight=False)
    registry.store.close()
    if report.problems:
        raise typer.Exit(1)


@prompts_app.command("list")
@handle_errors
def list_command(project: ProjectOpt = None) -> None:
    """List prompts in the registry with their latest version and labels."""
    registry = _registry(project)
    table = Table(title="prompts")
    for col in ("id", "latest", "labels", "file"):
        table.add_column(col)
    ids = sorted(set(registry.store.prompts.prompt_ids()) | set(registry.files.prompts))
    for prompt_id in ids:
        latest = registry.store.prompts.latest(prompt_id)
        labels = registry.store.prompts.labels(prompt_id)
        source = registry.files.get(prompt_id)
        changed = ""
        if source and latest and source.doc.content_hash() != latest.content_hash:
            changed = " (changed, not synced)"
        table.add_row(
            prompt_id,
            f"v{latest.version}" if latest else "-",
            ", ".join(f"{k}=v{v}" for k, v in sorted(labels.items())) or "-",
            (str(source.path.relative_to(registry.root)) if source else "-") + changed,
        )
    console.print(table)
    registry.store.close()


@prompts_app.command("show")
@handle_errors
def show_command(
    ref: Annotated[str, typer.Argument(metavar="ID[@LABEL|@VERSION]")],
    variables: Annotated[
        str | None, typer.Option("--vars", help="JSON object of variables: render the prompt.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Render with the prompt's Nth sample.")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Show a prompt version (latest by default), or render it with --vars '{"text": "..."}'
    or with one of the file's samples (--sample 1)."""
    registry = _registry(project)
    doc, where = _doc_for(registry, ref)
    console.print(f"[bold]{where}[/]", highlight=False)
    if sample is not None:
        if sample > len(doc.samples):
            raise ConfigError(
                f"{where} has {len(doc.samples)} samples; --sample {sample} is out of range"
            )
        variables = json.dumps(doc.samples[sample - 1])
    if variables is None:
        console.print(_as_text(doc), highlight=False, markup=False)
    else:
        try:
            values: Any = json.loads(variables)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--vars is not valid JSON: {exc.msg}") from None
        if not isinstance(values, dict):
            raise ConfigError("--vars must be a JSON object")
        total = 0
        for message in render_messages(doc, values):
            total += registry.count_tokens(message.content)
            console.print(f"[bold]{message.role}:[/]", highlight=False)
            console.print(message.content, highlight=False, markup=False)
        console.print(f"~{total} tokens rendered")
    registry.store.close()


@prompts_app.command("history")
@handle_errors
def history_command(
    prompt_id: Annotated[str, typer.Argument(metavar="ID")],
    label: Annotated[str | None, typer.Option(help="Only moves of this label.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Versions and every label move of a prompt: who, when, from, to, why."""
    registry = _registry(project)
    versions = Table(title=f"{prompt_id}: versions")
    for col in ("version", "hash", "created", "by", "~tokens"):
        versions.add_column(col)
    for v in registry.store.prompts.versions(prompt_id):
        versions.add_row(
            f"v{v.version}",
            v.content_hash[:12],
            str(v.created_at)[:19],
            v.created_by or "",
            f"{v.rendered_tokens:.0f}" if v.rendered_tokens else "-",
        )
    console.print(versions)
    moves = Table(title=f"{prompt_id}: label moves")
    for col in ("when", "label", "from", "to", "action", "who", "why"):
        moves.add_column(col)
    for m in registry.store.prompts.history(prompt_id, label):
        moves.add_row(
            str(m.moved_at)[:19],
            m.label,
            f"v{m.from_version}" if m.from_version else "-",
            f"v{m.to_version}",
            m.action,
            m.actor,
            m.reason or "",
        )
    console.print(moves)
    registry.store.close()


@prompts_app.command("diff")
@handle_errors
def diff_command(
    prompt_id: Annotated[str, typer.Argument(metavar="ID")],
    a: Annotated[str, typer.Argument(metavar="A", help="Version number or label.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Version number or label.")],
    project: ProjectOpt = None,
) -> None:
    """Unified diff of two versions (template and settings) and the token count change."""
    registry = _registry(project)
    doc_a, name_a = _doc_for(registry, f"{prompt_id}@{a}")
    doc_b, name_b = _doc_for(registry, f"{prompt_id}@{b}")
    lines = difflib.unified_diff(
        _as_text(doc_a).splitlines(), _as_text(doc_b).splitlines(), name_a, name_b, lineterm=""
    )
    console.print("\n".join(lines) or "(no difference)", highlight=False, markup=False)
    tokens_a, tokens_b = registry.rendered_tokens(doc_a), registry.rendered_tokens(doc_b)
    if tokens_a and tokens_b:
        change = (tokens_b - tokens_a) / tokens_a * 100
        console.print(
            f"rendered tokens on {len(doc_b.samples)} samples: {tokens_a:.0f} -> {tokens_b:.0f} "
            f"({change:+.1f}%)"
        )
    else:
        console.print("no samples to measure rendered tokens (add samples: to the prompt file)")
    registry.store.close()


@prompts_app.command("promote")
@handle_errors
def promote_command(
    prompt_id: Annotated[str, typer.Argument(metavar="ID")],
    version: Annotated[int, typer.Argument(metavar="VERSION")],
    label: Annotated[str, typer.Option(help="Label to move.")] = "production",
    why: Annotated[str | None, typer.Option(help="Reason, kept in the audit trail.")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who (default: $ROADWORTHY_ACTOR or OS user).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote to production despite a missing or failed evaluation.")
    ] = False,
    project: ProjectOpt = None,
) -> None:
    """Point LABEL at VERSION; running processes follow within the label TTL (default 30 s).

    A version whose file names an evaluation suite goes to production only after an
    evaluation run of exactly that version passed its gate; --force with --why overrides,
    and the audit trail records it.
    """
    registry = _registry(project)
    move = registry.promote(prompt_id, version, label=label, actor=actor, why=why, force=force)
    before = f"v{move.from_version}" if move.from_version else "nothing"
    console.print(f"{prompt_id}@{label}: {before} -> v{move.to_version}")
    registry.store.close()


@prompts_app.command("rollback")
@handle_errors
def rollback_command(
    prompt_id: Annotated[str, typer.Argument(metavar="ID")],
    label: Annotated[str, typer.Option(help="Label to move back.")] = "production",
    why: Annotated[str | None, typer.Option(help="Reason, kept in the audit trail.")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who (default: $ROADWORTHY_ACTOR or OS user).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Point LABEL back at the version it pointed to before its latest move."""
    registry = _registry(project)
    move = registry.rollback(prompt_id, label=label, actor=actor, why=why)
    console.print(f"{prompt_id}@{label}: v{move.from_version} -> v{move.to_version} (rolled back)")
    registry.store.close()
