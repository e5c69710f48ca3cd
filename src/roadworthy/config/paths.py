"""Which path an item takes: the pipeline's ``path`` rule, and its batch settings.

A pipeline runs the same steps on three paths (sync in-process, async through the job
queue, batch through a provider's batch API at its discount); this module says which one
an item takes. ``path`` is a word (``sync``, ``async``, ``batch``) or ``auto``, which walks
``rules`` top to bottom and takes the first whose conditions all hold, else ``default``::

    path:
      mode: auto
      priority_field: priority        # a number in the input; missing: no priority rule matches
      rules:
        - {priority_at_least: 5, path: sync}     # urgent: answer now
        - {chars_over: 20000, path: batch}       # big and not urgent: half price
      default: async

The rule depends only on the input, so the CLI, the server and workers route an item the
same way. :func:`check_paths` reports bad rules with ``file:line: key.path: problem
(hint)`` at load time, and also refuses ``batch`` for pipelines the batch path cannot run
(see docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from .model import PipelineConfig, ProjectConfig
    from .yamlfile import Loc

__all__ = [
    "BATCH_PROVIDER_TYPES",
    "BatchSettings",
    "PathName",
    "PathRule",
    "PathRules",
    "batch_problems",
    "check_paths",
    "choose_path",
    "item_chars",
    "item_priority",
]

PathName = Literal["sync", "async", "batch"]
BATCH_PROVIDER_TYPES = ("openai", "anthropic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathRule(_Strict):
    """One ``auto`` rule: every condition given must hold for ``path`` to apply."""

    path: PathName
    priority_at_least: float | None = None
    priority_below: float | None = None
    chars_over: int | None = Field(None, ge=0)
    chars_at_most: int | None = Field(None, ge=0)

    def conditions(self) -> dict[str, float]:
        names = ("priority_at_least", "priority_below", "chars_over", "chars_at_most")
        return {n: float(v) for n in names if (v := getattr(self, n)) is not None}

    def matches(self, chars: int, priority: float | None) -> bool:
        for name, bound in self.conditions().items():
            if name.startswith("priority"):
                if priority is None:
                    return False
                if name == "priority_at_least" and not priority >= bound:
                    return False
                if name == "priority_below" and not priority < bound:
                    return False
            elif name == "chars_over" and not chars > bound:
                return False
            elif name == "chars_at_most" and not chars <= bound:
                return False
        return True


class PathRules(_Strict):
    """``pipelines.NAME.path``: a fixed path, or ``auto`` with rules and a default."""

    mode: Literal["sync", "async", "batch", "auto"] = "sync"
    rules: list[PathRule] = []
    default: PathName = "sync"
    priority_field: str = "priority"

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        """``path: batch`` is short for ``path: {mode: batch}``."""
        return {"mode": value} if isinstance(value, str) else value

    def targets(self) -> set[str]:
        """Every path an item of this pipeline can take."""
        if self.mode != "auto":
            return {self.mode}
        return {self.default, *(rule.path for rule in self.rules)}


class BatchSettings(_Strict):
    """``pipelines.NAME.batch``: how the batch path waits and what it does with failures."""

    on_error: Literal["resubmit", "realtime", "fail"] = Field(
        "resubmit",
        description="requests that failed in a way that can succeed later (expired, 429, "
        "5xx): resubmit in a new batch, send on the real-time path at full price, or fail",
    )
    max_resubmissions: int = Field(2, ge=0)
    poll_interval_s: float = Field(60.0, ge=0)
    max_polls: int = Field(1500, ge=1, description="polls per round before the batch is cancelled")


def item_chars(item: Any) -> int:
    """The size rules compare: characters in the input's string values (keys excluded)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, Mapping):
        return sum(item_chars(v) for v in item.values())
    if isinstance(item, list | tuple):
        return sum(item_chars(v) for v in item)
    return 0


def item_priority(item: Any, field: str) -> float | None:
    """The input's priority, when it has a number there (booleans are not numbers)."""
    value = item.get(field) if isinstance(item, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def choose_path(pipeline: PipelineConfig, item: Any) -> PathName:
    """The path ``item`` takes through ``pipeline``: ``"sync"``, ``"async"`` or ``"batch"``.

    Pure and cheap, so the server can call it per request and the CLI per line.
    """
    rules = pipeline.path
    if rules.mode != "auto":
        return rules.mode
    chars = item_chars(item)
    priority = item_priority(item, rules.priority_field)
    for rule in rules.rules:
        if rule.matches(chars, priority):
            return rule.path
    return rules.default


def batch_problems(config: ProjectConfig, name: str) -> list[tuple[Loc, str]]:
    """Why pipeline ``name`` cannot take the batch path (empty when it can).

    The batch path sends one request per item and waits hours for the answer, so it takes
    pipelines of exactly one ``generate`` step (no ``for_each``, no second opinion) whose
    model's provider has a batch API. A later step that needs an earlier step's answer
    would wait a batch window per step; such pipelines stay on sync or async.
    """
    pipeline = config.pipelines[name]
    base: Loc = ("pipelines", name)
    problems: list[tuple[Loc, str]] = []
    gens = [(i, s.generate) for i, s in enumerate(pipeline.steps) if s.generate is not None]
    if len(pipeline.steps) != 1 or len(gens) != 1:
        problems.append(
            (
                (*base, "steps"),
                "the batch path runs pipelines of exactly one generate step "
                "(hint: run multi-step pipelines on path sync or async)",
            )
        )
        return problems
    index, gen = gens[0]
    assert gen is not None
    step_loc: Loc = (*base, "steps", index, "generate")
    if gen.for_each is not None:
        problems.append(
            ((*step_loc, "for_each"), "the batch path sends one request per item, not per chunk")
        )
    if pipeline.escalate.second_opinion is not None:
        problems.append(
            (
                (*base, "escalate", "second_opinion"),
                "the batch path does not ask a second model (hint: use path sync or async)",
            )
        )
    model = config.models.get(gen.model) if gen.model is not None else None
    if model is not None and model.provider in config.providers:
        kind = config.providers[model.provider].type
        if kind not in BATCH_PROVIDER_TYPES:
            problems.append(
                (
                    (*step_loc, "model"),
                    f"model {gen.model!r} is served by a {kind} provider, which has no batch "
                    "API (hint: an openai or anthropic provider)",
                )
            )
    return problems


def check_paths(config: ProjectConfig, where: Callable[[Loc], str], problems: list[str]) -> None:
    """Add a ``file:line: key.path: problem (hint)`` line for every bad path rule."""

    def add(loc: Loc, message: str) -> None:
        dotted = ""
        for part in loc:
            dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else part)
        problems.append(f"{where(loc)}: {dotted}: {message}")

    for name, pipeline in config.pipelines.items():
        rules = pipeline.path
        base: Loc = ("pipelines", name, "path")
        if rules.mode == "auto" and not rules.rules:
            add(
                base,
                "mode auto needs rules (hint: rules: [{priority_at_least: 5, path: sync}], "
                "or a fixed path such as path: async)",
            )
        if rules.mode != "auto" and rules.rules:
            add((*base, "rules"), f"rules only apply to mode auto, not {rules.mode!r}")
        for index, rule in enumerate(rules.rules):
            loc: Loc = (*base, "rules", index)
            if not rule.conditions():
                add(
                    loc,
                    "a rule needs a condition (hint: priority_at_least, priority_below, "
                    "chars_over or chars_at_most; use default for the catch-all)",
                )
            low, high = rule.priority_at_least, rule.priority_below
            if low is not None and high is not None and low >= high:
                add(loc, f"no priority is at least {low:g} and below {high:g}")
            over, most = rule.chars_over, rule.chars_at_most
            if over is not None and most is not None and over >= most:
                add(loc, f"no size is over {over} and at most {most} characters")
        if "batch" in rules.targets():
            for loc, message in batch_problems(config, name):
                add(loc, f"path batch: {message}")
