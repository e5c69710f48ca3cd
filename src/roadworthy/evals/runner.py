"""Run a suite: every example (and repeat) through the pipeline's steps, then every scorer.

The system under test is the project's own pipeline, with the prompt (``--prompt``) or
model (``--model``) swapped, so an evaluation measures what production would run. Model
outputs are cached by (prompt version, model, step settings, input, repeat): re-running a
suite after changing only a scorer makes no model call. Calls are recorded in the ledger
under the pipeline name ``eval:SUITE`` with the run id, so their cost has its own line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..config.model import PipelineConfig
from ..errors import ConfigError, RoadworthyError
from ..pipeline import Workspace
from ..pipeline.generate import GenerateContext, GenerateRunner
from ..prompts import parse_ref
from ..prompts.registry import estimate_tokens
from ..providers.base import Usage
from ..providers.pricing import Price, call_cost
from ..store.store import new_trace_id, now
from ..store.tables import calls, eval_cache, eval_results, eval_runs
from .datasets import Example
from .judges import JudgeModel
from .scorers import Output, Score, Scorer, build_scorer
from .suite import Suite

__all__ = ["CostEstimate", "EvalResult", "EvalRun", "EvalRunner", "git_commit"]


@dataclass
class EvalResult:
    example: Example
    repeat: int
    output: Output
    scores: dict[str, Score]
    cached: bool


@dataclass
class EvalRun:
    id: str
    suite: str
    subset: str | None
    prompt_ref: str | None
    prompt_id: str | None
    prompt_version: int | None
    prompt_hash: str | None
    model: str | None
    repeats: int
    results: list[EvalResult] = field(default_factory=list)
    scorers: list[Scorer] = field(default_factory=list)
    cost_usd: Decimal | None = Decimal(0)
    judge_cost_usd: Decimal | None = Decimal(0)
    stopped_by_budget: bool = False

    def scores_for(self, scorer: str) -> list[Score]:
        return [r.scores[scorer] for r in self.results if scorer in r.scores]


@dataclass
class CostEstimate:
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    judge_calls: int


def git_commit(cwd: Any) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _to_output(value: Any, error: str | None, latency_s: float) -> Output:
    if error is not None:
        return Output(error=error, latency_s=latency_s)
    if isinstance(value, str):
        return Output(text=value, latency_s=latency_s)
    return Output(text=json.dumps(value, ensure_ascii=False), parsed=value, latency_s=latency_s)


def _output_json(output: Output) -> dict[str, Any]:
    return {
        "text": output.text,
        "parsed": output.parsed,
        "error": output.error,
        "latency_s": output.latency_s,
        "cost_usd": output.cost_usd,
        "input_tokens": output.input_tokens,
        "output_tokens": output.output_tokens,
    }


def _output_from_json(data: dict[str, Any]) -> Output:
    return Output(
        text=data.get("text"),
        parsed=data.get("parsed"),
        error=data.get("error"),
        latency_s=data.get("latency_s"),
        cost_usd=data.get("cost_usd"),
        input_tokens=data.get("input_tokens"),
        output_tokens=data.get("output_tokens"),
    )


class EvalRunner:
    def __init__(
        self,
        workspace: Workspace,
        suite: Suite,
        *,
        prompt: str | None = None,
        model: str | None = None,
        repeats: int | None = None,
        concurrency: int = 4,
        max_cost_usd: float | None = None,
        on_result: Callable[[EvalResult], None] | None = None,
    ) -> None:
        self.ws = workspace
        self.suite = suite
        self.prompt_ref = prompt or suite.spec.prompt
        self.model = model
        self.repeats = repeats or suite.spec.repeats
        self.concurrency = concurrency
        self.max_cost = Decimal(str(max_cost_usd)) if max_cost_usd is not None else None
        self.on_result = on_result
        self.pipeline_config = self._config()
        self.pipeline = self.ws.pipeline(suite.spec.pipeline, config=self.pipeline_config)
        self.judge_price: Price | None = None  # judge calls are priced apart from the system
        self.scorers = self._scorers()

    # -- set-up -------------------------------------------------------------------------

    def _config(self) -> PipelineConfig:
        pipelines = self.ws.project.config.pipelines
        if self.suite.spec.pipeline not in pipelines:
            raise ConfigError(
                f"{self.suite.path}: pipeline {self.suite.spec.pipeline!r} is not in "
                f"{self.ws.project.config_path}"
            )
        config = pipelines[self.suite.spec.pipeline]
        steps = []
        target = parse_ref(self.prompt_ref)[0] if self.prompt_ref else None
        for step in config.steps:
            gen = step.generate
            if gen is not None and target is not None and parse_ref(gen.prompt)[0] == target:
                update: dict[str, Any] = {"prompt": self.prompt_ref}
                if self.model is not None:
                    update.update(model=self.model, route=None)
                step = step.model_copy(update={"generate": gen.model_copy(update=update)})
            steps.append(step)
        # Evaluations measure the model; production's fallbacks would hide its failures.
        return config.model_copy(update={"steps": steps, "on_failure": [], "ingest": None})

    def _scorers(self) -> list[Scorer]:
        inject: dict[str, Any] = {}
        judge = self.suite.spec.judge
        if judge is not None:
            bound = self.ws.model(judge.model)
            self.judge_price = bound.price
            inject["judge"] = JudgeModel(
                bound.provider, bound.config.id, max_tokens=judge.max_tokens
            )
        return [
            build_scorer(spec, base_dir=self.suite.base_dir, inject=inject)
            for spec in self.suite.spec.scorers
        ]

    def _generate_steps(self) -> list[GenerateRunner]:
        return [s for s in self.pipeline.steps if isinstance(s, GenerateRunner)]

    def prompt_identity(self) -> tuple[str | None, int | None, str | None]:
        """(prompt id, version, content hash) of the prompt under test."""
        if self.prompt_ref is None:
            return None, None, None
        resolved = self.ws.prompts.resolve(self.prompt_ref)
        return resolved.doc.id, resolved.version, resolved.doc.content_hash()

    def _cache_key(self, example: Example, repeat: int) -> str:
        parts: list[Any] = [self.suite.spec.pipeline]
        for step in self.pipeline_config.steps:
            if step.generate is not None:
                resolved = self.ws.prompts.resolve(step.generate.prompt)
                parts.append([resolved.doc.content_hash(), step.generate.model_dump(mode="json")])
            elif step.chunk is not None:
                parts.append(step.chunk.model_dump(mode="json"))
        parts += [example.vars, repeat]
        blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- cost ---------------------------------------------------------------------------

    def estimate(self, examples: list[Example]) -> CostEstimate:
        """Tokens and cost before anything runs (rendered prompts, max output tokens)."""
        input_tokens = output_tokens = 0
        cost: Decimal | None = Decimal(0)
        steps = self._generate_steps()
        for example in examples:
            for step in steps:
                try:
                    prepared = step.prepare(dict(example.vars))
                except RoadworthyError:
                    continue
                tin = sum(estimate_tokens(m.content) for m in prepared.request.messages)
                tout = prepared.request.max_tokens or 256
                input_tokens += tin * self.repeats
                output_tokens += tout * self.repeats
                price = prepared.model.price if prepared.model is not None else None
                step_cost = call_cost(Usage(tin, tout), price)
                cost = (
                    None if cost is None or step_cost is None else cost + step_cost * self.repeats
                )
        judges = sum(1 for s in self.scorers if s.type in ("llm-rubric",)) * len(examples)
        return CostEstimate(
            calls=len(examples) * len(steps) * self.repeats,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            judge_calls=judges * self.repeats,
        )

    # -- running ------------------------------------------------------------------------

    def _cached(self, key: str) -> Output | None:
        with self.ws.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(eval_cache.c.output).where(eval_cache.c.cache_key == key)
            ).first()
        return _output_from_json(row[0]) if row else None

    def _remember(self, key: str, output: Output) -> None:
        if output.error is not None:
            return  # failures are not cached: the next run should try again
        try:
            with self.ws.store.engine.begin() as conn:
                conn.execute(
                    eval_cache.insert().values(
                        cache_key=key, output=_output_json(output), created_at=now()
                    )
                )
        except sa.exc.IntegrityError:
            pass  # a concurrent task cached the same output

    def _trace_cost(self, trace_id: str) -> tuple[Decimal | None, int | None, int | None]:
        with self.ws.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(calls.c.cost_usd, calls.c.input_tokens, calls.c.output_tokens).where(
                    calls.c.trace_id == trace_id
                )
            ).all()
        cost: Decimal | None = Decimal(0)
        tin = tout = 0
        for c, i, o in rows:
            cost = None if cost is None or c is None else cost + Decimal(str(c))
            tin += i or 0
            tout += o or 0
        return cost, tin, tout

    async def _produce(self, example: Example, run_id: str) -> Output:
        trace_id = new_trace_id()
        ctx = GenerateContext(
            trace_id=trace_id, item_id=None, run_id=run_id, pipeline=f"eval:{self.suite.name}"
        )
        variables = dict(example.vars)
        started = time.perf_counter()
        output_value: Any = None
        error: str | None = None
        try:
            for step in self.pipeline.steps:
                output_value = await self.pipeline._run_step(step, variables, ctx)
                variables[step.step_name] = output_value
                variables["previous"] = output_value
        except RoadworthyError as exc:
            error = f"{exc.error_class}: {exc}"
        output = _to_output(output_value, error, time.perf_counter() - started)
        cost, tin, tout = self._trace_cost(trace_id)
        return Output(
            text=output.text,
            parsed=output.parsed,
            error=output.error,
            latency_s=output.latency_s,
            cost_usd=float(cost) if cost is not None else None,
            input_tokens=tin,
            output_tokens=tout,
        )

    async def run(self, examples: list[Example], *, subset: str | None = None) -> EvalRun:
        prompt_id, version, digest = self.prompt_identity()
        run = EvalRun(
            id=str(uuid.uuid4()),
            suite=self.suite.name,
            subset=subset,
            prompt_ref=self.prompt_ref,
            prompt_id=prompt_id,
            prompt_version=version,
            prompt_hash=digest,
            model=self.model or self._default_model(),
            repeats=self.repeats,
            scorers=self.scorers,
        )
        self._start(run, len(examples))
        jobs = [(e, r) for e in examples for r in range(self.repeats)]
        semaphore = asyncio.Semaphore(self.concurrency)
        lock = asyncio.Lock()

        async def one(example: Example, repeat: int) -> EvalResult | None:
            async with semaphore:
                if run.stopped_by_budget:
                    return None
                key = self._cache_key(example, repeat)
                output = self._cached(key)
                cached = output is not None
                if output is None:
                    output = await self._produce(example, run.id)
                    self._remember(key, output)
                scores = {s.name: await s.ascore(example, output) for s in self.scorers}
                result = EvalResult(example, repeat, output, scores, cached)
                async with lock:
                    self._account(run, result)
                    self._save_result(run, result, key)
                if self.on_result is not None:
                    self.on_result(result)
                return result

        done = await asyncio.gather(*(one(e, r) for e, r in jobs))
        order = {(e.id, r): i for i, (e, r) in enumerate(jobs)}
        run.results = sorted(
            (d for d in done if d is not None), key=lambda d: order[(d.example.id, d.repeat)]
        )
        return run

    def _default_model(self) -> str | None:
        for step in self.pipeline_config.steps:
            if step.generate is not None:
                return step.generate.model or step.generate.route
        return None

    def _account(self, run: EvalRun, result: EvalResult) -> None:
        if not result.cached:
            cost = result.output.cost_usd
            run.cost_usd = (
                None if run.cost_usd is None or cost is None else run.cost_usd + Decimal(str(cost))
            )
        for score in result.scores.values():
            for call in score.calls:
                judge_cost = (
                    call_cost(call.usage, self.judge_price) if call.usage is not None else None
                )
                run.judge_cost_usd = (
                    None
                    if run.judge_cost_usd is None or judge_cost is None
                    else run.judge_cost_usd + judge_cost
                )
        spent = (
            run.cost_usd + run.judge_cost_usd
            if run.cost_usd is not None and run.judge_cost_usd is not None
            else None
        )
        if self.max_cost is not None and spent is not None and spent >= self.max_cost:
            run.stopped_by_budget = True

    # -- storage ------------------------------------------------------------------------

    def _start(self, run: EvalRun, examples: int) -> None:
        with self.ws.store.engine.begin() as conn:
            conn.execute(
                eval_runs.insert().values(
                    id=run.id,
                    suite=run.suite,
                    subset=run.subset,
                    prompt_id=run.prompt_id,
                    prompt_version=run.prompt_version,
                    prompt_hash=run.prompt_hash,
                    prompt_ref=run.prompt_ref,
                    model=run.model,
                    git_commit=git_commit(self.ws.project.root),
                    repeats=run.repeats,
                    examples=examples,
                    status="running",
                    started_at=now(),
                )
            )

    def _save_result(self, run: EvalRun, result: EvalResult, key: str) -> None:
        scores = {
            name: {"value": s.value, "passed": s.passed, "reason": s.reason}
            for name, s in result.scores.items()
        }
        with self.ws.store.engine.begin() as conn:
            conn.execute(
                eval_results.insert().values(
                    run_id=run.id,
                    example_id=result.example.id,
                    repeat=result.repeat,
                    output=_output_json(result.output),
                    scores=scores,
                    cache_key=key,
                )
            )

    def finish(self, run: EvalRun, *, passed: bool, summary: dict[str, Any]) -> None:
        status = "stopped" if run.stopped_by_budget else "finished"
        with self.ws.store.engine.begin() as conn:
            conn.execute(
                eval_runs.update()
                .where(eval_runs.c.id == run.id)
                .values(status=status, passed=int(passed), summary=summary, finished_at=now())
            )
