"""The degradation paths as pure functions: partial, rules, defer, escalation criteria."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from roadworthy.config.model import DeferPolicy, EscalateWhen, KeywordRule, RulesFallback
from roadworthy.errors import OutputInvalid, ProviderUnavailable
from roadworthy.pipeline.degrade import (
    apply_rules,
    defer_outcome,
    escalation_reason,
    partial_outcome,
    rules_outcome,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "technical"]},
        "priority": {"enum": ["low", "high"]},
        "summary": {"type": "string", "maxLength": 10},
    },
    "required": ["category", "priority", "summary"],
}


def test_partial_keeps_only_fields_valid_on_their_own() -> None:
    raw = json.dumps({"category": "billing", "priority": "asap", "summary": "x" * 50})
    outcome = partial_outcome(OutputInvalid("fails", raw_text=raw), SCHEMA)
    assert outcome is not None and outcome.status == "degraded"
    assert outcome.output == {"category": "billing"}
    assert outcome.missing == ["priority", "summary"]
    assert "OutputInvalid" in outcome.reason and "missing: priority, summary" in outcome.reason


def test_partial_does_not_apply_without_a_usable_object() -> None:
    assert partial_outcome(ProviderUnavailable("down"), SCHEMA) is None
    assert partial_outcome(OutputInvalid("bad", raw_text="not json"), SCHEMA) is None
    assert partial_outcome(OutputInvalid("bad", raw_text='{"priority": "asap"}'), SCHEMA) is None


RULES = RulesFallback(
    rules=[
        KeywordRule(when_any=["refund", "invoice", "charged"], set={"category": "billing"}),
        KeywordRule(when_any=["error", "crash"], set={"category": "technical", "priority": "high"}),
    ],
    defaults={"category": "other", "priority": "medium"},
)


def test_keyword_rules_first_match_wins_then_defaults() -> None:
    assert apply_rules({"text": "I was CHARGED twice and the app shows an error"}, RULES) == {
        "category": "billing",
        "priority": "high",
    }
    assert apply_rules({"text": "hello there"}, RULES) == {
        "category": "other",
        "priority": "medium",
    }
    assert apply_rules({"text": "x"}, RulesFallback(rules=RULES.rules)) is None


def test_rules_can_be_a_registered_function() -> None:
    assert apply_rules({"text": "x"}, RulesFallback(function="builtins:dict")) == {"text": "x"}
    assert apply_rules({"text": "x"}, RulesFallback(function="json:loads")) is None  # it raises
    outcome = rules_outcome(ProviderUnavailable("down"), {"text": "refund please"}, RULES)
    assert outcome is not None and outcome.output == {"category": "billing", "priority": "medium"}
    assert outcome.reason.startswith("rule-based fallback (ProviderUnavailable")


def test_defer_backs_off_exponentially_then_gives_up() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = DeferPolicy(max_attempts=3, backoff_s=10, backoff_factor=3)
    first = defer_outcome(ProviderUnavailable("down"), 1, policy, now)
    second = defer_outcome(ProviderUnavailable("down"), 2, policy, now)
    assert first is not None and first.next_attempt_at == now + timedelta(seconds=10)
    assert second is not None and second.next_attempt_at == now + timedelta(seconds=30)
    assert "attempt 2 of 3" in second.reason
    assert defer_outcome(ProviderUnavailable("down"), 3, policy, now) is None


def test_escalation_criteria() -> None:
    policy = EscalateWhen(
        output_in={"category": ["refund"]}, output_above={"amount": 500}, confidence_below=0.6
    )
    assert escalation_reason({"category": "refund"}, policy, "k") == (
        "output_rule",
        "category is 'refund', which needs a human",
    )
    assert escalation_reason({"amount": 900}, policy, "k") == (
        "output_rule",
        "amount = 900 is over 500.0",
    )
    assert escalation_reason({"confidence": 0.2}, policy, "k") == (
        "low_confidence",
        "confidence 0.2 is below 0.6",
    )
    assert (
        escalation_reason({"category": "billing", "amount": 20, "confidence": 0.9}, policy, "k")
        is None
    )


def test_audit_sample_is_stable_and_near_its_rate() -> None:
    policy = EscalateWhen(audit_rate=0.1)
    picks = [escalation_reason({}, policy, f"id:{n}") is not None for n in range(5000)]
    assert 0.08 < sum(picks) / len(picks) < 0.12
    assert picks == [escalation_reason({}, policy, f"id:{n}") is not None for n in range(5000)]
