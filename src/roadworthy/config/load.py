"""Load a project folder into typed config, reporting every problem at once.

A problem message always has the same shape, so users learn to read it once::

    roadworthy.yaml:14: models.gpt.provider: unknown provider 'opena' (hint: did you mean 'openai'?)

Environment variables override what must not live in a file or differs per machine:
``ROADWORTHY_STORAGE`` replaces the storage URL; API keys are only ever read from the
environment variable a provider names in ``api_key_env``.
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .model import GenerateStep, ProjectConfig
from .paths import check_paths
from .yamlfile import Loc, YamlDocument, read_yaml

__all__ = [
    "CONFIG_FILE",
    "Project",
    "describe_validation_error",
    "find_project",
    "hint_names",
    "load_project",
]

CONFIG_FILE = "roadworthy.yaml"
STORAGE_ENV = "ROADWORTHY_STORAGE"
PROJECT_ENV = "ROADWORTHY_PROJECT"


@dataclass
class Project:
    """A loaded project: config plus the schema files it references, resolved and checked.

    Prompt files are loaded by :mod:`roadworthy.prompts`, which sits above this layer.
    """

    root: Path
    config_path: Path
    config: ProjectConfig
    storage_url: str
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def schema_for(self, step: GenerateStep) -> dict[str, Any] | None:
        return self.schemas[step.output] if step.output else None


def find_project(start: Path | None = None) -> Path:
    """The project folder: ``$ROADWORTHY_PROJECT``, else the nearest folder up with the file."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it "
        f"(hint: pass --project DIR or set {PROJECT_ENV})"
    )


def load_project(path: Path | str) -> Project:
    """Load and cross-check a project; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    config_path = path if path.is_file() else path / CONFIG_FILE
    root = config_path.parent.resolve()
    doc = read_yaml(config_path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{config_path}:1: the file must be a mapping of sections")
    try:
        config = ProjectConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, doc, ProjectConfig)) from None
    problems: list[str] = []
    _check_references(config, doc, problems)
    _check_routes(config, doc, problems)
    _check_failure_policies(config, doc, problems)
    check_paths(config, doc.where, problems)
    schemas = _load_schemas(config, root, doc, problems)
    if problems:
        raise ConfigError(problems)
    storage = os.environ.get(STORAGE_ENV) or config.storage
    return Project(
        root=root,
        config_path=config_path,
        config=config,
        storage_url=_resolve_sqlite(storage, root),
        schemas=schemas,
    )


def _resolve_sqlite(url: str, root: Path) -> str:
    """Relative SQLite paths are relative to the project folder, not the shell's cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(root / url[len(prefix) :])
    return url


def hint_names(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if close:
        return f" (hint: did you mean {close[0]!r}?)"
    listed = ", ".join(sorted(options))
    return f" (hint: one of {listed})" if listed else ""


def _check_references(config: ProjectConfig, doc: YamlDocument, problems: list[str]) -> None:
    for name, model in config.models.items():
        if model.provider not in config.providers:
            loc: Loc = ("models", name, "provider")
            problems.append(
                f"{doc.where(loc)}: models.{name}.provider: unknown provider "
                f"{model.provider!r}{hint_names(model.provider, config.providers)}"
            )
    for pname, pipeline in config.pipelines.items():
        for index, step in enumerate(pipeline.steps):
            gen = step.generate
            if gen is not None and gen.model is not None and gen.model not in config.models:
                loc = ("pipelines", pname, "steps", index, "generate", "model")
                problems.append(
                    f"{doc.where(loc)}: pipelines.{pname}.steps[{index}].generate.model: "
                    f"unknown model {gen.model!r}{hint_names(gen.model, config.models)}"
                )


def _check_failure_policies(config: ProjectConfig, doc: YamlDocument, problems: list[str]) -> None:
    for name, pipeline in config.pipelines.items():
        if "rules" in pipeline.on_failure and pipeline.fallback_rules is None:
            loc: Loc = ("pipelines", name, "on_failure")
            problems.append(
                f"{doc.where(loc)}: pipelines.{name}.on_failure: 'rules' needs "
                f"pipelines.{name}.fallback_rules (hint: add rules or remove 'rules')"
            )
        second = pipeline.escalate.second_opinion
        if second is not None and second.model not in config.models:
            loc = ("pipelines", name, "escalate", "second_opinion", "model")
            problems.append(
                f"{doc.where(loc)}: pipelines.{name}.escalate.second_opinion.model: unknown model "
                f"{second.model!r}{hint_names(second.model, config.models)}"
            )
        if len(set(pipeline.on_failure)) != len(pipeline.on_failure):
            loc = ("pipelines", name, "on_failure")
            problems.append(
                f"{doc.where(loc)}: pipelines.{name}.on_failure: a path is listed twice"
            )


def _check_routes(config: ProjectConfig, doc: YamlDocument, problems: list[str]) -> None:
    """Routes, budgets and steps' route references; every message names the route."""

    def add(loc: Loc, message: str) -> None:
        problems.append(f"{doc.where(loc)}: {_dotted(loc)}: {message}")

    tiers: dict[str, list[str]] = {}
    for mname, model in config.models.items():
        tiers.setdefault(model.tier, []).append(mname)
    for rname, route in config.routes.items():
        base: Loc = ("routes", rname)
        for index, tier in enumerate(route.tiers):
            if tier not in tiers:
                add(
                    (*base, "tiers", index),
                    f"route {rname!r}: no model has tier {tier!r}{hint_names(tier, tiers)}",
                )
        for index, rule in enumerate(route.rules):
            loc: Loc = (*base, "rules", index, "tier")
            if rule.tier not in route.tiers:
                add(loc, f"route {rname!r}: rule tier {rule.tier!r} is not in the route's tiers")
            elif rule.min_tokens is not None:
                windows = [config.models[m].context_window for m in tiers.get(rule.tier, [])]
                if windows and all(w is not None and w < rule.min_tokens for w in windows):
                    add(
                        loc,
                        f"route {rname!r}: no model of tier {rule.tier!r} fits inputs of "
                        f"{rule.min_tokens}+ tokens (largest window {max(w or 0 for w in windows)})",
                    )
        seen: list[str] = []
        for index, hop in enumerate(route.hop_names()):
            loc = (*base, "fallbacks", index)
            if hop not in config.models:
                add(loc, f"route {rname!r}: unknown model {hop!r}{hint_names(hop, config.models)}")
            elif hop in seen:
                add(
                    loc,
                    f"route {rname!r}: the fallback chain loops: "
                    f"{' -> '.join([*seen, hop])} (hint: name each model once)",
                )
            seen.append(hop)
        if not route.tiers and not route.fallbacks:
            add(base, f"route {rname!r}: needs tiers or fallbacks (hint: fallbacks: [MODEL])")
        chain = [m for t in route.tiers for m in tiers.get(t, [])] + [
            h for h in seen if h in config.models
        ]
        windows = [config.models[m].context_window for m in chain]
        largest = [r.min_tokens for r in route.rules if r.min_tokens is not None]
        if chain and largest and all(w is not None and w < max(largest) for w in windows):
            add(
                base,
                f"route {rname!r}: no model in the route fits its largest input "
                f"({max(largest)} tokens)",
            )
        if route.budget is not None and route.budget not in config.budgets:
            add(
                (*base, "budget"),
                f"route {rname!r}: unknown budget {route.budget!r}"
                f"{hint_names(route.budget, config.budgets)}",
            )
        for key in route.limits:
            kind, _, name = key.partition(":")
            known = config.providers if name and kind == "provider" else config.models
            target = name if name and kind == "provider" else key
            if target not in known:
                add(
                    (*base, "limits", key),
                    f"route {rname!r}: unknown {'provider' if known is config.providers else 'model'}"
                    f" {target!r}{hint_names(target, known)}",
                )
    for bname, budget in config.budgets.items():
        kind, _, name = budget.scope.partition(":")
        ok = (
            (budget.scope in ("route", "global"))
            or (kind == "pipeline" and name in config.pipelines)
            or (kind == "model" and name in config.models)
        )
        if not ok:
            add(
                ("budgets", bname, "scope"),
                f"budget {bname!r}: scope must be route, global, pipeline:NAME or model:NAME "
                f"with a known name, got {budget.scope!r}",
            )
    for pname, pipeline in config.pipelines.items():
        for index, step in enumerate(pipeline.steps):
            gen = getattr(step, "generate", None)
            if gen is None or getattr(gen, "route", None) is None:
                continue
            loc = ("pipelines", pname, "steps", index, "generate", "route")
            if gen.route not in config.routes:
                add(loc, f"unknown route {gen.route!r}{hint_names(gen.route, config.routes)}")
            if gen.model is not None:
                add(loc, "set either model or route, not both")


def _load_schemas(
    config: ProjectConfig, root: Path, doc: YamlDocument, problems: list[str]
) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for pname, pipeline in config.pipelines.items():
        for index, step in enumerate(pipeline.steps):
            rel = step.generate.output if step.generate is not None else None
            if rel is None or rel in schemas:
                continue
            loc: Loc = ("pipelines", pname, "steps", index, "generate", "output")
            where = f"{doc.where(loc)}: pipelines.{pname}.steps[{index}].generate.output"
            path = root / rel
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except FileNotFoundError:
                problems.append(f"{where}: schema file {rel!r} not found")
                continue
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: {rel} is not valid JSON (line {exc.lineno}: {exc.msg})")
                continue
            except jsonschema.SchemaError as exc:
                problems.append(f"{where}: {rel} is not a valid JSON Schema: {exc.message}")
                continue
            schemas[rel] = schema
    return schemas


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(
    exc: ValidationError, doc: YamlDocument, root: type[BaseModel]
) -> list[str]:
    """One ``file:line: key.path: problem (hint)`` line per pydantic error."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        raw_loc: Loc = tuple(error["loc"])
        loc = _data_loc(raw_loc, doc)
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(root, raw_loc[:-1]) or set()
            hint = hint_names(key, allowed)
            if key in ("api_key", "key", "token", "secret"):
                hint = (
                    " (hint: secrets never go in roadworthy.yaml; put the key in an "
                    "environment variable and name it with api_key_env)"
                )
            message = f"unknown key {key!r}{hint}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "union_tag_invalid":
            ctx = error.get("ctx", {})
            message = (
                f"unknown type {ctx.get('tag')!r} "
                f"(hint: one of {ctx.get('expected_tags', '').replace(chr(39), '')})"
            )
        elif kind == "union_tag_not_found":
            message = "missing 'type' (hint: one of local, openai, anthropic, scripted)"
        else:
            message = f"{error['msg']}, got {error.get('input')!r}"
        problems.append(f"{doc.where(loc)}: {_dotted(loc) or '(top level)'}: {message}")
    return problems


def _data_loc(loc: Loc, doc: YamlDocument) -> Loc:
    """Drop the parts pydantic adds that are not keys in the file (union tags)."""
    out: Loc = ()
    node: Any = doc.data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out = (*out, part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            out = (*out, part)
        elif isinstance(node, dict) and part == loc[-1]:
            out = (*out, part)  # a missing or unknown key: name it even though it isn't there
    return out


def _allowed_keys(root: type[BaseModel], loc: Loc) -> set[str] | None:
    """The field names valid at ``loc`` (pydantic's loc, union tags included)."""
    current: Any = root
    parts = list(loc)
    while True:
        current = _unwrap(current, parts)
        if current is None:
            return None
        if not parts:
            if isinstance(current, type) and issubclass(current, BaseModel):
                return set(current.model_fields)
            return None
        part = parts.pop(0)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
        else:
            return None


def _unwrap(tp: Any, parts: list[str | int]) -> Any:
    """Strip Annotated and Optional; pick a tagged union member by the tag in ``parts``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
            if parts:
                for member in members:
                    fields = getattr(member, "model_fields", {})
                    tag = fields.get("type")
                    if tag is not None and parts[0] in typing.get_args(tag.annotation):
                        parts.pop(0)
                        tp = member
                        break
                else:
                    return None
                continue
            return None
        return tp
