"""Evaluation building blocks: datasets, scorers, LLM judges and statistics.

The runner, reports and CI gate are built on this API; each piece is usable alone.

Datasets (:mod:`.datasets`, :mod:`.promptfoo`)
    ``load_dataset(path) -> Dataset`` reads ``.jsonl``, ``.yaml`` or ``.csv`` (a YAML
    file with ``tests:`` is imported as promptfoo). Every problem is raised at once as
    ``ConfigError`` lines ``file:line: problem``. A :class:`Example` has ``id``, ``vars``,
    ``expected`` / ``reference`` / ``criteria`` / ``assertions``, ``tags``,
    ``human_label``. ``Dataset.subset("smoke")``, ``.tag_counts()``,
    ``.tag_values("lang")``, ``.fingerprint()``.

Scorers (:mod:`.scorers`)
    A scorer maps ``(Example, Output) -> Score``. :class:`Output` is the result record
    (``text``, ``parsed``, ``error``, ``latency_s``, ``cost_usd``). :class:`Score` is a
    value in [0, 1] and/or pass/fail with a reason, or *unscored* (``value is None``).
    Build from config with ``build_scorer({"type": "label-match", "field": "category"},
    base_dir=..., inject={"judge": JudgeModel(...)})``; await ``scorer.ascore(ex, out)``
    (sync scorers may be called directly). ``@scorer("name")`` registers a factory;
    unknown names fail with a nearest-name hint. ``summarize_scores(scores)`` gives mean
    (bootstrap CI) and pass rate (Wilson CI) and counts unscored by reason;
    ``scorer.report(scores)`` gives extras (label-match: :class:`ClassificationReport`).

Judges (:mod:`.judges`)
    ``JudgeModel(provider, model)``; ``await judge_rubric(...) -> RubricResult``
    (``.to_score()``), ``await judge_pairwise(...) -> PairwiseResult`` (both orders;
    disagreement is a tie), ``repeat_agreement``, ``calibrate`` / ``calibrate_scores``
    against human labels. Judge usage is in ``Score.calls`` (:class:`ModelCall`).

Statistics (:mod:`.stats`)
    ``wilson_interval``, ``bootstrap_mean_ci``, ``mean_estimate``,
    ``pass_rate_estimate``, ``mcnemar_exact``, ``paired_bootstrap_diff``,
    ``wilcoxon_signed_rank``, ``compare_pass_fail`` / ``compare_scores`` ->
    :class:`Comparison` (verdict ``regression`` / ``improvement`` / ``no significant
    difference`` / ``too few examples to tell``; the rule is in the module docstring),
    ``paired_by_id``, ``cohens_kappa``, ``fleiss_kappa``.

Optional packages: rapidfuzz and sacrebleu (``[evals]``) for Levenshtein and BLEU;
sentence-transformers (``[embeddings]``) for the default embedder; scipy for Wilcoxon.
"""

from __future__ import annotations

from .datasets import Dataset, Example, content_id, examples_from, load_dataset
from .judges import (
    Calibration,
    JudgeModel,
    PairwiseResult,
    PairwiseSummary,
    RepeatAgreement,
    RubricResult,
    calibrate,
    calibrate_scores,
    judge_pairwise,
    judge_rubric,
    pairwise_summary,
    repeat_agreement,
)
from .promptfoo import load_promptfoo_tests
from .scorers import (
    ClassificationReport,
    ModelCall,
    Output,
    Score,
    ScoreFn,
    Scorer,
    ScorerSpec,
    ScoreSummary,
    build_scorer,
    classification_report,
    get_scorer_factory,
    registered_scorers,
    scorer,
    summarize_by_tag,
    summarize_scores,
)
from .stats import (
    Comparison,
    Estimate,
    Interval,
    bootstrap_mean_ci,
    cohens_kappa,
    compare_pass_fail,
    compare_scores,
    fleiss_kappa,
    mcnemar_exact,
    paired_bootstrap_diff,
    paired_by_id,
    wilson_interval,
)

__all__ = [
    "Calibration",
    "ClassificationReport",
    "Comparison",
    "Dataset",
    "Estimate",
    "Example",
    "Interval",
    "JudgeModel",
    "ModelCall",
    "Output",
    "PairwiseResult",
    "PairwiseSummary",
    "RepeatAgreement",
    "RubricResult",
    "Score",
    "ScoreFn",
    "ScoreSummary",
    "Scorer",
    "ScorerSpec",
    "bootstrap_mean_ci",
    "build_scorer",
    "calibrate",
    "calibrate_scores",
    "classification_report",
    "cohens_kappa",
    "compare_pass_fail",
    "compare_scores",
    "content_id",
    "examples_from",
    "fleiss_kappa",
    "get_scorer_factory",
    "judge_pairwise",
    "judge_rubric",
    "load_dataset",
    "load_promptfoo_tests",
    "mcnemar_exact",
    "paired_bootstrap_diff",
    "paired_by_id",
    "pairwise_summary",
    "registered_scorers",
    "repeat_agreement",
    "scorer",
    "summarize_by_tag",
    "summarize_scores",
    "wilson_interval",
]
