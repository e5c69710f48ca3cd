"""Statistics for evaluation aggregates and baseline comparisons.

Every aggregate an eval reports carries an interval, and a comparison against a baseline
says "regression" only when the difference is both statistically significant and larger
than a minimum effect the team chose. Peers report bare means (DeepEval, promptfoo), so a
two-example wobble reads like a regression; this module is the cure.

What is used and why:

* **Wilson interval** for pass rates: correct coverage near 0 and 1, where the normal
  (Wald) interval collapses to a zero-width interval at 0/n or n/n.
* **Percentile bootstrap** (seeded, numpy) for means of scores and for the paired mean
  difference; a seed makes reports reproducible byte for byte.
* **McNemar's exact test** for paired pass/fail outcomes: a two-sided binomial test on the
  discordant pairs only (examples that passed on one side and failed on the other).
  Computed exactly with :func:`math.comb`; no approximation, no dependency.
* **Wilcoxon signed-rank** (scipy) for paired scores.
* **Cohen's kappa** (two raters) and **Fleiss' kappa** (many repeats) for agreement.

Nothing here returns NaN: an undefined statistic is ``None`` and the caller says why.

The verdict rule (:func:`compare_pass_fail`, :func:`compare_scores`):

1. fewer than ``min_examples`` paired examples → ``"too few examples to tell"``;
2. pass/fail only: some discordant pairs, but fewer than the exact test needs to ever
   reach ``alpha`` (6 at alpha = 0.05, because the smallest two-sided p-value with *d*
   discordant pairs is 2·0.5^d) → ``"too few examples to tell"``;
3. significant (p < alpha) and the candidate is worse by at least ``min_effect`` →
   ``"regression"``; better by at least ``min_effect`` → ``"improvement"``;
4. otherwise → ``"no significant difference"``, with the interval of the difference.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, TypeVar

import numpy as np

from ..errors import ConfigError

__all__ = [
    "Comparison",
    "Estimate",
    "Interval",
    "McNemarResult",
    "Verdict",
    "bootstrap_mean_ci",
    "cohens_kappa",
    "compare_pass_fail",
    "compare_scores",
    "confusion_counts",
    "fleiss_kappa",
    "mcnemar_exact",
    "mean_estimate",
    "min_discordant_pairs",
    "paired_bootstrap_diff",
    "paired_by_id",
    "pass_rate_estimate",
    "wilcoxon_signed_rank",
    "wilson_interval",
]

Verdict = Literal[
    "regression", "improvement", "no significant difference", "too few examples to tell"
]

T = TypeVar("T")

DEFAULT_RESAMPLES = 10_000
_BATCH = 1_000  # resamples per numpy batch: bounds memory at _BATCH * n floats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at ``level`` (0.95 = 95%)."""

    low: float
    high: float
    level: float = 0.95
    method: str = ""

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "level": self.level, "method": self.method}


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval and sample size; ``stderr`` when defined."""

    value: float
    interval: Interval
    n: int
    stderr: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "interval": self.interval.to_json(),
            "n": self.n,
            "stderr": self.stderr,
        }


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval for ``successes`` out of ``n``.

    With ``n == 0`` nothing is known and the interval is the whole of [0, 1] (statsmodels
    returns NaN there; a NaN in a report poisons every aggregate built on it).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Interval(0.0, 1.0, level, "wilson")
    z = _z(level)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Float error can put the bound a hair past the estimate at k = 0 or k = n (e.g. a
    # lower bound of 7e-18 above 0/43); the exact interval always contains it.
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return Interval(low, high, level, "wilson")


def pass_rate_estimate(outcomes: Sequence[bool], *, level: float = 0.95) -> Estimate:
    """Pass rate with its Wilson interval and binomial standard error."""
    n = len(outcomes)
    k = sum(1 for o in outcomes if o)
    rate = k / n if n else 0.0
    stderr = math.sqrt(rate * (1 - rate) / n) if n else None
    return Estimate(rate, wilson_interval(k, n, level=level), n, stderr)


def _bootstrap_means(
    values: np.ndarray[Any, Any], n_resamples: int, seed: int
) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, _BATCH):
        size = min(_BATCH, n_resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start : start + size] = values[idx].mean(axis=1)
    return out


def _percentile_interval(
    values: Sequence[float], level: float, n_resamples: int, seed: int, method: str
) -> Interval:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("bootstrap needs at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap values must be finite (no NaN or infinity)")
    _z(level)
    if np.all(arr == arr[0]):  # every resample has the same mean
        value = float(arr[0])
        return Interval(value, value, level, method)
    means = _bootstrap_means(arr, n_resamples, seed)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(float(low), float(high), level, method)


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval for the mean, reproducible for a given ``seed``."""
    return _percentile_interval(values, level, n_resamples, seed, "bootstrap-percentile")


def mean_estimate(
    values: Sequence[float],
    *,
    level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Mean with a bootstrap interval and the sample standard error (n > 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean of no values")
    mean = math.fsum(values) / n
    stderr = None
    if n > 1:
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        stderr = math.sqrt(var / n)
    interval = bootstrap_mean_ci(values, level=level, n_resamples=n_resamples, seed=seed)
    return Estimate(mean, interval, n, stderr)


# ---------------------------------------------------------------------------------------
# paired comparisons


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired pass/fail outcomes.

    ``regressions`` passed on the baseline and failed on the candidate; ``improvements``
    the reverse. Only these discordant pairs carry information about a difference.
    """

    regressions: int
    improvements: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.regressions + self.improvements


def mcnemar_exact(regressions: int, improvements: int) -> McNemarResult:
    """Two-sided exact binomial test of ``regressions`` vs ``improvements`` at p = 0.5."""
    if regressions < 0 or improvements < 0:
        raise ValueError("counts must be non-negative")
    d = regressions + improvements
    if d == 0:
        return McNemarResult(0, 0, 1.0)
    k = min(regressions, improvements)
    tail = math.fsum(math.comb(d, i) for i in range(k + 1)) / 2.0**d
    return McNemarResult(regressions, improvements, min(1.0, 2.0 * tail))


def min_discordant_pairs(alpha: float = 0.05) -> int:
    """Fewest discordant pairs with which the exact test can reach ``p < alpha`` at all."""
    d = 1
    while 2.0 * 0.5**d >= alpha:
        d += 1
    return d


def paired_bootstrap_diff(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Mean of ``candidate - baseline`` by example, with a paired bootstrap interval.

    Resampling whole examples keeps each pair together, which is what makes the interval
    much narrower than comparing two independent means.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired samples differ in length: {len(baseline)} vs {len(candidate)}")
    diffs = [c - b for b, c in zip(baseline, candidate, strict=True)]
    n = len(diffs)
    if n == 0:
        raise ValueError("no paired examples")
    mean = math.fsum(diffs) / n
    stderr = None
    if n > 1:
        stderr = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    interval = _percentile_interval(diffs, level, n_resamples, seed, "paired-bootstrap-percentile")
    return Estimate(mean, interval, n, stderr)


def _scipy_stats() -> Any:
    try:
        return importlib.import_module("scipy.stats")
    except ImportError as exc:
        raise ConfigError(
            f"the Wilcoxon signed-rank test needs scipy ({exc}); install it: pip install scipy"
        ) from None


def wilcoxon_signed_rank(baseline: Sequence[float], candidate: Sequence[float]) -> float | None:
    """Two-sided p-value of scipy's Wilcoxon signed-rank test; ``None`` if every pair ties.

    Zero differences are dropped (``zero_method="wilcox"``), the classic definition.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired samples differ in length: {len(baseline)} vs {len(candidate)}")
    diffs = [c - b for b, c in zip(baseline, candidate, strict=True)]
    if not any(d != 0 for d in diffs):
        return None
    result = _scipy_stats().wilcoxon(diffs, zero_method="wilcox", alternative="two-sided")
    return float(result.pvalue)


@dataclass(frozen=True)
class Comparison:
    """A baseline comparison: the verdict, its evidence, and a sentence for humans.

    ``effect`` is candidate minus baseline (pass rate or mean score; higher is better),
    ``interval`` its paired bootstrap interval.
    """

    verdict: Verdict
    n: int
    effect: float
    interval: Interval | None
    p_value: float | None
    test: str
    reason: str
    baseline_value: float | None = None
    candidate_value: float | None = None
    regressions: int | None = None
    improvements: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "n": self.n,
            "effect": self.effect,
            "interval": self.interval.to_json() if self.interval else None,
            "p_value": self.p_value,
            "test": self.test,
            "reason": self.reason,
            "baseline": self.baseline_value,
            "candidate": self.candidate_value,
            "regressions": self.regressions,
            "improvements": self.improvements,
        }


def _decide(
    effect: float, p_value: float | None, alpha: float, min_effect: float
) -> tuple[Verdict, str]:
    if p_value is None or p_value >= alpha:
        shown = "n/a" if p_value is None else f"{p_value:.3g}"
        return "no significant difference", f"p = {shown} (alpha {alpha})"
    if effect <= -min_effect:
        return "regression", f"significant (p = {p_value:.3g}) and worse by {-effect:.3g}"
    if effect >= min_effect:
        return "improvement", f"significant (p = {p_value:.3g}) and better by {effect:.3g}"
    return (
        "no significant difference",
        f"significant (p = {p_value:.3g}) but the effect {effect:+.3g} is smaller than "
        f"the minimum effect {min_effect}",
    )


def compare_pass_fail(
    baseline: Sequence[bool],
    candidate: Sequence[bool],
    *,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    min_examples: int = 20,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Paired pass/fail comparison by example (same order on both sides): McNemar exact.

    Align runs with :func:`paired_by_id` first and drop examples unscored on either side;
    an unscored example says nothing about either run.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired samples differ in length: {len(baseline)} vs {len(candidate)}")
    n = len(baseline)
    reg = sum(1 for b, c in zip(baseline, candidate, strict=True) if b and not c)
    imp = sum(1 for b, c in zip(baseline, candidate, strict=True) if c and not b)
    base_rate = sum(baseline) / n if n else None
    cand_rate = sum(candidate) / n if n else None
    effect = (imp - reg) / n if n else 0.0

    def result(
        verdict: Verdict, interval: Interval | None, p_value: float | None, reason: str
    ) -> Comparison:
        return Comparison(
            verdict,
            n,
            effect,
            interval,
            p_value,
            "mcnemar-exact",
            reason,
            base_rate,
            cand_rate,
            reg,
            imp,
        )

    if n < min_examples:
        reason = f"{n} paired examples; at least {min_examples} are needed"
        return result("too few examples to tell", None, None, reason)
    test = mcnemar_exact(reg, imp)
    diff = paired_bootstrap_diff(
        [float(b) for b in baseline],
        [float(c) for c in candidate],
        level=level,
        seed=seed,
        n_resamples=n_resamples,
    )
    needed = min_discordant_pairs(alpha)
    if 0 < test.discordant < needed:
        reason = (
            f"{test.discordant} examples changed outcome ({reg} worse, {imp} better); the "
            f"exact test needs at least {needed} to reach p < {alpha}"
        )
        return result("too few examples to tell", diff.interval, test.p_value, reason)
    verdict, why = _decide(effect, test.p_value, alpha, min_effect)
    return result(verdict, diff.interval, test.p_value, f"{reg} worse, {imp} better of {n}; {why}")


def compare_scores(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    min_examples: int = 20,
    level: float = 0.95,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Paired comparison of scores in [0, 1]: Wilcoxon p-value, paired bootstrap interval.

    Higher is better. Pair by id and drop unscored examples first, as for
    :func:`compare_pass_fail`.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired samples differ in length: {len(baseline)} vs {len(candidate)}")
    n = len(baseline)
    base_mean = math.fsum(baseline) / n if n else None
    cand_mean = math.fsum(candidate) / n if n else None
    effect = (cand_mean - base_mean) if (cand_mean is not None and base_mean is not None) else 0.0
    if n < min_examples:
        return Comparison(
            "too few examples to tell",
            n,
            effect,
            None,
            None,
            "wilcoxon",
            f"{n} paired examples; at least {min_examples} are needed",
            base_mean,
            cand_mean,
        )
    diff = paired_bootstrap_diff(
        baseline, candidate, level=level, seed=seed, n_resamples=n_resamples
    )
    p_value = wilcoxon_signed_rank(baseline, candidate)
    if p_value is None:
        return Comparison(
            "no significant difference",
            n,
            0.0,
            diff.interval,
            None,
            "wilcoxon",
            "every example scored the same on both sides",
            base_mean,
            cand_mean,
        )
    verdict, why = _decide(diff.value, p_value, alpha, min_effect)
    return Comparison(
        verdict, n, diff.value, diff.interval, p_value, "wilcoxon", why, base_mean, cand_mean
    )


def paired_by_id(
    baseline: Mapping[str, T], candidate: Mapping[str, T]
) -> tuple[list[str], list[T], list[T], list[str], list[str]]:
    """Align two runs by example id.

    Returns ``(ids, baseline_values, candidate_values, only_baseline, only_candidate)``;
    ids are in the baseline's order. Examples present on one side only cannot be paired
    and are returned so a report can name them.
    """
    ids = [k for k in baseline if k in candidate]
    only_b = [k for k in baseline if k not in candidate]
    only_c = [k for k in candidate if k not in baseline]
    return ids, [baseline[k] for k in ids], [candidate[k] for k in ids], only_b, only_c


# ---------------------------------------------------------------------------------------
# agreement


def confusion_counts(
    a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> tuple[list[Hashable], list[list[int]]]:
    """Labels and the matrix ``m[i][j]`` = count of (a = labels[i], b = labels[j])."""
    if len(a) != len(b):
        raise ValueError(f"rating lists differ in length: {len(a)} vs {len(b)}")
    if labels is None:
        seen: dict[Hashable, None] = {}
        for x in (*a, *b):
            seen.setdefault(x, None)
        try:
            ordered: list[Hashable] = sorted(seen, key=lambda v: (str(type(v)), v))
        except TypeError:
            ordered = list(seen)
    else:
        ordered = list(labels)
    index = {label: i for i, label in enumerate(ordered)}
    matrix = [[0] * len(ordered) for _ in ordered]
    for x, y in zip(a, b, strict=True):
        if x not in index or y not in index:
            raise ValueError(f"label {x if x not in index else y!r} is not in labels")
        matrix[index[x]][index[y]] += 1
    return ordered, matrix


def cohens_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa between two raters; ``None`` when undefined (chance agreement is 1).

    That happens when both raters used one and the same label throughout: agreement is
    perfect but says nothing about skill, so no number is given rather than NaN.
    """
    _, matrix = confusion_counts(a, b)
    n = sum(map(sum, matrix))
    if n == 0:
        return None
    po = sum(matrix[i][i] for i in range(len(matrix))) / n
    rows = [sum(r) / n for r in matrix]
    cols = [sum(matrix[i][j] for i in range(len(matrix))) / n for j in range(len(matrix))]
    pe = math.fsum(r * c for r, c in zip(rows, cols, strict=True))
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1.0 - pe)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa: each inner sequence holds one subject's ratings by the same number of
    raters (e.g. one example's repeated judge verdicts). ``None`` when undefined: fewer
    than two subjects or two ratings each, unequal rater counts, or a single category used
    throughout.
    """
    if len(ratings) < 2:
        return None
    m = len(ratings[0])
    if m < 2 or any(len(r) != m for r in ratings):
        return None
    categories = sorted({str(x) for r in ratings for x in r})
    counts = [Counter(str(x) for x in r) for r in ratings]
    n_subjects = len(ratings)
    p_j = [sum(c[k] for c in counts) / (n_subjects * m) for k in categories]
    p_i = [(sum(v * v for v in c.values()) - m) / (m * (m - 1)) for c in counts]
    p_bar = math.fsum(p_i) / n_subjects
    pe = math.fsum(p * p for p in p_j)
    if math.isclose(pe, 1.0):
        return None
    return (p_bar - pe) / (1.0 - pe)
