"""Scores, result records, the scorer wrapper and the registry of scorer factories.

A scorer is built by a small factory (as in Inspect AI): the factory takes the scorer's
settings and returns a function ``(example, output) -> Score``. ``@scorer("name")``
registers the factory under a name, so suite files and dataset ``assert`` entries can say
``{type: name, ...}`` and a team's own Python checks sit next to the built-in ones.

A :class:`Score` has three states, and the third is the reason this module exists:

* **pass/fail**: ``passed`` is True/False and ``value`` is 1.0/0.0;
* **graded**: ``value`` in [0, 1], ``passed`` set when the scorer has a threshold;
* **unscored**: ``value`` and ``passed`` are ``None`` and ``reason`` says why (a judge
  reply that did not parse, an example with no reference). Aggregates skip and count
  these; they are never NaN and never a silent 0 (DeepEval PR #3234: one NaN made a whole
  run's mean NaN).

The system under test failing is *not* unscored: an output with ``error`` set fails every
scorer that needs the output, because that failure is exactly what an eval must see.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

from ...config.load import hint_names
from ...errors import ConfigError
from ...providers.base import Usage
from ..datasets import Example

__all__ = [
    "ModelCall",
    "Output",
    "Score",
    "ScoreFn",
    "Scorer",
    "ScorerSpec",
    "build_scorer",
    "get_scorer_factory",
    "output_json",
    "registered_scorers",
    "scorer",
]

P = ParamSpec("P")


@dataclass(frozen=True)
class ModelCall:
    """One model call made *by a scorer* (an LLM judge), so the runner can price it
    separately from the system under test."""

    provider: str
    model: str
    usage: Usage
    latency_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Output:
    """One result record: what the system under test produced for one example.

    ``parsed`` is the structured output when the pipeline produced one; scorers that need
    JSON fall back to parsing ``text``. ``error`` is set (and ``text`` usually ``None``)
    when the system failed. ``cost_usd`` is ``None`` when unknown, never 0 by default.
    """

    text: str | None = None
    parsed: Any = None
    error: str | None = None
    latency_s: float | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def as_text(self) -> str | None:
        """The text to match against: ``text``, else the parsed value as JSON."""
        if self.text is not None:
            return self.text
        if self.parsed is not None:
            return json.dumps(self.parsed, ensure_ascii=False)
        return None


@dataclass(frozen=True)
class Score:
    """A score in [0, 1] or pass/fail, with a reason; or unscored (both ``None``)."""

    value: float | None
    passed: bool | None = None
    reason: str = ""
    scorer: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    calls: tuple[ModelCall, ...] = ()

    def __post_init__(self) -> None:
        if self.value is None:
            if self.passed is not None:
                raise ValueError("an unscored Score cannot pass or fail")
            return
        if isinstance(self.value, bool) or not math.isfinite(self.value):
            raise ValueError(f"score value must be a finite number, got {self.value!r}")
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score value must be in [0, 1], got {self.value!r}")

    @property
    def unscored(self) -> bool:
        return self.value is None

    @classmethod
    def pass_(cls, reason: str, **details: Any) -> Score:
        return cls(1.0, True, reason, details=details)

    @classmethod
    def fail(cls, reason: str, **details: Any) -> Score:
        return cls(0.0, False, reason, details=details)

    @classmethod
    def check(cls, ok: bool, reason: str, **details: Any) -> Score:
        return cls(1.0 if ok else 0.0, ok, reason, details=details)

    @classmethod
    def graded(
        cls, value: float, reason: str, *, threshold: float | None = None, **details: Any
    ) -> Score:
        """A value in [0, 1] (clamped against float error); passes at ``threshold``."""
        value = min(1.0, max(0.0, float(value)))
        passed = None if threshold is None else value >= threshold
        return cls(value, passed, reason, details=details)

    @classmethod
    def skip(cls, reason: str, **details: Any) -> Score:
        """The unscored state: the scorer could not judge this example."""
        return cls(None, None, reason, details=details)

    def named(self, name: str) -> Score:
        return Score(self.value, self.passed, self.reason, name, self.details, self.calls)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scorer": self.scorer, "value": self.value, "reason": self.reason}
        if self.passed is not None:
            out["passed"] = self.passed
        if self.value is None:
            out["unscored"] = True
        if self.details:
            out["details"] = dict(self.details)
        return out


ScoreFn = Callable[[Example, Output], "Score | bool | float | Awaitable[Any] | None"]


def _coerce(result: Any) -> Score:
    """Let custom scorers return a bool or a float; NaN and None become unscored."""
    if isinstance(result, Score):
        return result
    if isinstance(result, bool):
        return Score.check(result, "passed" if result else "failed")
    if result is None:
        return Score.skip("scorer returned no score")
    if isinstance(result, int | float):
        if not math.isfinite(result):
            return Score.skip(f"scorer returned {result!r}")
        if not 0.0 <= result <= 1.0:
            return Score.skip(f"scorer returned {result!r}, outside [0, 1]")
        return Score.graded(float(result), f"score {result:.3g}")
    return Score.skip(f"scorer returned {type(result).__name__}, not a Score")


@dataclass(frozen=True)
class Scorer:
    """A configured scorer: a name, the scoring function and what built it.

    Call it (sync scorers) or ``await scorer.ascore(...)`` (any scorer; the runner should
    always use this). An exception inside the function becomes an unscored score naming
    the exception, so one bad example cannot end a run; aggregates count them.
    ``summarize`` optionally turns all of a run's scores into an extra report (the label
    scorer's confusion matrix); call :meth:`report`.
    """

    name: str
    fn: ScoreFn
    type: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    summarize: Callable[[Sequence[Score], Mapping[str, Any]], Any] | None = None
    negate: bool = False

    def report(self, scores: Sequence[Score]) -> Any:
        """The scorer's run-level extra (e.g. a confusion matrix), or ``None``."""
        return self.summarize(scores, self.params) if self.summarize else None

    def _finish(self, raw: Any) -> Score:
        score = _coerce(raw)
        if self.negate and not score.unscored:
            if score.passed is None:
                return Score.skip(f"'not-' needs a pass/fail scorer; {self.type} is graded")
            score = Score(
                1.0 - (score.value or 0.0),
                not score.passed,
                f"not ({score.reason})",
                details=score.details,
                calls=score.calls,
            )
        return score.named(self.name)

    def __call__(self, example: Example, output: Output) -> Score:
        try:
            raw = self.fn(example, output)
        except Exception as exc:
            return Score.skip(f"scorer error: {type(exc).__name__}: {exc}").named(self.name)
        if inspect.isawaitable(raw):
            close = getattr(raw, "close", None)
            if callable(close):
                close()
            raise TypeError(f"scorer {self.name!r} is async; use 'await scorer.ascore(...)'")
        return self._finish(raw)

    async def ascore(self, example: Example, output: Output) -> Score:
        try:
            raw = self.fn(example, output)
            if inspect.isawaitable(raw):
                raw = await raw
        except Exception as exc:
            return Score.skip(f"scorer error: {type(exc).__name__}: {exc}").named(self.name)
        return self._finish(raw)


# ---------------------------------------------------------------------------------------
# registry


_REGISTRY: dict[str, Callable[..., Scorer]] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def scorer(
    name: str, *, summarize: Callable[[Sequence[Score], Mapping[str, Any]], Any] | None = None
) -> Callable[[Callable[P, ScoreFn]], Callable[P, Scorer]]:
    """Register a scorer factory under ``name`` (underscores and hyphens are the same).

    The decorated factory returns a scoring function ``(example, output) -> Score`` (or a
    bool, a float in [0, 1], ``None`` for unscored, or an awaitable of those); calling
    the decorated factory returns a :class:`Scorer` named ``name``::

        @scorer("mentions-refund")
        def mentions_refund(word: str = "refund") -> ScoreFn:
            def score(example: Example, output: Output) -> Score:
                text = output.as_text or ""
                return Score.check(word in text.lower(), f"looked for {word!r}")
            return score
    """
    key = _key(name)

    def decorate(factory: Callable[P, ScoreFn]) -> Callable[P, Scorer]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args: P.args, **kwargs: P.kwargs) -> Scorer:
            fn = factory(*args, **kwargs)
            params = dict(signature.bind(*args, **kwargs).arguments)
            return Scorer(name=key, fn=fn, type=key, params=params, summarize=summarize)

        _REGISTRY[key] = build
        return build

    return decorate


def registered_scorers() -> list[str]:
    """Every registered scorer name, built-in and custom."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def get_scorer_factory(name: str) -> Callable[..., Scorer]:
    """The factory registered under ``name``; a :class:`ConfigError` with a hint if none."""
    _ensure_builtins()
    key = _key(name)
    if key.startswith("not-") and key not in _REGISTRY:
        key = key[4:]
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ConfigError(f"unknown scorer {name!r}{hint_names(_key(name), _REGISTRY)}") from None


def _ensure_builtins() -> None:
    # The built-in factories register themselves on import; importing here (not at
    # module top) avoids a cycle, since they import this module.
    from .. import judges  # noqa: F401
    from . import classification, deterministic, similarity  # noqa: F401


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer as written in a suite file or a dataset's ``assert`` list.

    ``type`` names the factory (a ``not-`` prefix inverts a pass/fail scorer); ``params``
    are its keyword arguments; ``name`` is the label in reports (default: the type);
    ``where`` is ``file:line`` for error messages.
    """

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    weight: float = 1.0
    where: str = ""

    @classmethod
    def parse(cls, raw: Any, where: str = "") -> ScorerSpec:
        """From ``{type: contains, value: x, name: ..., weight: ...}`` or a bare name."""
        prefix = f"{where}: " if where else ""
        if isinstance(raw, str):
            return cls(type=raw, where=where)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{prefix}a scorer must be a mapping with 'type', got {raw!r}")
        data = dict(raw)
        kind = data.pop("type", None)
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"{prefix}scorer is missing 'type' (e.g. type: contains)")
        name = data.pop("name", None)
        weight = data.pop("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ConfigError(f"{prefix}weight must be a number, got {weight!r}")
        return cls(
            type=kind,
            params=data,
            name=str(name) if name is not None else None,
            weight=float(weight),
            where=where,
        )


def build_scorer(
    spec: ScorerSpec | Mapping[str, Any] | str,
    *,
    base_dir: Path | None = None,
    inject: Mapping[str, Any] | None = None,
) -> Scorer:
    """Build a :class:`Scorer` from a spec, reporting bad settings as :class:`ConfigError`.

    Factories that take a ``base_dir`` keyword get the suite's folder (to resolve schema
    paths); ``inject`` supplies runtime objects the same way (an LLM judge's ``judge``).
    """
    if not isinstance(spec, ScorerSpec):
        spec = ScorerSpec.parse(spec)
    prefix = f"{spec.where}: " if spec.where else ""
    try:
        factory = get_scorer_factory(spec.type)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc.problems[0]}") from None
    negate = _key(spec.type).startswith("not-") and _key(spec.type) not in _REGISTRY
    signature = inspect.signature(factory)
    kwargs = dict(spec.params)
    extra = {"base_dir": base_dir, **(inject or {})}
    for key, value in extra.items():
        if key in signature.parameters and key not in kwargs and value is not None:
            kwargs[key] = value
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        allowed = [p for p in signature.parameters if p not in extra]
        raise ConfigError(
            f"{prefix}scorer {spec.type!r}: {exc}{_param_hint(kwargs, allowed)}"
        ) from None
    try:
        built = factory(**kwargs)
    except ConfigError as exc:
        raise ConfigError([f"{prefix}scorer {spec.type!r}: {p}" for p in exc.problems]) from None
    except (TypeError, ValueError, re.error) as exc:
        raise ConfigError(f"{prefix}scorer {spec.type!r}: {exc}") from None
    name = spec.name or _key(spec.type)
    return Scorer(
        name=name,
        fn=built.fn,
        type=built.type,
        params=dict(spec.params),
        summarize=built.summarize,
        negate=negate,
    )


def _param_hint(kwargs: Mapping[str, Any], allowed: Sequence[str]) -> str:
    for key in kwargs:
        if key not in allowed:
            return hint_names(key, allowed)
    return f" (hint: settings are {', '.join(allowed)})" if allowed else ""


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def output_json(output: Output) -> tuple[bool, Any, str]:
    """``(ok, value, problem)``: the output's JSON value, parsing ``text`` if needed.

    A single fenced code block (```json ... ```) is unwrapped first, since models add one
    even when told not to.
    """
    if output.parsed is not None:
        return True, output.parsed, ""
    if output.text is None:
        return False, None, f"no output ({output.error or 'empty'})"
    text = output.text
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return True, json.loads(text), ""
    except json.JSONDecodeError as exc:
        return False, None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
