"""LLM judges on the scripted provider: verdicts, malformed replies, bias, agreement."""

from __future__ import annotations

import json

import pytest

from roadworthy.evals import (
    Example,
    JudgeModel,
    Output,
    build_scorer,
    calibrate,
    calibrate_scores,
    judge_pairwise,
    judge_rubric,
    pairwise_summary,
    repeat_agreement,
    summarize_scores,
)
from roadworthy.providers import Reply, ScriptedProvider

CRITERIA = ["names the refund amount", "is polite"]


def judge(*replies: Reply) -> tuple[JudgeModel, ScriptedProvider]:
    provider = ScriptedProvider(list(replies), name="judge-llm")
    return JudgeModel(provider, "judge-model"), provider


async def test_rubric_verdict_is_normalised_and_asks_for_structured_json() -> None:
    model, provider = judge(
        Reply(
            {"reason": "Mentions $75 and is courteous.", "score": 5},
            input_tokens=120,
            output_tokens=14,
        )
    )
    result = await judge_rubric(
        model, task_input="Refund my $75", response="We refunded $75.", criteria=CRITERIA
    )
    assert result.score == 1.0 and result.reason == "Mentions $75 and is courteous."
    request = provider.requests[0]
    assert request.model == "judge-model"
    assert request.response_format is not None and request.response_format.schema is not None
    assert request.response_format.schema["required"] == ["reason", "score"]
    assert "- names the refund amount" in request.messages[-1].content
    # judge usage is reported per call, for separate costing
    (call,) = result.calls
    assert (call.provider, call.model) == ("judge-llm", "judge-model")
    assert (call.usage.input_tokens, call.usage.output_tokens) == (120, 14)
    score = result.to_score(threshold=0.5)
    assert score.passed is True and score.calls == result.calls

    model, _ = judge(Reply('```json\n{"reason": "half there", "score": "3"}\n```'))
    mid = await judge_rubric(model, task_input="x", response="y", criteria=CRITERIA)
    assert mid.score == 0.5


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("The response is great, 5/5!", "judge reply is not JSON"),
        ('{"reason": "ok", "score": 7}', "no score in 1..5"),
        ('{"reason": "ok", "score": 3.5}', "no score in 1..5"),
        ('{"reason": "ok", "score": "high"}', "no score in 1..5"),
        ('{"reason": "ok"', "judge reply is not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"reason": "ok", "score": true}', "no score in 1..5"),
    ],
)
async def test_malformed_verdicts_are_unscored_never_zero(reply: str, why: str) -> None:
    model, _ = judge(Reply(reply))
    result = await judge_rubric(model, task_input="x", response="y", criteria=CRITERIA)
    assert result.score is None and why in result.reason
    score = result.to_score()
    assert score.unscored and score.value is None and score.passed is None
    assert len(score.calls) == 1


async def test_failed_judge_call_is_unscored_with_the_error() -> None:
    model, _ = judge(Reply(error="RateLimited", error_message="slow down"))
    result = await judge_rubric(model, task_input="x", response="y", criteria=CRITERIA)
    assert result.score is None
    assert result.reason == "judge call failed: RateLimited: slow down"
    assert result.calls[0].error == "RateLimited" and result.calls[0].usage.input_tokens is None


async def test_repeats_report_majority_agreement() -> None:
    model, provider = judge(
        Reply({"reason": "good", "score": 4}, times=1),
        Reply("not json at all", times=1),
        Reply({"reason": "fine", "score": 4}, times=1),
        Reply({"reason": "meh", "score": 2}, times=1),
    )
    model = JudgeModel(provider, "judge-model", seed=10)
    result = await judge_rubric(model, task_input="x", response="y", criteria=CRITERIA, repeats=4)
    assert result.raw_scores == (4, None, 4, 2)
    assert result.agreement == pytest.approx(2 / 3)
    assert result.score == pytest.approx(((3 / 4) * 2 + 1 / 4) / 3)
    assert "1 of 4 repeats not scored" in result.reason
    assert [r.seed for r in provider.requests] == [10, 11, 12, 13]
    assert len(result.calls) == 4


async def test_llm_rubric_scorer_via_registry_and_summary() -> None:
    model, _ = judge(
        Reply({"reason": "yes", "score": 5}, when="refund", times=1),
        Reply("garbage", when="refund", times=1),
        Reply({"reason": "no", "score": 1}),
    )
    rubric = build_scorer({"type": "llm-rubric", "value": "is polite"}, inject={"judge": model})
    ex = Example(id="a", vars={"text": "where is my refund"}, criteria=("mentions the refund",))
    scores = [
        await rubric.ascore(ex, Output(text="Your refund is on its way.")),
        await rubric.ascore(ex, Output(text="Your refund is on its way.")),
        await rubric.ascore(Example(id="b", vars={"text": "hi"}, expected="x"), Output(text="hi")),
        await rubric.ascore(ex, Output(error="Timeout")),
    ]
    # the suite rubric applies to every example; the failed system output fails
    assert [s.value for s in scores] == [1.0, None, 0.0, 0.0]
    assert scores[1].reason == "judge reply is not JSON: 'garbage'"
    assert scores[3].reason == "no output (Timeout)" and not scores[3].calls
    summary = summarize_scores(scores)
    assert summary.unscored == 1 and summary.scored == 3
    with pytest.raises(TypeError, match="async"):
        rubric(ex, Output(text="x"))


async def test_example_without_rubric_or_criteria_is_unscored() -> None:
    model, _ = judge(Reply({"reason": "x", "score": 3}))
    rubric = build_scorer({"type": "llm-rubric"}, inject={"judge": model})
    score = await rubric.ascore(Example(id="c", vars={"t": "x"}, expected="y"), Output(text="x"))
    assert score.unscored and "no rubric" in score.reason


async def test_pairwise_asks_both_orders_and_counts_position_bias() -> None:
    # consistent: A wins in both orders (first, then second when B is shown first)
    model, provider = judge(
        Reply({"reason": "first is clearer", "winner": "first"}, times=1),
        Reply({"reason": "second is clearer", "winner": "second"}, times=1),
    )
    result = await judge_pairwise(
        model, task_input="q", output_a="ANSWER-A", output_b="ANSWER-B", criteria=CRITERIA
    )
    assert result.winner == "a" and not result.position_bias
    first, second = (r.messages[-1].content for r in provider.requests)
    assert first.index("ANSWER-A") < first.index("ANSWER-B")
    assert second.index("ANSWER-B") < second.index("ANSWER-A")
    assert len(result.calls) == 2

    # position bias: the judge always prefers whatever is shown first
    model, _ = judge(Reply({"reason": "first", "winner": "first"}))
    biased = await judge_pairwise(
        model, task_input="q", output_a="a", output_b="b", criteria=CRITERIA
    )
    assert biased.winner == "tie" and biased.position_bias
    assert biased.reason.startswith("position bias")

    # malformed second verdict: unscored, not a guess
    model, _ = judge(
        Reply({"reason": "r", "winner": "second"}, times=1), Reply({"winner": "neither"})
    )
    broken = await judge_pairwise(
        model, task_input="q", output_a="a", output_b="b", criteria=CRITERIA
    )
    assert broken.unscored and "no winner" in broken.reason

    summary = pairwise_summary([result, biased, broken])
    assert (summary.a_wins, summary.b_wins, summary.ties, summary.unscored) == (1, 0, 1, 1)
    assert summary.position_bias == 1
    assert summary.a_win_rate is not None and summary.a_win_rate.value == 1.0


def test_repeat_agreement_kappas() -> None:
    ratings = [[5, 5], [1, 1], [3, 4], [5, 5], [1, 2], [4, 4]]
    agreement = repeat_agreement(ratings)
    assert agreement.majority_share == pytest.approx((1 + 1 + 0.5 + 1 + 0.5 + 1) / 6)
    assert agreement.fleiss_kappa is not None and agreement.cohen_kappa is not None
    three = repeat_agreement([[1, 1, 2], [2, 2, 2], [1, None, 1]])
    assert three.cohen_kappa is None  # only defined for exactly two repeats
    assert three.fleiss_kappa is not None  # over the two complete rows
    same = repeat_agreement([["pass", "pass"], ["pass", "pass"]])
    assert same.majority_share == 1.0 and same.fleiss_kappa is None and same.cohen_kappa is None


def test_calibration_against_human_labels() -> None:
    sm_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    judge_labels = ["pass", "pass", "fail", "pass", "fail", None, "fail", "pass"]
    human_labels = ["pass", "fail", "fail", "pass", "fail", "pass", "pass", None]
    cal = calibrate(judge_labels, human_labels, labels=["pass", "fail"])
    assert cal.n == 6 and cal.skipped == 2
    assert cal.accuracy.value == pytest.approx(4 / 6)
    assert cal.matrix == ((2, 1), (1, 2))  # rows: human, columns: judge
    assert cal.kappa == pytest.approx(sm_rater.cohens_kappa([[2, 1], [1, 2]]).kappa)
    json.dumps(cal.to_json())


def test_calibrate_scores_reads_human_labels_from_examples() -> None:
    from roadworthy.evals import Score

    examples = [
        Example(id="1", vars={"t": "a"}, criteria=("c",), human_label=True),
        Example(id="2", vars={"t": "b"}, criteria=("c",), human_label="fail"),
        Example(id="3", vars={"t": "c"}, criteria=("c",)),
        Example(id="4", vars={"t": "d"}, criteria=("c",), human_label="yes"),
    ]
    scores = [Score.pass_("ok"), Score.pass_("ok"), Score.pass_("ok"), Score.skip("bad json")]
    cal = calibrate_scores(examples, scores)
    assert cal.n == 2 and cal.skipped == 2 and cal.accuracy.value == 0.5
