"""Turn an evaluation run into verdicts: summaries with intervals, a baseline comparison
that only calls a regression when the data support it, the gate, and report files.

Gate rule: every threshold (from the suite and from the prompt's own evaluation
criteria) is checked against the point estimate; a baseline comparison fails the gate only
on a ``regression`` verdict (significant *and* at least ``min_effect`` worse). Everything
else ("no significant difference", "too few examples to tell") is reported, not failed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import sqlalchemy as sa

from ..store import Store
from ..store.tables import eval_results, eval_runs
from .runner import EvalRun
from .scorers import Score, ScoreSummary, summarize_by_tag, summarize_scores
from .stats import Comparison, compare_pass_fail, compare_scores
from .suite import GateThreshold, Suite

__all__ = [
    "BaselineScores",
    "Report",
    "build_report",
    "latest_run_id",
    "load_run_scores",
    "write_html",
    "write_json",
    "write_junit",
]

# example id -> scorer -> [(value, passed), ...] (one entry per repeat)
BaselineScores = dict[str, dict[str, list[tuple[float | None, bool | None]]]]


@dataclass
class Report:
    run: EvalRun
    summaries: dict[str, ScoreSummary]
    extras: dict[str, Any]
    breakdowns: dict[str, dict[str, dict[str, ScoreSummary]]]
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    baseline_id: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    thresholds: dict[str, GateThreshold] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.gate_failures

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "version": 1,
            "run_id": run.id,
            "suite": run.suite,
            "subset": run.subset,
            "prompt": {"ref": run.prompt_ref, "id": run.prompt_id, "version": run.prompt_version},
            "model": run.model,
            "repeats": run.repeats,
            "examples": len({r.example.id for r in run.results}),
            "cost_usd": _num(run.cost_usd),
            "judge_cost_usd": _num(run.judge_cost_usd),
            "stopped_by_budget": run.stopped_by_budget,
            "summaries": {k: v.to_json() for k, v in self.summaries.items()},
            "extras": {k: _jsonable(v) for k, v in self.extras.items() if v is not None},
            "breakdowns": {
                key: {
                    value: {s: summ.to_json() for s, summ in per.items()}
                    for value, per in vals.items()
                }
                for key, vals in self.breakdowns.items()
            },
            "baseline": {
                "run_id": self.baseline_id,
                "comparisons": {k: c.to_json() for k, c in self.comparisons.items()},
            },
            "gate": {"passed": self.passed, "failures": self.gate_failures},
            "results": [
                {
                    "example": r.example.id,
                    "repeat": r.repeat,
                    "cached": r.cached,
                    "output": {"text": r.output.text, "error": r.output.error},
                    "scores": {
                        n: {"value": s.value, "passed": s.passed, "reason": s.reason}
                        for n, s in r.scores.items()
                    },
                }
                for r in run.results
            ],
        }


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _jsonable(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


def _per_example(
    pairs: list[tuple[str, Score]],
) -> dict[str, tuple[float | None, bool | None]]:
    """Collapse repeats: mean value and majority pass per example (unscored ignored)."""
    grouped: dict[str, list[Score]] = {}
    for example_id, score in pairs:
        grouped.setdefault(example_id, []).append(score)
    out: dict[str, tuple[float | None, bool | None]] = {}
    for example_id, scores in grouped.items():
        out[example_id] = _collapse([(s.value, s.passed) for s in scores])
    return out


def _collapse(entries: list[tuple[float | None, bool | None]]) -> tuple[float | None, bool | None]:
    values = [v for v, _ in entries if v is not None]
    passes = [p for _, p in entries if p is not None]
    mean = sum(values) / len(values) if values else None
    majority = (sum(passes) * 2 >= len(passes)) if passes else None
    return mean, majority


def load_run_scores(store: Store, run_id: str) -> BaselineScores:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(eval_results.c.example_id, eval_results.c.scores).where(
                eval_results.c.run_id == run_id
            )
        ).all()
    out: BaselineScores = {}
    for example_id, scores in rows:
        for name, entry in (scores or {}).items():
            out.setdefault(example_id, {}).setdefault(name, []).append(
                (entry.get("value"), entry.get("passed"))
            )
    return out


def latest_run_id(
    store: Store, suite: str, subset: str | None, *, exclude: str | None = None
) -> str | None:
    query = (
        sa.select(eval_runs.c.id)
        .where(eval_runs.c.suite == suite, eval_runs.c.status == "finished")
        .order_by(eval_runs.c.started_at.desc())
    )
    query = query.where(
        eval_runs.c.subset.is_(None) if subset is None else eval_runs.c.subset == subset
    )
    if exclude is not None:
        query = query.where(eval_runs.c.id != exclude)
    with store.engine.connect() as conn:
        value = conn.execute(query.limit(1)).scalar()
    return str(value) if value is not None else None


def build_report(
    run: EvalRun,
    suite: Suite,
    *,
    extra_thresholds: Mapping[str, float] | None = None,
    baseline: BaselineScores | None = None,
    baseline_id: str | None = None,
) -> Report:
    summaries: dict[str, ScoreSummary] = {}
    extras: dict[str, Any] = {}
    breakdowns: dict[str, dict[str, dict[str, ScoreSummary]]] = {}
    examples = [r.example for r in run.results]
    for scorer in run.scorers:
        scores = run.scores_for(scorer.name)
        summaries[scorer.name] = summarize_scores(scores, scorer=scorer.name)
        extras[scorer.name] = scorer.report(scores)
        for key in suite.spec.breakdowns:
            by_value = summarize_by_tag(examples, scores, key=key)
            for value, summary in by_value.items():
                breakdowns.setdefault(key, {}).setdefault(value, {})[scorer.name] = summary
    report = Report(run, summaries, extras, breakdowns, baseline_id=baseline_id)
    thresholds = dict(suite.spec.gate.thresholds)
    for name, minimum in (extra_thresholds or {}).items():
        current = thresholds.get(name, GateThreshold())
        if current.min_pass_rate is None or current.min_pass_rate < minimum:
            thresholds[name] = GateThreshold(min_pass_rate=minimum, min_mean=current.min_mean)
    report.thresholds = thresholds
    _check_thresholds(report, thresholds)
    if baseline is not None:
        _compare(report, suite, baseline)
    if run.stopped_by_budget:
        report.gate_failures.append("the run stopped at its --max-cost before every example ran")
    return report


def _check_thresholds(report: Report, thresholds: Mapping[str, GateThreshold]) -> None:
    for name, threshold in thresholds.items():
        summary = report.summaries.get(name)
        if summary is None:
            report.gate_failures.append(f"threshold on unknown scorer {name!r}")
            continue
        checks = [
            ("pass rate", summary.pass_rate, threshold.min_pass_rate),
            ("mean", summary.mean, threshold.min_mean),
        ]
        for label, estimate, minimum in checks:
            if minimum is None:
                continue
            if estimate is None:
                report.gate_failures.append(f"{name}: no {label} to check (everything unscored)")
            elif estimate.value < minimum:
                report.gate_failures.append(
                    f"{name}: {label} {estimate.value:.3f} is below {minimum:.3f} "
                    f"by {minimum - estimate.value:.3f}"
                )


def _compare(report: Report, suite: Suite, baseline: BaselineScores) -> None:
    policy = suite.spec.gate.baseline
    min_effect = policy.min_effect or 0.0
    for scorer in report.run.scorers:
        current = _per_example([(r.example.id, r.scores[scorer.name]) for r in report.run.results])
        base = {
            ex: _collapse(entries[scorer.name])
            for ex, entries in baseline.items()
            if scorer.name in entries
        }
        shared = sorted(set(current) & set(base))
        pass_pairs = [
            (base[e][1], current[e][1])
            for e in shared
            if base[e][1] is not None and current[e][1] is not None
        ]
        if pass_pairs:
            comparison = compare_pass_fail(
                [bool(b) for b, _ in pass_pairs],
                [bool(c) for _, c in pass_pairs],
                alpha=policy.alpha,
                min_effect=min_effect,
                min_examples=policy.min_examples,
            )
        else:
            value_pairs: list[tuple[float, float]] = []
            for e in shared:
                b, c = base[e][0], current[e][0]
                if b is not None and c is not None:
                    value_pairs.append((b, c))
            if not value_pairs:
                continue
            comparison = compare_scores(
                [b for b, _ in value_pairs],
                [c for _, c in value_pairs],
                alpha=policy.alpha,
                min_effect=min_effect,
                min_examples=policy.min_examples,
            )
        report.comparisons[scorer.name] = comparison
        if comparison.verdict == "regression":
            report.gate_failures.append(
                f"{scorer.name}: regression against the baseline: {comparison.reason}"
            )


# -- files ------------------------------------------------------------------------------


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))


def write_junit(report: Report, path: Path) -> None:
    """One test case per example and scorer: failed, skipped (unscored) or passed."""
    run = report.run
    root = ET.Element("testsuites")
    suite_el = ET.SubElement(root, "testsuite", name=f"roadworthy.{run.suite}")
    tests = failures = skipped = 0
    for result in run.results:
        for name, score in result.scores.items():
            tests += 1
            case = ET.SubElement(
                suite_el,
                "testcase",
                classname=f"{run.suite}.{name}",
                name=f"{result.example.id}#{result.repeat}",
                time=f"{result.output.latency_s or 0:.3f}",
            )
            if score.value is None:
                skipped += 1
                ET.SubElement(case, "skipped", message=f"unscored: {score.reason}"[:500])
            elif score.passed is False:
                failures += 1
                ET.SubElement(case, "failure", message=score.reason[:500]).text = (
                    result.output.error or result.output.text or ""
                )[:2000]
    gate = ET.SubElement(suite_el, "testcase", classname=f"{run.suite}.gate", name="gate")
    tests += 1
    if report.gate_failures:
        failures += 1
        ET.SubElement(gate, "failure", message="gate failed").text = "\n".join(report.gate_failures)
    suite_el.set("tests", str(tests))
    suite_el.set("failures", str(failures))
    suite_el.set("skipped", str(skipped))
    path.write_text(ET.tostring(root, encoding="unicode"))


def _fmt_estimate(summary: ScoreSummary) -> str:
    est = summary.pass_rate or summary.mean
    if est is None:
        return "unscored"
    return f"{est.value:.3f} [{est.interval.low:.3f}, {est.interval.high:.3f}]"


def write_html(report: Report, path: Path) -> None:
    """A self-contained page: summary, gate, baseline diff and every example."""
    run = report.run
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(n)}</td><td>{esc(_fmt_estimate(s))}</td><td>{s.scored}/{s.total}</td>"
        f"<td>{s.unscored}</td><td>{esc(report.comparisons[n].verdict) if n in report.comparisons else ''}</td></tr>"
        for n, s in report.summaries.items()
    )
    examples = "".join(
        "<tr><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td>{}</td></tr>".format(
            esc(r.example.id),
            esc(json.dumps(r.example.vars, ensure_ascii=False)[:600]),
            esc((r.output.error or r.output.text or "")[:600]),
            "<br>".join(
                f"<span class='{'ok' if s.passed else 'bad' if s.passed is False else 'na'}'>"
                f"{esc(n)}: {esc(s.reason[:160])}</span>"
                for n, s in r.scores.items()
            ),
        )
        for r in run.results
    )
    gate = "passed" if report.passed else "failed: " + "; ".join(report.gate_failures)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>roadworthy eval {esc(run.suite)}</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}}
pre{{white-space:pre-wrap;margin:0}}.ok{{color:#060}}.bad{{color:#b00}}.na{{color:#888}}
</style></head><body>
<h1>{esc(run.suite)}{" · " + esc(run.subset) if run.subset else ""}</h1>
<p>prompt {esc(str(run.prompt_ref))} (v{run.prompt_version}) · model {esc(str(run.model))} ·
repeats {run.repeats} · cost ${_num(run.cost_usd) or 0:.6f} · run {esc(run.id)}</p>
<h2>Gate: {esc(gate)}</h2>
<table><tr><th>scorer</th><th>pass rate or mean [95% CI]</th><th>scored</th><th>unscored</th>
<th>vs baseline {esc(report.baseline_id or "")}</th></tr>{rows}</table>
<h2>Examples</h2><table><tr><th>id</th><th>input</th><th>output</th><th>scores</th></tr>{examples}</table>
</body></html>"""
    path.write_text(page, encoding="utf-8")
