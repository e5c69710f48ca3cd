"""Read a project's ``prompts/`` folder into checked, self-contained prompt documents.

Each problem is reported as ``file:line: reason`` and only refuses its own file: one broken
prompt must not stop the others from syncing. Checks: YAML syntax, the file's shape,
duplicate ids, partials that do not exist, schema files that do not exist, and templates
that use a variable the file does not declare (caught here, not at 3 a.m. in a request).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from pydantic import ValidationError

from ..config.load import describe_validation_error, hint_names
from ..config.yamlfile import YamlDocument, read_yaml
from ..errors import ConfigError
from .model import (
    IncludePart,
    MessagePart,
    Part,
    PartialFile,
    PromptDoc,
    PromptFile,
    PromptVariantDoc,
)
from .render import sandbox

__all__ = ["PromptSource", "PromptsFolder", "load_prompts", "parse_ref"]

PROMPT_SUFFIXES = (".yaml", ".yml", ".json")
PARTIALS = "partials"


@dataclass
class PromptSource:
    """One prompt file, checked and expanded."""

    path: Path
    doc: PromptDoc
    yaml: YamlDocument


@dataclass
class PromptsFolder:
    prompts: dict[str, PromptSource] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    refused: list[Path] = field(default_factory=list)

    def get(self, prompt_id: str) -> PromptSource | None:
        return self.prompts.get(prompt_id)


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``id``, ``id@label`` or ``id@3`` → (id, label, version)."""
    prompt_id, _, selector = ref.partition("@")
    if not selector:
        return prompt_id, None, None
    if selector.isdigit():
        return prompt_id, None, int(selector)
    return prompt_id, selector, None


def _undeclared(source: str) -> set[str]:
    try:
        return set(meta.find_undeclared_variables(sandbox.parse(source)))
    except TemplateSyntaxError as exc:
        raise ValueError(
            f"template syntax error: {exc.message} (template line {exc.lineno})"
        ) from exc


def _load_partial(root: Path, name: str, cache: dict[str, PartialFile]) -> PartialFile:
    if name in cache:
        return cache[name]
    for suffix in PROMPT_SUFFIXES:
        path = root / PARTIALS / f"{name}{suffix}"
        if path.is_file():
            doc = read_yaml(path)
            try:
                partial = PartialFile.model_validate(doc.data)
            except ValidationError as exc:
                raise ConfigError(describe_validation_error(exc, doc, PartialFile)) from None
            cache[name] = partial
            return partial
    raise KeyError(name)


def _expand(
    parts: list[Part],
    *,
    root: Path,
    loc: tuple[str | int, ...],
    ydoc: YamlDocument,
    partials: dict[str, PartialFile],
    problems: list[str],
) -> list[MessagePart]:
    messages: list[MessagePart] = []
    for index, part in enumerate(parts):
        if isinstance(part, IncludePart):
            try:
                messages.extend(_load_partial(root, part.include, partials).messages)
            except KeyError:
                problems.append(
                    f"{ydoc.where((*loc, index, 'include'))}: partial {part.include!r} not found "
                    f"in prompts/{PARTIALS}/"
                )
            except ConfigError as exc:
                problems.extend(exc.problems)
        else:
            messages.append(part)
    return messages


def _check_variables(
    messages: list[MessagePart],
    declared: set[str],
    *,
    loc: tuple[str | int, ...],
    ydoc: YamlDocument,
    problems: list[str],
) -> None:
    for index, message in enumerate(messages):
        where = ydoc.where((*loc, index))
        try:
            used = _undeclared(message.content)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for name in sorted(used - declared):
            problems.append(
                f"{where}: the template uses variable {name!r}, which 'variables' does not "
                f"declare{hint_names(name, declared)}"
            )


def _load_schema(root: Path, rel: str, where: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads((root / rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{where}: schema file {rel!r} not found")
        return None
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: {rel} is not valid JSON (line {exc.lineno}: {exc.msg})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{where}: {rel} must contain a JSON object")
        return None
    return value


def _build(
    path: Path, project_root: Path, partials: dict[str, PartialFile]
) -> tuple[PromptSource | None, list[str]]:
    problems: list[str] = []
    try:
        ydoc = read_yaml(path)
    except ConfigError as exc:
        return None, exc.problems
    try:
        pfile = PromptFile.model_validate(ydoc.data)
    except ValidationError as exc:
        return None, describe_validation_error(exc, ydoc, PromptFile)
    folder = project_root / "prompts"
    if pfile.messages is not None:
        messages = _expand(
            pfile.messages,
            root=folder,
            loc=("messages",),
            ydoc=ydoc,
            partials=partials,
            problems=problems,
        )
        loc: tuple[str | int, ...] = ("messages",)
    else:
        messages = [MessagePart(role="user", content=pfile.text or "")]
        loc = ("text",)
    declared = set(pfile.variables)
    if pfile.messages is None:
        for name in sorted(
            _safe_undeclared(pfile.text or "", problems, ydoc.where(loc)) - declared
        ):
            problems.append(
                f"{ydoc.where(loc)}: the template uses variable {name!r}, which 'variables' "
                f"does not declare{hint_names(name, declared)}"
            )
    else:
        _check_variables(messages, declared, loc=loc, ydoc=ydoc, problems=problems)
    variants: dict[str, PromptVariantDoc] = {}
    for name, variant in pfile.variants.items():
        vmessages = None
        if variant.messages is not None:
            vloc: tuple[str | int, ...] = ("variants", name, "messages")
            vmessages = _expand(
                variant.messages,
                root=folder,
                loc=vloc,
                ydoc=ydoc,
                partials=partials,
                problems=problems,
            )
            _check_variables(vmessages, declared, loc=vloc, ydoc=ydoc, problems=problems)
        variants[name] = PromptVariantDoc(messages=vmessages, settings=variant.settings)
    schema = None
    if pfile.settings.schema_file:
        where = ydoc.where(("settings", "schema"))
        schema = _load_schema(project_root, pfile.settings.schema_file, where, problems)
    if problems:
        return None, problems
    doc = PromptDoc(
        id=pfile.id,
        description=pfile.description,
        variables=pfile.variables,
        messages=messages,
        settings=pfile.settings,
        schema_=schema,
        evaluation=pfile.evaluation,
        variants=variants,
        samples=pfile.samples,
    )
    return PromptSource(path=path, doc=doc, yaml=ydoc), []


def _safe_undeclared(source: str, problems: list[str], where: str) -> set[str]:
    try:
        return _undeclared(source)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return set()


def load_prompts(project_root: Path) -> PromptsFolder:
    """Load every prompt file under ``project_root/prompts`` (partials excluded)."""
    folder = PromptsFolder()
    base = project_root / "prompts"
    if not base.is_dir():
        return folder
    partials: dict[str, PartialFile] = {}
    paths = sorted(
        p
        for p in base.rglob("*")
        if p.suffix in PROMPT_SUFFIXES and p.is_file() and PARTIALS not in p.relative_to(base).parts
    )
    for path in paths:
        source, problems = _build(path, project_root, partials)
        if source is None:
            folder.problems.extend(problems)
            folder.refused.append(path)
            continue
        existing = folder.prompts.get(source.doc.id)
        if existing is not None:
            folder.problems.append(
                f"{source.yaml.where(('id',))}: id {source.doc.id!r} is already used by "
                f"{existing.path}"
            )
            folder.refused.append(path)
            continue
        folder.prompts[source.doc.id] = source
    return folder
