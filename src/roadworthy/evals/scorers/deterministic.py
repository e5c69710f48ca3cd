"""Deterministic scorers: string and JSON checks, bounds on length, latency and cost.

The names and meanings of the string checks follow promptfoo's assertion types
(``equals``, ``contains``, ``icontains``, ``contains-any``, ``contains-all``, ``regex``,
``starts-with``, ``is-json``, ``contains-json``), so imported promptfoo tests mean the same
thing here. Where a check needs a target and none is given, it uses the example's
``expected`` value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from ...errors import ConfigError
from ..datasets import Example
from .base import Output, Score, ScoreFn, output_json, scorer

__all__ = [
    "DEFAULT_REFUSAL_PHRASES",
    "contains",
    "contains_all",
    "contains_any",
    "contains_json",
    "cost",
    "equals",
    "field_equals",
    "find_refusal",
    "get_field",
    "icontains",
    "icontains_all",
    "icontains_any",
    "is_json",
    "json_schema",
    "latency",
    "length",
    "refusal",
    "regex",
    "required_fields",
    "starts_with",
]


def _text(output: Output) -> str | None:
    return output.as_text


def _no_output(output: Output) -> Score:
    return Score.fail(f"no output ({output.error or 'empty'})")


def _short(value: Any, limit: int = 60) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(shown if len(shown) <= limit else shown[: limit - 1] + "…")


_MISSING = object()


def get_field(data: Any, path: str) -> Any:
    """``a.b.0.c`` into nested objects and lists; a missing step returns a sentinel."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


@scorer("equals")
def equals(value: Any = None, *, field: str | None = None, strip: bool = True) -> ScoreFn:
    """Output equals ``value`` (else the example's ``expected``).

    A string target compares with the output text (whitespace-trimmed when ``strip``); any
    other JSON value compares with the parsed output, so ``{"a": 1}`` equals ``{"a":1}``.
    """

    def score(example: Example, output: Output) -> Score:
        target = value if value is not None else example.expected
        if field is not None and value is None:
            target = example.expected_field(field)
        if target is None:
            return Score.skip("no expected value to compare with")
        if output.error is not None and output.text is None and output.parsed is None:
            return _no_output(output)
        if isinstance(target, str) and field is None:
            text = _text(output) or ""
            got, want = (text.strip(), target.strip()) if strip else (text, target)
            return Score.check(got == want, f"expected {_short(want)}, got {_short(got)}")
        ok, data, problem = output_json(output)
        if not ok:
            return Score.fail(problem)
        if field is not None:
            data = get_field(data, field)
            if data is _MISSING:
                return Score.fail(f"output has no field {field!r}")
        return Score.check(data == target, f"expected {_short(target)}, got {_short(data)}")

    return score


def _needles(value: Any, kind: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{kind} needs a string or a list of strings as value, got {value!r}")


def _contains_factory(value: Any, *, ignore_case: bool, mode: str, kind: str) -> ScoreFn:
    needles = _needles(value, kind)
    if mode == "one" and len(needles) != 1:
        raise ValueError(f"{kind} takes one string; use {kind}-any or {kind}-all for lists")

    def score(example: Example, output: Output) -> Score:
        text = _text(output)
        if text is None:
            return _no_output(output)
        hay = text.lower() if ignore_case else text
        found = [n for n in needles if (n.lower() if ignore_case else n) in hay]
        missing = [n for n in needles if n not in found]
        if mode == "all":
            return Score.check(not missing, f"missing {missing!r}" if missing else "all found")
        return Score.check(
            bool(found), f"found {found[0]!r}" if found else f"none of {needles!r} found"
        )

    return score


@scorer("contains")
def contains(value: str) -> ScoreFn:
    """Output text contains ``value`` (case-sensitive)."""
    return _contains_factory(value, ignore_case=False, mode="one", kind="contains")


@scorer("icontains")
def icontains(value: str) -> ScoreFn:
    """Output text contains ``value``, ignoring case."""
    return _contains_factory(value, ignore_case=True, mode="one", kind="icontains")


@scorer("contains-any")
def contains_any(value: Sequence[str]) -> ScoreFn:
    return _contains_factory(value, ignore_case=False, mode="any", kind="contains-any")


@scorer("contains-all")
def contains_all(value: Sequence[str]) -> ScoreFn:
    return _contains_factory(value, ignore_case=False, mode="all", kind="contains-all")


@scorer("icontains-any")
def icontains_any(value: Sequence[str]) -> ScoreFn:
    return _contains_factory(value, ignore_case=True, mode="any", kind="icontains-any")


@scorer("icontains-all")
def icontains_all(value: Sequence[str]) -> ScoreFn:
    return _contains_factory(value, ignore_case=True, mode="all", kind="icontains-all")


@scorer("regex")
def regex(value: str, *, ignore_case: bool = False) -> ScoreFn:
    """Output text matches the regular expression ``value`` anywhere (``re.search``)."""
    pattern = re.compile(value, re.IGNORECASE if ignore_case else 0)

    def score(example: Example, output: Output) -> Score:
        text = _text(output)
        if text is None:
            return _no_output(output)
        match = pattern.search(text)
        return Score.check(
            match is not None,
            f"matched {match.group(0)!r}" if match else f"no match for /{value}/",
        )

    return score


@scorer("starts-with")
def starts_with(value: str) -> ScoreFn:
    def score(example: Example, output: Output) -> Score:
        text = _text(output)
        if text is None:
            return _no_output(output)
        return Score.check(text.startswith(value), f"starts with {_short(text[: len(value) + 10])}")

    return score


def _load_schema(schema: Any, base_dir: Path | None) -> dict[str, Any]:
    if isinstance(schema, str | Path):
        path = Path(schema)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"schema file {str(schema)!r} not found (looked at {path})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        schema = loaded
    if not isinstance(schema, dict):
        raise ConfigError(f"schema must be a JSON object or a path to one, got {schema!r}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"not a valid JSON Schema: {exc.message}") from None
    return schema


def _schema_check(schema: dict[str, Any] | None, data: Any) -> Score:
    if schema is None:
        return Score.pass_("valid JSON")
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not problems:
        return Score.pass_("matches the schema")
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in problems[:3]
    )
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return Score.fail(f"schema: {shown}{more}", errors=len(problems))


@scorer("json-schema")
def json_schema(schema: Any, *, base_dir: Path | None = None) -> ScoreFn:
    """Output is JSON that validates against ``schema`` (an object or a file path)."""
    loaded = _load_schema(schema, base_dir)

    def score(example: Example, output: Output) -> Score:
        ok, data, problem = output_json(output)
        if not ok:
            return Score.fail(problem)
        return _schema_check(loaded, data)

    return score


@scorer("is-json")
def is_json(value: Any = None, *, base_dir: Path | None = None) -> ScoreFn:
    """The whole output is JSON; with ``value`` (a schema), it also validates."""
    loaded = _load_schema(value, base_dir) if value is not None else None

    def score(example: Example, output: Output) -> Score:
        ok, data, problem = output_json(output)
        if not ok:
            return Score.fail(problem)
        return _schema_check(loaded, data)

    return score


def _json_candidates(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    found = []
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                continue
            found.append(value)
    return found


@scorer("contains-json")
def contains_json(value: Any = None, *, base_dir: Path | None = None) -> ScoreFn:
    """Some JSON object or array appears in the output; with ``value`` (a schema), one of
    them validates."""
    loaded = _load_schema(value, base_dir) if value is not None else None

    def score(example: Example, output: Output) -> Score:
        if output.parsed is not None:
            return _schema_check(loaded, output.parsed)
        text = _text(output)
        if text is None:
            return _no_output(output)
        candidates = _json_candidates(text)
        if not candidates:
            return Score.fail("no JSON object or array in the output")
        last = Score.fail("no JSON value matched")
        for candidate in candidates:
            last = _schema_check(loaded, candidate)
            if last.passed:
                return last
        return last

    return score


@scorer("required-fields")
def required_fields(fields: Sequence[str], *, allow_null: bool = False) -> ScoreFn:
    """The JSON output has every field (dotted paths allowed), non-null unless allowed."""
    if isinstance(fields, str) or not fields:
        raise ValueError("fields must be a non-empty list of field names")
    wanted = list(fields)

    def score(example: Example, output: Output) -> Score:
        ok, data, problem = output_json(output)
        if not ok:
            return Score.fail(problem)
        missing = [
            f
            for f in wanted
            if (v := get_field(data, f)) is _MISSING or (v is None and not allow_null)
        ]
        return Score.check(not missing, f"missing {missing!r}" if missing else "all fields present")

    return score


@scorer("field-equals")
def field_equals(field: str, value: Any = None, *, tolerance: float = 0.0) -> ScoreFn:
    """``output[field]`` equals ``value`` (else ``expected[field]``); numbers compare
    within an absolute ``tolerance``."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")

    def score(example: Example, output: Output) -> Score:
        target = value if value is not None else example.expected_field(field)
        if target is None:
            return Score.skip(f"no expected value for {field!r}")
        ok, data, problem = output_json(output)
        if not ok:
            return Score.fail(problem)
        got = get_field(data, field)
        if got is _MISSING:
            return Score.fail(f"output has no field {field!r}")
        numbers = (int, float)
        if (
            isinstance(got, numbers)
            and isinstance(target, numbers)
            and not isinstance(got, bool)
            and not isinstance(target, bool)
        ):
            diff = abs(float(got) - float(target))
            # 64.92 - 64.91 is 0.01000000000000156 in binary floating point
            within = diff <= tolerance or math.isclose(diff, tolerance, rel_tol=1e-9)
            return Score.check(
                within,
                f"{field}: {got} vs {target} (off by {diff:.4g}, tolerance {tolerance:g})",
            )
        return Score.check(got == target, f"{field}: expected {_short(target)}, got {_short(got)}")

    return score


@scorer("length")
def length(
    min: int | None = None,
    max: int | None = None,
    *,
    unit: str = "chars",
) -> ScoreFn:
    """Output length within [min, max] characters (``unit: chars``) or words."""
    if unit not in ("chars", "words"):
        raise ValueError(f"unit must be 'chars' or 'words', got {unit!r}")
    if min is None and max is None:
        raise ValueError("give min, max or both")
    if min is not None and max is not None and min > max:
        raise ValueError(f"min ({min}) is larger than max ({max})")

    def score(example: Example, output: Output) -> Score:
        text = _text(output)
        if text is None:
            return _no_output(output)
        size = len(text) if unit == "chars" else len(text.split())
        ok = (min is None or size >= min) and (max is None or size <= max)
        bounds = f"[{min if min is not None else ''}, {max if max is not None else ''}]"
        return Score.check(ok, f"{size} {unit}, bounds {bounds}", length=size)

    return score


@scorer("latency")
def latency(max_s: float) -> ScoreFn:
    """The result record's latency is at most ``max_s`` seconds; unknown → unscored."""
    if max_s <= 0:
        raise ValueError(f"max_s must be positive, got {max_s!r}")

    def score(example: Example, output: Output) -> Score:
        if output.latency_s is None:
            return Score.skip("latency was not recorded")
        return Score.check(output.latency_s <= max_s, f"{output.latency_s:.3f}s (limit {max_s:g}s)")

    return score


@scorer("cost")
def cost(max_usd: float) -> ScoreFn:
    """The result record's cost is at most ``max_usd``; unknown cost → unscored, not 0."""
    if max_usd < 0:
        raise ValueError(f"max_usd must be >= 0, got {max_usd!r}")

    def score(example: Example, output: Output) -> Score:
        if output.cost_usd is None:
            return Score.skip("cost is unknown (no usage or no price)")
        return Score.check(
            output.cost_usd <= max_usd, f"${output.cost_usd:.6f} (limit ${max_usd:g})"
        )

    return score


DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm unable to",
    "i am unable to",
    "i'm not able to",
    "i am not able to",
    "i won't be able to",
    "i can't provide",
    "i cannot provide",
    "i can't comply",
    "i cannot comply",
    "i must decline",
    "i'm sorry, but i",
    "i am sorry, but i",
    "as an ai",
    "against my guidelines",
    "i'm not comfortable",
)


def find_refusal(text: str, phrases: Sequence[str] = DEFAULT_REFUSAL_PHRASES) -> str | None:
    """The first refusal phrase in ``text`` (case-insensitive, curly quotes folded)."""
    folded = text.lower().replace("\u2019", "'")
    for phrase in phrases:
        if phrase.lower() in folded:
            return phrase
    return None


@scorer("refusal")
def refusal(*, expected: bool = False, phrases: Sequence[str] | None = None) -> ScoreFn:
    """Passes when the output is a refusal exactly when ``expected`` says it should be.

    Default: passes when the model did *not* refuse. Detection is a phrase list, cheap and
    explainable; pair it with a judge when refusals are subtle.
    """
    listed = tuple(phrases) if phrases is not None else DEFAULT_REFUSAL_PHRASES
    if not listed:
        raise ValueError("phrases must not be empty")

    def score(example: Example, output: Output) -> Score:
        text = _text(output)
        if text is None:
            return _no_output(output)
        hit = find_refusal(text, listed)
        refused = hit is not None
        why = f"refusal phrase {hit!r}" if hit else "no refusal phrase"
        return Score.check(refused == expected, why, refused=refused)

    return score
