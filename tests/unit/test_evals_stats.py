"""Statistics against scipy/statsmodels on fixed tables, plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadworthy.evals import stats

sm_proportion = pytest.importorskip("statsmodels.stats.proportion")
sm_tables = pytest.importorskip("statsmodels.stats.contingency_tables")
sm_rater = pytest.importorskip("statsmodels.stats.inter_rater")
scipy_stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("k", "n", "level"),
    [(0, 10, 0.95), (10, 10, 0.95), (7, 20, 0.95), (143, 165, 0.95), (1, 3, 0.9), (50, 51, 0.99)],
)
def test_wilson_matches_statsmodels(k: int, n: int, level: float) -> None:
    low, high = sm_proportion.proportion_confint(k, n, alpha=1 - level, method="wilson")
    got = stats.wilson_interval(k, n, level=level)
    assert got.low == pytest.approx(low, abs=1e-12)
    assert got.high == pytest.approx(high, abs=1e-12)


def test_wilson_with_no_data_is_the_whole_range_not_nan() -> None:
    interval = stats.wilson_interval(0, 0)
    assert (interval.low, interval.high) == (0.0, 1.0)


@given(st.integers(min_value=1, max_value=2000), st.data())
def test_wilson_contains_estimate_and_stays_in_unit_interval(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    interval = stats.wilson_interval(k, n)
    assert 0.0 <= interval.low <= k / n <= interval.high <= 1.0


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=100))
def test_wilson_narrows_with_more_data(n: int, pct: int) -> None:
    k = round(n * pct / 100)
    small = stats.wilson_interval(k, n)
    large = stats.wilson_interval(k * 4, n * 4)
    assert large.width < small.width


# ---------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("table"),
    [
        [[50, 3], [9, 40]],
        [[10, 0], [6, 10]],
        [[30, 5], [5, 30]],
        [[100, 1], [0, 60]],
        [[12, 14], [2, 9]],
        [[0, 25], [11, 0]],
    ],
)
def test_mcnemar_exact_matches_statsmodels(table: list[list[int]]) -> None:
    expected = sm_tables.mcnemar(np.array(table), exact=True).pvalue
    # rows: baseline pass/fail, columns: candidate pass/fail
    got = stats.mcnemar_exact(regressions=table[0][1], improvements=table[1][0])
    assert got.p_value == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_min_discordant_pairs_is_where_significance_becomes_possible() -> None:
    assert stats.min_discordant_pairs(0.05) == 6
    assert stats.mcnemar_exact(5, 0).p_value >= 0.05
    assert stats.mcnemar_exact(6, 0).p_value < 0.05


# ---------------------------------------------------------------- bootstrap


FIXED = [0.2, 0.9, 0.4, 0.4, 1.0, 0.0, 0.7, 0.55, 0.8, 0.3, 0.65, 0.1, 0.95, 0.5, 0.45]


def test_bootstrap_mean_ci_agrees_with_scipy_percentile_bootstrap() -> None:
    ours = stats.bootstrap_mean_ci(FIXED, n_resamples=20_000, seed=3)
    theirs = scipy_stats.bootstrap(
        (np.array(FIXED),),
        np.mean,
        method="percentile",
        n_resamples=20_000,
        rng=np.random.default_rng(3),
    ).confidence_interval
    # different random draws: agreement to Monte Carlo error, well under the width
    assert ours.low == pytest.approx(theirs.low, abs=0.01)
    assert ours.high == pytest.approx(theirs.high, abs=0.01)


def test_bootstrap_is_reproducible_and_degenerate_cases_are_exact() -> None:
    assert stats.bootstrap_mean_ci(FIXED, seed=7) == stats.bootstrap_mean_ci(FIXED, seed=7)
    same = stats.bootstrap_mean_ci([0.5] * 9)
    assert (same.low, same.high) == (0.5, 0.5)
    with pytest.raises(ValueError, match="finite"):
        stats.bootstrap_mean_ci([0.1, float("nan")])


def test_mean_estimate_standard_error_matches_scipy() -> None:
    est = stats.mean_estimate(FIXED, n_resamples=2000)
    assert est.value == pytest.approx(np.mean(FIXED))
    assert est.stderr == pytest.approx(scipy_stats.sem(FIXED))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60))
def test_bootstrap_interval_contains_mean_within_unit_range(values: list[float]) -> None:
    interval = stats.bootstrap_mean_ci(values, n_resamples=500)
    mean = math.fsum(values) / len(values)
    assert 0.0 <= interval.low <= interval.high <= 1.0
    # the percentile interval may exclude the mean only for tiny, skewed samples
    if len(values) >= 20:
        assert interval.low - 1e-9 <= mean <= interval.high + 1e-9


def test_bootstrap_narrower_with_more_data() -> None:
    rng = np.random.default_rng(0)
    values = list(rng.random(400))
    small = stats.bootstrap_mean_ci(values[:25], n_resamples=4000)
    large = stats.bootstrap_mean_ci(values, n_resamples=4000)
    assert large.width < small.width


# ---------------------------------------------------------------- paired


def test_paired_bootstrap_diff_is_the_bootstrap_of_differences() -> None:
    base = FIXED
    cand = [min(1.0, v + 0.1) for v in FIXED]
    diff = stats.paired_bootstrap_diff(base, cand, seed=1)
    direct = stats.bootstrap_mean_ci([c - b for b, c in zip(base, cand, strict=True)], seed=1)
    assert diff.value == pytest.approx(np.mean(np.array(cand) - np.array(base)))
    assert (diff.interval.low, diff.interval.high) == pytest.approx((direct.low, direct.high))


def test_wilcoxon_is_scipys() -> None:
    base = FIXED
    cand = [v * 0.8 for v in FIXED]
    expected = scipy_stats.wilcoxon(np.array(cand) - np.array(base)).pvalue
    assert stats.wilcoxon_signed_rank(base, cand) == pytest.approx(expected)
    assert stats.wilcoxon_signed_rank(base, list(base)) is None


def _outcomes(both: int, reg: int, imp: int, neither: int) -> tuple[list[bool], list[bool]]:
    base = [True] * both + [True] * reg + [False] * imp + [False] * neither
    cand = [True] * both + [False] * reg + [True] * imp + [False] * neither
    return base, cand


def test_compare_pass_fail_verdicts() -> None:
    regression = stats.compare_pass_fail(*_outcomes(100, 15, 2, 20), min_effect=0.02)
    assert regression.verdict == "regression"
    assert regression.regressions == 15 and regression.improvements == 2
    assert regression.interval is not None and regression.interval.high < 0

    small = stats.compare_pass_fail(*_outcomes(100, 15, 2, 20), min_effect=0.2)
    assert small.verdict == "no significant difference"
    assert "smaller than the minimum effect" in small.reason

    noisy = stats.compare_pass_fail(*_outcomes(100, 6, 4, 20))
    assert noisy.verdict == "no significant difference"
    assert noisy.interval is not None and noisy.interval.contains(noisy.effect)

    improvement = stats.compare_pass_fail(*_outcomes(100, 1, 12, 20))
    assert improvement.verdict == "improvement"

    few_pairs = stats.compare_pass_fail(*_outcomes(100, 3, 0, 20))
    assert few_pairs.verdict == "too few examples to tell"
    assert "at least 6" in few_pairs.reason

    identical = stats.compare_pass_fail(*_outcomes(100, 0, 0, 20))
    assert identical.verdict == "no significant difference"

    tiny = stats.compare_pass_fail(*_outcomes(5, 3, 0, 2))
    assert tiny.verdict == "too few examples to tell"


def test_compare_scores_verdicts() -> None:
    rng = np.random.default_rng(5)
    base = list(rng.uniform(0.5, 1.0, 80))
    worse = [max(0.0, b - 0.15 + rng.normal(0, 0.03)) for b in base]
    result = stats.compare_scores(base, worse, min_effect=0.05)
    assert result.verdict == "regression"
    assert result.p_value is not None and result.p_value < 0.05
    same = stats.compare_scores(base, list(base))
    assert same.verdict == "no significant difference"
    assert stats.compare_scores(base[:5], worse[:5]).verdict == "too few examples to tell"


def test_paired_by_id_aligns_and_reports_unpaired() -> None:
    ids, b, c, only_b, only_c = stats.paired_by_id(
        {"a": 1, "b": 2, "x": 9}, {"b": 20, "a": 10, "y": 0}
    )
    assert ids == ["a", "b"] and b == [1, 2] and c == [10, 20]
    assert only_b == ["x"] and only_c == ["y"]


# ---------------------------------------------------------------- kappa


def _table(a: list[str], b: list[str]) -> np.ndarray:
    _, matrix = stats.confusion_counts(a, b)
    return np.array(matrix)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (list("ppffpfpppfffpp"), list("ppfffpppffffpp")),
        (list("abcabcabcaab"), list("abcabccbcaab")),
        (list("aaaabbbb"), list("abababab")),
    ],
)
def test_cohens_kappa_matches_statsmodels(a: list[str], b: list[str]) -> None:
    expected = sm_rater.cohens_kappa(_table(a, b)).kappa
    assert stats.cohens_kappa(a, b) == pytest.approx(expected)


def test_kappa_undefined_is_none_not_nan() -> None:
    assert stats.cohens_kappa(["a"] * 5, ["a"] * 5) is None
    assert stats.fleiss_kappa([["x", "x"], ["x", "x"]]) is None


def test_fleiss_kappa_matches_statsmodels() -> None:
    ratings = [
        [1, 1, 1],
        [1, 2, 1],
        [3, 3, 3],
        [2, 2, 3],
        [5, 5, 5],
        [4, 5, 4],
        [1, 1, 2],
        [3, 3, 3],
    ]
    table, _ = sm_rater.aggregate_raters(np.array(ratings))
    assert stats.fleiss_kappa(ratings) == pytest.approx(sm_rater.fleiss_kappa(table))
