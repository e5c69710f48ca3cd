"""Aggregate one scorer's scores over a run: mean, pass rate, intervals, unscored counts.

Unscored scores are skipped and counted by reason, so a report can say "12 of 150 not
scored: judge reply could not be parsed" instead of silently averaging a smaller set or
averaging in zeros.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..datasets import Example
from ..stats import Estimate, mean_estimate, pass_rate_estimate
from .base import Score

__all__ = ["ScoreSummary", "summarize_by_tag", "summarize_scores"]


@dataclass(frozen=True)
class ScoreSummary:
    """``mean`` over scored examples; ``pass_rate`` over those with a pass/fail outcome.

    Either is ``None`` when nothing was scored that way. ``unscored_reasons`` counts the
    reasons (trimmed to their first clause, so per-example detail does not explode it).
    """

    scorer: str
    total: int
    scored: int
    unscored: int
    mean: Estimate | None
    pass_rate: Estimate | None
    unscored_reasons: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "total": self.total,
            "scored": self.scored,
            "unscored": self.unscored,
            "mean": self.mean.to_json() if self.mean else None,
            "pass_rate": self.pass_rate.to_json() if self.pass_rate else None,
            "unscored_reasons": dict(self.unscored_reasons),
        }


def _reason_key(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head[:80] or "(no reason)"


def summarize_scores(
    scores: Sequence[Score],
    *,
    scorer: str | None = None,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = 10_000,
) -> ScoreSummary:
    """Mean (bootstrap interval) and pass rate (Wilson interval) of ``scores``."""
    values = [s.value for s in scores if s.value is not None]
    outcomes = [s.passed for s in scores if s.passed is not None]
    reasons = Counter(_reason_key(s.reason) for s in scores if s.value is None)
    name = scorer if scorer is not None else (scores[0].scorer if scores else "")
    return ScoreSummary(
        scorer=name,
        total=len(scores),
        scored=len(values),
        unscored=len(scores) - len(values),
        mean=(
            mean_estimate(values, level=level, seed=seed, n_resamples=n_resamples)
            if values
            else None
        ),
        pass_rate=pass_rate_estimate(outcomes, level=level) if outcomes else None,
        unscored_reasons=dict(reasons.most_common()),
    )


def summarize_by_tag(
    examples: Sequence[Example],
    scores: Sequence[Score],
    *,
    key: str | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, ScoreSummary]:
    """Summaries per tag (``key=None``) or per value of ``key:value`` tags (``key="lang"``).

    ``examples`` and ``scores`` are parallel lists (one score per example).
    """
    if len(examples) != len(scores):
        raise ValueError(f"{len(examples)} examples but {len(scores)} scores")
    groups: dict[str, list[Score]] = {}
    for example, score in zip(examples, scores, strict=True):
        if key is None:
            names = list(example.tags)
        else:
            value = example.tag_value(key)
            names = [value] if value is not None else []
        for name in names:
            groups.setdefault(name, []).append(score)
    return {
        name: summarize_scores(group, level=level, seed=seed)
        for name, group in sorted(groups.items())
    }
