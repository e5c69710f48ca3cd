"""What a pipeline does when its model steps give no valid result, and when to ask a human.

Each failure path is a small pure function of the input, the error and the policy, so the
runner only decides the order; every path returns an :class:`Outcome` naming the status
and a reason that says which path ran and why it was needed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jsonschema

from ..config.model import DeferPolicy, EscalateWhen, RulesFallback
from ..errors import ConfigError, OutputInvalid, RoadworthyError

log = logging.getLogger("roadworthy.pipeline")

__all__ = [
    "Outcome",
    "apply_rules",
    "defer_outcome",
    "escalation_reason",
    "partial_outcome",
    "rules_outcome",
    "sampled",
]


@dataclass
class Outcome:
    status: str  # degraded | deferred | escalated
    reason: str
    code: str
    output: Any = None
    missing: list[str] = field(default_factory=list)
    next_attempt_at: datetime | None = None


def _describe(exc: RoadworthyError) -> str:
    return f"{exc.error_class}: {str(exc)[:300]}"


def partial_outcome(exc: RoadworthyError, schema: dict[str, Any] | None) -> Outcome | None:
    """Keep the fields of an invalid output that are valid on their own.

    Only applies when the model answered with a JSON object that failed the schema as a
    whole; fields that pass their own property schema are kept, the rest listed missing.
    """
    if not isinstance(exc, OutputInvalid) or not exc.raw_text or schema is None:
        return None
    try:
        value = json.loads(exc.raw_text.strip().strip("`").removeprefix("json"), strict=False)
    except json.JSONDecodeError:
        return None
    properties = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(properties, dict):
        return None
    kept: dict[str, Any] = {}
    for name, sub in properties.items():
        if name in value and isinstance(sub, dict):
            try:
                jsonschema.validate(value[name], sub)
            except jsonschema.ValidationError:
                continue
            kept[name] = value[name]
    if not kept:
        return None
    missing = [name for name in properties if name not in kept]
    return Outcome(
        status="degraded",
        code="partial",
        output=kept,
        missing=missing,
        reason=f"partial result ({_describe(exc)}); missing: {', '.join(missing) or 'none'}",
    )


def _load_function(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"fallback_rules.function {ref!r} cannot be imported: {exc}") from None


def apply_rules(data: dict[str, Any], rules: RulesFallback) -> dict[str, Any] | None:
    """The rule-based answer: a registered function, else keyword rules over text fields."""
    if rules.function is not None:
        function = _load_function(rules.function)
        try:
            result = function(data)
        except Exception:  # a broken fallback must not lose the item; the next path runs
            log.exception("fallback_rules.function %s raised", rules.function)
            return None
        return result if isinstance(result, dict) else None
    text = " ".join(v for v in data.values() if isinstance(v, str)).lower()
    output: dict[str, Any] = {}
    matched = False
    for rule in rules.rules:  # the first rule that sets a field wins it
        if any(keyword.lower() in text for keyword in rule.when_any):
            matched = True
            for key, value in rule.set.items():
                output.setdefault(key, value)
    for key, value in rules.defaults.items():
        output.setdefault(key, value)
    return output if (matched or rules.defaults) else None


def rules_outcome(
    exc: RoadworthyError, data: dict[str, Any], rules: RulesFallback | None
) -> Outcome | None:
    if rules is None:
        return None
    output = apply_rules(data, rules)
    if output is None:
        return None
    return Outcome(
        status="degraded",
        code="rules",
        output=output,
        reason=f"rule-based fallback ({_describe(exc)})",
    )


def defer_outcome(
    exc: RoadworthyError, attempts: int, policy: DeferPolicy, now: datetime
) -> Outcome | None:
    """Park the item for a later retry, with exponential backoff, until attempts run out."""
    if attempts >= policy.max_attempts:
        return None
    delay = policy.backoff_s * policy.backoff_factor ** (attempts - 1)
    when = now + timedelta(seconds=delay)
    return Outcome(
        status="deferred",
        code="deferred",
        next_attempt_at=when,
        reason=(
            f"deferred after attempt {attempts} of {policy.max_attempts} ({_describe(exc)}); "
            f"next attempt after {when.isoformat(timespec='seconds')}"
        ),
    )


def escalation_reason(output: Any, policy: EscalateWhen, item_key: str) -> tuple[str, str] | None:
    """Why a valid answer still needs a human, as (code, reason), or None."""
    if isinstance(output, dict):
        for name, values in policy.output_in.items():
            if output.get(name) in values:
                return "output_rule", f"{name} is {output.get(name)!r}, which needs a human"
        for name, threshold in policy.output_above.items():
            value = output.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > threshold:
                return "output_rule", f"{name} = {value} is over {threshold}"
        if policy.confidence_below is not None:
            confidence = output.get(policy.confidence_field)
            if isinstance(confidence, int | float) and confidence < policy.confidence_below:
                return (
                    "low_confidence",
                    f"{policy.confidence_field} {confidence} is below {policy.confidence_below}",
                )
    if policy.audit_rate > 0 and sampled(item_key, policy.audit_rate, salt="audit"):
        return "audit_sample", f"random audit sample ({policy.audit_rate:.0%} of answers)"
    return None


def sampled(key: str, rate: float, *, salt: str = "") -> bool:
    """A stable yes/no for ``rate`` of keys: the same item is always in or out of a sample."""
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"{salt}{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate
