"""LLM-as-judge: rubric scores, pairwise comparisons, repeat agreement and calibration.

Judges are flaky (the same input scored 0.0 and 1.0, DeepEval #1146; scores moving with
example order, #1265) and small judges return invalid JSON (DeepEval #929, Ragas #2044).
So here:

* the judge is asked for a structured verdict through ``ResponseFormat(schema)`` with the
  reason *before* the score, and a reply that does not parse is **unscored** with the
  reason, never 0 and never an exception; a failed judge call is unscored too;
* a rubric can be asked ``repeats`` times; the result carries the share of repeats that
  agree with the majority, and :func:`repeat_agreement` gives Fleiss' kappa (and Cohen's
  for two repeats) over a run;
* a pairwise comparison asks both orders (A first, then B first); when they disagree the
  result is a tie and the disagreement is counted as position bias;
* every judge call is reported as a :class:`~roadworthy.evals.scorers.ModelCall` with its
  usage, so the runner prices judging separately from the system under test;
* :func:`calibrate` measures a judge against human labels (accuracy, Cohen's kappa,
  confusion matrix) before anyone trusts it as a gate.

Judges take any :class:`~roadworthy.providers.Provider` (a whole model stack, or the
scripted provider in tests) through :class:`JudgeModel`.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import RoadworthyError
from ..providers.base import Completion, CompletionRequest, Message, Provider, ResponseFormat, Usage
from .datasets import Example
from .scorers.base import ModelCall, Output, Score, ScoreFn, scorer
from .stats import (
    Estimate,
    cohens_kappa,
    confusion_counts,
    fleiss_kappa,
    pass_rate_estimate,
)

__all__ = [
    "Calibration",
    "JudgeModel",
    "PairwiseResult",
    "PairwiseSummary",
    "RepeatAgreement",
    "RubricResult",
    "calibrate",
    "calibrate_scores",
    "judge_pairwise",
    "judge_rubric",
    "llm_rubric",
    "pairwise_summary",
    "parse_verdict",
    "repeat_agreement",
    "rubric_schema",
]


@dataclass(frozen=True)
class JudgeModel:
    """The model that judges: a provider (or model stack) and the model id to ask."""

    provider: Provider
    model: str
    temperature: float | None = 0.0
    max_tokens: int | None = 400
    timeout_s: float | None = None
    seed: int | None = None


async def _ask(
    judge: JudgeModel, messages: Sequence[Message], schema: dict[str, Any], seed: int | None
) -> tuple[Completion | None, ModelCall, str | None]:
    """One judge call; failures become ``(None, call, problem)`` instead of raising."""
    request = CompletionRequest(
        messages=tuple(messages),
        model=judge.model,
        temperature=judge.temperature,
        max_tokens=judge.max_tokens,
        response_format=ResponseFormat(schema=schema, name="verdict"),
        timeout_s=judge.timeout_s,
        seed=seed,
        metadata={"purpose": "judge"},
    )
    started = time.perf_counter()
    try:
        completion = await judge.provider.complete(request)
    except RoadworthyError as exc:
        call = ModelCall(
            provider=getattr(judge.provider, "name", "?"),
            model=judge.model,
            usage=Usage(),
            latency_s=time.perf_counter() - started,
            error=exc.error_class,
        )
        return None, call, f"judge call failed: {exc.error_class}: {exc}"
    call = ModelCall(
        provider=completion.provider,
        model=completion.model,
        usage=completion.usage,
        latency_s=time.perf_counter() - started,
    )
    return completion, call, None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(completion: Completion) -> tuple[dict[str, Any] | None, str]:
    if isinstance(completion.parsed, dict):
        return completion.parsed, ""
    text = completion.text.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            return None, f"judge reply is not JSON: {_clip(completion.text)}"
        try:
            value = json.loads(text[start : end + 1])
        except json.JSONDecodeError as exc:
            return None, f"judge reply is not JSON ({exc.msg}): {_clip(completion.text)}"
    if not isinstance(value, dict):
        return None, f"judge reply is not a JSON object: {_clip(completion.text)}"
    return value, ""


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# ---------------------------------------------------------------------------------------
# rubric


def rubric_schema(scale: int) -> dict[str, Any]:
    """The verdict schema: a reason first (the judge explains, then decides), then score."""
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string"},
            "score": {"type": "integer", "minimum": 1, "maximum": scale},
        },
        "required": ["reason", "score"],
        "additionalProperties": False,
    }


def parse_verdict(completion: Completion, scale: int) -> tuple[int | None, str]:
    """``(score, reason)`` from a judge reply, or ``(None, why it could not be read)``.

    Accepts an integer or an integral float in ``1..scale`` (a numeric string too, which
    small models produce); anything else is a parse failure, never a guess.
    """
    data, problem = _json_object(completion)
    if data is None:
        return None, problem
    raw = data.get("score")
    reason = data.get("reason")
    value: float | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not value.is_integer() or not 1 <= value <= scale:
        return None, f"judge verdict has no score in 1..{scale}: {_clip(completion.text)}"
    return int(value), str(reason).strip() if reason is not None else ""


_RUBRIC_SYSTEM = (
    "You are a careful, strict evaluator. Grade the response against the criteria only. "
    "Reply with a JSON object and nothing else: "
    '{{"reason": "<one or two sentences>", "score": <integer 1-{scale}>}}, where 1 means '
    "the response fails the criteria and {scale} means it fully meets them."
)


def _rubric_messages(
    task_input: str, response: str, criteria: Sequence[str], reference: str | None, scale: int
) -> list[Message]:
    parts = [f"## Task input\n{task_input}", f"## Response to grade\n{response}"]
    parts.append("## Criteria\n" + "\n".join(f"- {c}" for c in criteria))
    if reference is not None:
        parts.append(f"## Reference answer (for comparison)\n{reference}")
    return [
        Message("system", _RUBRIC_SYSTEM.format(scale=scale)),
        Message("user", "\n\n".join(parts)),
    ]


@dataclass(frozen=True)
class RubricResult:
    """A rubric verdict over ``repeats`` asks.

    ``score`` is the mean of the parsed repeats, normalised to [0, 1] as
    ``(raw - 1) / (scale - 1)``; ``None`` (unscored) when no repeat parsed. ``raw_scores``
    holds each repeat's raw score (``None`` where it did not parse), ``agreement`` the
    share of parsed repeats equal to the most common raw score.
    """

    score: float | None
    reason: str
    raw_scores: tuple[int | None, ...]
    agreement: float | None
    calls: tuple[ModelCall, ...]
    scale: int

    def to_score(self, threshold: float = 0.5) -> Score:
        details: dict[str, Any] = {"raw_scores": list(self.raw_scores), "scale": self.scale}
        if self.agreement is not None:
            details["agreement"] = self.agreement
        if self.score is None:
            return Score(None, None, self.reason, details=details, calls=self.calls)
        passed = self.score >= threshold
        return Score(self.score, passed, self.reason, details=details, calls=self.calls)


def _majority(values: Sequence[Hashable]) -> tuple[Hashable, float]:
    counts = Counter(values)
    top = max(counts.values())
    winner = next(v for v in values if counts[v] == top)  # ties: first seen, deterministic
    return winner, top / len(values)


async def judge_rubric(
    judge: JudgeModel,
    *,
    task_input: str,
    response: str,
    criteria: Sequence[str],
    reference: str | None = None,
    scale: int = 5,
    repeats: int = 1,
) -> RubricResult:
    """Ask the judge ``repeats`` times to grade ``response`` against ``criteria``.

    Repeats are sequential and get seeds ``judge.seed + i`` when a seed is set, so a
    repeat is a fresh sample rather than a cache hit.
    """
    if scale < 2:
        raise ValueError(f"scale must be at least 2, got {scale}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if not criteria:
        raise ValueError("a rubric needs at least one criterion")
    messages = _rubric_messages(task_input, response, criteria, reference, scale)
    schema = rubric_schema(scale)
    raw: list[int | None] = []
    reasons: list[str] = []
    problems: list[str] = []
    calls: list[ModelCall] = []
    for i in range(repeats):
        seed = judge.seed + i if judge.seed is not None else None
        completion, call, problem = await _ask(judge, messages, schema, seed)
        calls.append(call)
        if completion is None:
            raw.append(None)
            problems.append(problem or "judge call failed")
            continue
        value, why = parse_verdict(completion, scale)
        raw.append(value)
        (reasons if value is not None else problems).append(why)
    parsed = [v for v in raw if v is not None]
    if not parsed:
        reason = problems[0] if len(set(problems)) == 1 else "; ".join(dict.fromkeys(problems))
        return RubricResult(None, reason, tuple(raw), None, tuple(calls), scale)
    majority, share = _majority(parsed)
    mean = sum((v - 1) / (scale - 1) for v in parsed) / len(parsed)
    reason = reasons[raw.index(majority)] if isinstance(majority, int) else reasons[0]
    if len(parsed) < repeats:
        reason += f" ({repeats - len(parsed)} of {repeats} repeats not scored: {problems[0]})"
    return RubricResult(
        mean, reason, tuple(raw), share if repeats > 1 else None, tuple(calls), scale
    )


def _render_vars(variables: Mapping[str, Any]) -> str:
    if len(variables) == 1:
        value = next(iter(variables.values()))
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "\n".join(
        f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
        for k, v in variables.items()
    )


@scorer("llm-rubric")
def llm_rubric(
    value: str | Sequence[str] | None = None,
    *,
    judge: JudgeModel,
    scale: int = 5,
    repeats: int = 1,
    threshold: float = 0.5,
) -> ScoreFn:
    """Grade each output against ``value`` (the rubric) plus the example's ``criteria``.

    ``judge`` is supplied by the runner (``build_scorer(..., inject={"judge": ...})``).
    An example with no rubric and no criteria is unscored.
    """
    if scale < 2 or repeats < 1:
        raise ValueError("scale must be >= 2 and repeats >= 1")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    base = [value] if isinstance(value, str) else list(value or [])

    async def score(example: Example, output: Output) -> Score:
        criteria = [*base, *example.criteria]
        if not criteria:
            return Score.skip("no rubric: give the scorer a value or the example criteria")
        text = output.as_text
        if text is None:
            return Score.fail(f"no output ({output.error or 'empty'})")
        result = await judge_rubric(
            judge,
            task_input=_render_vars(example.vars),
            response=text,
            criteria=criteria,
            reference=example.reference,
            scale=scale,
            repeats=repeats,
        )
        return result.to_score(threshold)

    return score


# ---------------------------------------------------------------------------------------
# pairwise

Winner = Literal["a", "b", "tie"]

_PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        "winner": {"type": "string", "enum": ["first", "second", "tie"]},
    },
    "required": ["reason", "winner"],
    "additionalProperties": False,
}

_PAIRWISE_SYSTEM = (
    "You compare two responses to the same task against the criteria. Ignore their order "
    "and length; judge substance only. Reply with a JSON object and nothing else: "
    '{"reason": "<one or two sentences>", "winner": "first" | "second" | "tie"}.'
)


@dataclass(frozen=True)
class PairwiseResult:
    """``winner`` is ``"a"``, ``"b"``, ``"tie"`` or ``None`` (unscored).

    ``a_first`` and ``b_first`` are the verdicts of the two orders, mapped back to
    ``a``/``b``; when they disagree the result is a tie and ``position_bias`` is True.
    """

    winner: Winner | None
    reason: str
    a_first: Winner | None
    b_first: Winner | None
    position_bias: bool
    calls: tuple[ModelCall, ...]

    @property
    def unscored(self) -> bool:
        return self.winner is None


def _pairwise_verdict(completion: Completion) -> tuple[str | None, str]:
    data, problem = _json_object(completion)
    if data is None:
        return None, problem
    winner = data.get("winner")
    if not isinstance(winner, str) or winner.strip().lower() not in ("first", "second", "tie"):
        return None, f"judge verdict has no winner first/second/tie: {_clip(completion.text)}"
    return winner.strip().lower(), str(data.get("reason") or "").strip()


async def judge_pairwise(
    judge: JudgeModel,
    *,
    task_input: str,
    output_a: str,
    output_b: str,
    criteria: Sequence[str],
) -> PairwiseResult:
    """Compare two outputs in both orders; disagreement between orders is a tie."""
    if not criteria:
        raise ValueError("a comparison needs at least one criterion")
    crit = "\n".join(f"- {c}" for c in criteria)
    verdicts: list[Winner | None] = []
    reasons: list[str] = []
    calls: list[ModelCall] = []
    for first, second, mapping in (
        (output_a, output_b, {"first": "a", "second": "b", "tie": "tie"}),
        (output_b, output_a, {"first": "b", "second": "a", "tie": "tie"}),
    ):
        user = (
            f"## Task input\n{task_input}\n\n## Criteria\n{crit}\n\n"
            f"## First response\n{first}\n\n## Second response\n{second}"
        )
        messages = [Message("system", _PAIRWISE_SYSTEM), Message("user", user)]
        completion, call, problem = await _ask(judge, messages, _PAIRWISE_SCHEMA, judge.seed)
        calls.append(call)
        if completion is None:
            verdicts.append(None)
            reasons.append(problem or "judge call failed")
            continue
        raw, why = _pairwise_verdict(completion)
        verdicts.append(mapping[raw] if raw is not None else None)  # type: ignore[arg-type]
        reasons.append(why)
    a_first, b_first = verdicts
    if a_first is None or b_first is None:
        bad = reasons[0] if a_first is None else reasons[1]
        return PairwiseResult(None, bad, a_first, b_first, False, tuple(calls))
    if a_first != b_first:
        why = f"position bias: A-first said {a_first}, B-first said {b_first}; counted as a tie"
        return PairwiseResult("tie", why, a_first, b_first, True, tuple(calls))
    return PairwiseResult(a_first, reasons[0], a_first, b_first, False, tuple(calls))


@dataclass(frozen=True)
class PairwiseSummary:
    """Counts over a run; ``a_win_rate`` is A's share of decisive (non-tie) verdicts."""

    a_wins: int
    b_wins: int
    ties: int
    unscored: int
    position_bias: int
    a_win_rate: Estimate | None


def pairwise_summary(results: Sequence[PairwiseResult]) -> PairwiseSummary:
    a = sum(1 for r in results if r.winner == "a")
    b = sum(1 for r in results if r.winner == "b")
    decisive = [True] * a + [False] * b
    return PairwiseSummary(
        a_wins=a,
        b_wins=b,
        ties=sum(1 for r in results if r.winner == "tie"),
        unscored=sum(1 for r in results if r.winner is None),
        position_bias=sum(1 for r in results if r.position_bias),
        a_win_rate=pass_rate_estimate(decisive) if decisive else None,
    )


# ---------------------------------------------------------------------------------------
# agreement and calibration


@dataclass(frozen=True)
class RepeatAgreement:
    """How consistent repeated judging is over a run.

    ``majority_share``: mean over examples of the share of repeats that agree with that
    example's majority (1.0 = every repeat agreed). ``fleiss_kappa`` over examples whose
    repeats all parsed; ``cohen_kappa`` only with exactly two repeats. ``None`` where
    undefined (e.g. every verdict identical, where kappa is 0/0).
    """

    examples: int
    majority_share: float | None
    fleiss_kappa: float | None
    cohen_kappa: float | None


def repeat_agreement(ratings: Sequence[Sequence[Hashable | None]]) -> RepeatAgreement:
    """Agreement of repeated verdicts; each inner list is one example's repeats."""
    shares = []
    complete: list[list[Hashable]] = []
    for row in ratings:
        parsed = [r for r in row if r is not None]
        if parsed:
            shares.append(_majority(parsed)[1])
        if parsed and len(parsed) == len(row):
            complete.append(parsed)
    widths = {len(r) for r in complete}
    fleiss = fleiss_kappa(complete) if len(widths) == 1 else None
    cohen = None
    if widths == {2}:
        cohen = cohens_kappa([r[0] for r in complete], [r[1] for r in complete])
    return RepeatAgreement(
        examples=len(ratings),
        majority_share=sum(shares) / len(shares) if shares else None,
        fleiss_kappa=fleiss,
        cohen_kappa=cohen,
    )


@dataclass(frozen=True)
class Calibration:
    """Judge vs human labels on the examples where both exist.

    ``matrix[i][j]`` counts human label ``labels[i]`` with judge label ``labels[j]``.
    """

    n: int
    skipped: int
    accuracy: Estimate
    kappa: float | None
    labels: tuple[Hashable, ...]
    matrix: tuple[tuple[int, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "skipped": self.skipped,
            "accuracy": self.accuracy.to_json(),
            "kappa": self.kappa,
            "labels": [str(x) for x in self.labels],
            "matrix": [list(r) for r in self.matrix],
        }


def calibrate(
    judge_labels: Sequence[Hashable | None],
    human_labels: Sequence[Hashable | None],
    *,
    labels: Sequence[Hashable] | None = None,
) -> Calibration:
    """Agreement between judge verdicts and human labels; pairs missing either are skipped."""
    if len(judge_labels) != len(human_labels):
        raise ValueError(f"{len(judge_labels)} judge labels but {len(human_labels)} human labels")
    pairs = [
        (h, j)
        for j, h in zip(judge_labels, human_labels, strict=True)
        if j is not None and h is not None
    ]
    humans = [h for h, _ in pairs]
    judged = [j for _, j in pairs]
    ordered, matrix = confusion_counts(humans, judged, labels)
    return Calibration(
        n=len(pairs),
        skipped=len(judge_labels) - len(pairs),
        accuracy=pass_rate_estimate([h == j for h, j in pairs]),
        kappa=cohens_kappa(humans, judged) if pairs else None,
        labels=tuple(ordered),
        matrix=tuple(tuple(r) for r in matrix),
    )


_PASS = {"pass", "passed", "yes", "true", "good", "1"}
_FAIL = {"fail", "failed", "no", "false", "bad", "0"}


def _pass_label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "pass" if value else "fail"
    text = str(value).strip().lower()
    if text in _PASS:
        return "pass"
    if text in _FAIL:
        return "fail"
    return None


def calibrate_scores(examples: Sequence[Example], scores: Sequence[Score]) -> Calibration:
    """Calibrate a pass/fail judge scorer against the examples' ``human_label``.

    Human labels read as pass/fail (``true``/``pass``/``yes`` and their opposites);
    examples without one, and unscored verdicts, are skipped and counted.
    """
    if len(examples) != len(scores):
        raise ValueError(f"{len(examples)} examples but {len(scores)} scores")
    human = [_pass_label(ex.human_label) for ex in examples]
    judged = [None if s.passed is None else ("pass" if s.passed else "fail") for s in scores]
    return calibrate(judged, human, labels=["pass", "fail"])
