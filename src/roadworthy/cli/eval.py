"""``roadworthy eval``: run an evaluation suite, compare with a baseline, gate a change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..errors import ConfigError
from ..evals.datasets import Example
from ..evals.judges import calibrate_scores
from ..evals.report import (
    Report,
    build_report,
    latest_run_id,
    load_run_scores,
    write_html,
    write_json,
    write_junit,
)
from ..evals.runner import EvalResult, EvalRun, EvalRunner
from ..evals.suite import Suite, load_suite
from ..pipeline import Workspace
from .common import console, err_console, handle_errors, load

__all__ = ["eval_command"]

EXIT_GATE = 1


def _workspace(project: Path | None, suite: Suite) -> Workspace:
    return Workspace(load(project if project is not None else _project_of(suite.path)))


def _project_of(path: Path) -> Path:
    for folder in (path.resolve().parent, *path.resolve().parents):
        if (folder / "roadworthy.yaml").is_file():
            return folder
    raise ConfigError(f"no roadworthy.yaml above {path} (hint: pass --project DIR)")


def _print(report: Report) -> None:
    run = report.run
    title = (
        f"eval {run.suite}{' · ' + run.subset if run.subset else ''} · {run.prompt_ref} "
        f"(v{run.prompt_version}) · {run.model}"
    )
    table = Table(title=title)
    for col in (
        "scorer",
        "pass rate [95% CI]",
        "mean [95% CI]",
        "scored",
        "unscored",
        "vs baseline",
    ):
        table.add_column(col)
    for name, summary in report.summaries.items():
        comparison = report.comparisons.get(name)
        table.add_row(
            name,
            _est(summary.pass_rate),
            _est(summary.mean),
            f"{summary.scored}/{summary.total}",
            str(summary.unscored),
            f"{comparison.verdict} ({comparison.effect:+.3f})" if comparison else "",
        )
    console.print(table)
    cost = "unknown" if run.cost_usd is None else f"${float(run.cost_usd):.6f}"
    judge = "unknown" if run.judge_cost_usd is None else f"${float(run.judge_cost_usd):.6f}"
    cached = sum(1 for r in run.results if r.cached)
    console.print(
        f"{len(run.results)} results ({cached} from cache) · model cost {cost} · judge cost {judge}"
    )
    for name, comparison in report.comparisons.items():
        console.print(f"  {name} vs {report.baseline_id}: {comparison.reason}", highlight=False)
    if report.passed:
        console.print("[green]gate passed[/]")
    else:
        console.print("[red]gate failed[/]")
        for failure in report.gate_failures:
            console.print(f"  {failure}", highlight=False, markup=False)


def _est(estimate: object) -> str:
    if estimate is None:
        return "-"
    value = getattr(estimate, "value", 0.0)
    interval = getattr(estimate, "interval", None)
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


@handle_errors
def eval_command(
    suite_path: Annotated[
        str,
        typer.Argument(metavar="SUITE", help="Suite file (or 'calibrate' then the suite file)."),
    ],
    calibrate_target: Annotated[str | None, typer.Argument(hidden=True)] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Prompt under test, ID@LABEL or ID@VERSION.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name to test instead of the pipeline's.")
    ] = None,
    subset: Annotated[str | None, typer.Option(help="Subset name or tag, e.g. smoke.")] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="Run each example K times.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Examples in flight.")] = 4,
    max_cost: Annotated[
        float | None, typer.Option(help="Stop once model + judge spend reach USD.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print estimated tokens and cost, run nothing.")
    ] = False,
    baseline: Annotated[
        str | None, typer.Option(help="RUN_ID, 'latest', or ID@LABEL to run and compare against.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON report here.")
    ] = None,
    junit_path: Annotated[
        Path | None, typer.Option("--junit", help="Write JUnit XML here.")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report here.")
    ] = None,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Project folder.")] = None,
) -> None:
    """Run an evaluation suite and gate on it.

    Exit codes: 0 the gate passed, 1 the gate failed (the report says which threshold and
    by how much, or which regression), 2 usage or configuration error. Model outputs are
    cached by prompt version, model, settings, input and repeat, so re-running after a
    scorer change costs nothing. `roadworthy eval calibrate SUITE` measures the suite's
    judge against the dataset's human labels.
    """
    if suite_path == "calibrate":
        if calibrate_target is None:
            raise ConfigError("usage: roadworthy eval calibrate SUITE")
        _calibrate(Path(calibrate_target), project, concurrency)
        return
    if calibrate_target is not None:
        raise ConfigError(f"unexpected argument {calibrate_target!r}")
    suite = load_suite(Path(suite_path))
    workspace = _workspace(project, suite)
    try:
        runner = EvalRunner(
            workspace,
            suite,
            prompt=prompt,
            model=model,
            repeats=repeats,
            concurrency=concurrency,
            max_cost_usd=max_cost,
        )
        examples = list(suite.examples(subset))
        if dry_run:
            estimate = runner.estimate(examples)
            cost = (
                "unknown (no price)"
                if estimate.cost_usd is None
                else f"${float(estimate.cost_usd):.6f}"
            )
            console.print(
                f"{len(examples)} examples x {runner.repeats} repeats: {estimate.calls} model calls, "
                f"~{estimate.input_tokens} input and <= {estimate.output_tokens} output tokens, "
                f"estimated cost {cost}; {estimate.judge_calls} judge calls"
            )
            return
        baseline_scores = None
        baseline_id = None
        if baseline is not None and "@" in baseline:
            base_runner = EvalRunner(
                workspace,
                suite,
                prompt=baseline,
                model=model,
                repeats=repeats,
                concurrency=concurrency,
            )
            base_run = _run(base_runner, examples, subset, f"baseline {baseline}")
            base_report = build_report(base_run, suite)
            base_runner.finish(
                base_run, passed=base_report.passed, summary=base_report.to_json()["summaries"]
            )
            baseline_id = base_run.id
        elif baseline is not None:
            baseline_id = (
                latest_run_id(workspace.store, suite.name, subset)
                if baseline == "latest"
                else baseline
            )
            if baseline_id is None:
                err_console.print("[yellow]no earlier run to compare with[/]")
        run = _run(runner, examples, subset, suite.name)
        if baseline_id is not None:
            baseline_scores = load_run_scores(workspace.store, baseline_id)
        criteria = _prompt_thresholds(runner)
        report = build_report(
            run, suite, extra_thresholds=criteria, baseline=baseline_scores, baseline_id=baseline_id
        )
        runner.finish(run, passed=report.passed, summary=report.to_json()["summaries"])
        _print(report)
        if json_path:
            write_json(report, json_path)
        if junit_path:
            write_junit(report, junit_path)
        if html_path:
            write_html(report, html_path)
    finally:
        workspace.close()
    if not report.passed:
        raise typer.Exit(EXIT_GATE)


def _prompt_thresholds(runner: EvalRunner) -> dict[str, float]:
    """The prompt version's own evaluation criteria, when they name this suite."""
    if runner.prompt_ref is None:
        return {}
    doc = runner.ws.prompts.resolve(runner.prompt_ref).doc
    criteria = doc.evaluation
    if criteria is None or criteria.suite not in (None, runner.suite.name):
        return {}
    return dict(criteria.thresholds)


def _run(runner: EvalRunner, examples: list[Example], subset: str | None, label: str) -> EvalRun:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=len(examples) * runner.repeats)

        def advance(_: EvalResult) -> None:
            progress.advance(task)

        runner.on_result = advance
        return runner.ws.run_async(runner.run(examples, subset=subset))


def _calibrate(path: Path, project: Path | None, concurrency: int) -> None:
    suite = load_suite(path)
    workspace = _workspace(project, suite)
    try:
        runner = EvalRunner(workspace, suite, concurrency=concurrency)
        labelled = [e for e in suite.dataset if e.human_label is not None]
        if not labelled:
            raise ConfigError(
                f"{suite.spec.dataset}: no example has a human_label to calibrate against"
            )
        run = _run(runner, labelled, None, f"calibrate {suite.name}")
        judged = [s for s in runner.scorers if s.type == "llm-rubric"]
        if not judged:
            raise ConfigError(f"{path}: the suite has no llm-rubric scorer to calibrate")
        for scorer in judged:
            scores = [r.scores[scorer.name] for r in run.results]
            result = calibrate_scores([r.example for r in run.results], scores)
            kappa = "undefined" if result.kappa is None else f"{result.kappa:.3f}"
            console.print(
                f"{scorer.name}: {result.n} labelled examples ({result.skipped} skipped), "
                f"accuracy {_est(result.accuracy)}, Cohen's kappa {kappa}"
            )
            console.print(
                f"  confusion (rows human {list(result.labels)}, cols judge): {result.matrix}"
            )
    finally:
        workspace.close()
