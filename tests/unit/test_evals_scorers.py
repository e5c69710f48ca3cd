"""Scorers: deterministic checks, classification, similarity, registry and aggregates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from roadworthy.errors import ConfigError
from roadworthy.evals import (
    Example,
    Output,
    Score,
    ScoreFn,
    ScorerSpec,
    build_scorer,
    classification_report,
    scorer,
    summarize_by_tag,
    summarize_scores,
)
from roadworthy.evals.scorers import (
    contains,
    embedding_cosine,
    equals,
    field_equals,
    get_scorer_factory,
    json_schema,
    label_match,
    refusal,
    required_fields,
    rouge_l_score,
)

EX = Example(id="e1", vars={"text": "t"}, expected={"category": "billing", "priority": "high"})
SCHEMA = {
    "type": "object",
    "properties": {"category": {"enum": ["billing", "technical"]}, "priority": {"type": "string"}},
    "required": ["category", "priority"],
    "additionalProperties": False,
}


def run(spec: dict[str, Any], text: str | None = None, example: Example = EX, **out: Any) -> Score:
    return build_scorer(spec)(example, Output(text=text, **out))


@pytest.mark.parametrize(
    ("spec", "text", "passed"),
    [
        ({"type": "equals", "value": "yes"}, " yes\n", True),
        ({"type": "equals", "value": "yes"}, "Yes", False),
        ({"type": "equals", "value": {"a": 1}}, '{"a":1}', True),
        ({"type": "contains", "value": "refund"}, "we will refund you", True),
        ({"type": "contains", "value": "Refund"}, "we will refund you", False),
        ({"type": "icontains", "value": "Refund"}, "we will refund you", True),
        ({"type": "contains-any", "value": ["x", "will"]}, "we will", True),
        ({"type": "contains-all", "value": ["we", "nope"]}, "we will", False),
        ({"type": "icontains-all", "value": ["WE", "WILL"]}, "we will", True),
        ({"type": "not-contains", "value": "urgent"}, "priority: low", True),
        ({"type": "not-contains", "value": "urgent"}, "priority: urgent", False),
        ({"type": "regex", "value": r"INV-\d{4,}"}, "see INV-20931", True),
        ({"type": "starts-with", "value": "{"}, '{"a": 1}', True),
        ({"type": "is-json"}, '```json\n{"a": 1}\n```', True),
        ({"type": "is-json"}, "{'a': 1}", False),
        ({"type": "contains-json"}, 'Sure! {"a": 1} hope that helps', True),
        (
            {"type": "contains-json", "value": SCHEMA},
            'x {"a": 1} y {"category": "billing", "priority": "low"}',
            True,
        ),
        ({"type": "length", "max": 5}, "123456", False),
        ({"type": "length", "min": 2, "max": 3, "unit": "words"}, "two words", True),
        ({"type": "refusal"}, "I'm sorry, but I can't help with that.", False),
        ({"type": "refusal", "expected": True}, "I can\u2019t help with that request.", True),
        ({"type": "refusal"}, '{"category": "billing"}', True),
    ],
)
def test_text_scorers(spec: dict[str, Any], text: str, passed: bool) -> None:
    score = run(spec, text)
    assert score.passed is passed, score.reason
    assert score.value == (1.0 if passed else 0.0)
    assert score.scorer == spec["type"]


def test_equals_defaults_to_expected_and_reports_reason() -> None:
    example = Example(id="x", vars={"q": "2+2"}, expected="4")
    assert equals()(example, Output(text="4")).passed
    failed = equals()(example, Output(text="5"))
    assert failed.passed is False and failed.reason == "expected '4', got '5'"
    missing = equals()(Example(id="y", vars={"q": "?"}, criteria=("c",)), Output(text="5"))
    assert missing.unscored and "no expected value" in missing.reason


def test_json_schema_scorer_from_file_and_errors(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    check = build_scorer({"type": "json-schema", "schema": "s.json"}, base_dir=tmp_path)
    assert check(EX, Output(parsed={"category": "billing", "priority": "high"})).passed
    bad = check(EX, Output(text='{"category": "shopping", "priority": "high", "x": 1}'))
    assert bad.passed is False
    assert "category: 'shopping' is not one of" in bad.reason
    assert "Additional properties are not allowed" in bad.reason
    assert check(EX, Output(text="nope")).reason.startswith("not JSON")
    failed_system = check(EX, Output(error="Timeout"))
    assert failed_system.passed is False and failed_system.reason == "no output (Timeout)"
    with pytest.raises(ConfigError, match=r"schema file 'missing\.json' not found"):
        build_scorer({"type": "json-schema", "schema": "missing.json"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        json_schema({"type": 12})


def test_required_fields_and_field_equals_with_tolerance() -> None:
    out = Output(parsed={"total": 64.92, "customer": {"email": None}, "lines": [{"sku": "A"}]})
    assert required_fields(["total", "lines.0.sku"])(EX, out).passed
    missing = required_fields(["total", "customer.email"])(EX, out)
    assert missing.passed is False and "customer.email" in missing.reason
    assert required_fields(["customer.email"], allow_null=True)(EX, out).passed
    assert field_equals("total", 64.91, tolerance=0.01)(EX, out).passed
    assert not field_equals("total", 64.90, tolerance=0.01)(EX, out).passed
    assert field_equals("category")(EX, Output(parsed={"category": "billing"})).passed
    assert not field_equals("category")(EX, Output(parsed={"category": True})).passed


def test_latency_and_cost_bounds_read_the_result_record() -> None:
    assert run({"type": "latency", "max_s": 1.0}, "x", latency_s=0.4).passed
    assert not run({"type": "latency", "max_s": 1.0}, "x", latency_s=1.5).passed
    unknown = run({"type": "cost", "max_usd": 0.01}, "x")
    assert unknown.unscored and "unknown" in unknown.reason
    assert run({"type": "cost", "max_usd": 0.01}, "x", cost_usd=0.0).passed
    assert not run({"type": "cost", "max_usd": 0.01}, "x", cost_usd=0.02).passed


# ---------------------------------------------------------------- classification


def test_label_match_and_classification_report() -> None:
    category = label_match("category")
    cases = [
        ("billing", {"category": "billing"}),
        ("billing", {"category": "technical"}),
        ("technical", {"category": "technical"}),
        ("technical", {"category": "technical"}),
        ("account", {"category": "billing"}),
        ("account", None),  # the system failed: a miss, predicted "(none)"
        ("other", {"category": "shipping"}),  # a label outside the expected set
    ]
    scores = []
    for i, (want, got) in enumerate(cases):
        ex = Example(id=str(i), vars={"t": "x"}, expected={"category": want})
        out = Output(parsed=got) if got is not None else Output(error="Timeout")
        scores.append(category(ex, out))
    scores.append(category(Example(id="n", vars={"t": "x"}, criteria=("c",)), Output(text="x")))
    assert [s.passed for s in scores[:7]] == [True, False, True, True, False, False, False]
    assert scores[7].unscored

    report = category.report(scores)
    assert report is not None
    assert report.n == 7 and report.correct == 3 and report.unscored == 1
    assert report.accuracy == pytest.approx(3 / 7)
    assert report.labels == ("account", "billing", "other", "technical")
    assert report.columns == ("account", "billing", "other", "technical", "(none)", "shipping")
    by = {c.label: c for c in report.classes}
    # billing: tp 1, predicted 2 (billing, account->billing), support 2
    assert (by["billing"].precision, by["billing"].recall) == (0.5, 0.5)
    assert by["technical"].precision == pytest.approx(2 / 3) and by["technical"].recall == 1.0
    assert by["technical"].f1 == pytest.approx(0.8)
    assert by["account"].precision is None and by["account"].recall == 0.0
    assert by["account"].f1 == 0.0  # never predicted: recall 0, so F1 0
    assert report.matrix[0] == (0, 1, 0, 0, 1, 0)  # account -> billing, (none)
    assert report.macro_f1 == pytest.approx((0.0 + 0.5 + 0.0 + 0.8) / 4)
    assert report.accuracy_interval.contains(3 / 7)


def test_classification_report_with_fixed_labels_and_pairs() -> None:
    report = classification_report(
        [("low", "low"), ("high", "urgent"), ("urgent", "urgent")],
        labels=["low", "medium", "high", "urgent"],
    )
    assert report.labels == ("low", "medium", "high", "urgent")
    medium = report.classes[1]
    assert medium.support == 0 and medium.recall is None
    assert report.to_json()["confusion"]["matrix"][2] == [0, 0, 0, 1]


# ---------------------------------------------------------------- similarity


def test_rouge_l_hand_checked() -> None:
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 tokens of 6 each
    assert rouge_l_score("the cat sat on the mat", "The cat lay on the mat.") == pytest.approx(
        5 / 6
    )
    # LCS = "a c" (2); P = 2/3, R = 2/4 -> F = 2PR/(P+R) = 4/7
    assert rouge_l_score("a b c", "a x c y") == pytest.approx(4 / 7)
    assert rouge_l_score("", "anything") == 0.0
    assert rouge_l_score("Größe über alles", "größe über") == pytest.approx(0.8)


def test_similarity_scorers_with_references() -> None:
    ex = Example(id="s", vars={"q": "x"}, reference="the invoice was refunded today")
    out = Output(text="the invoice was refunded today")
    for kind in ("levenshtein", "rouge-l", "bleu"):
        pytest.importorskip({"levenshtein": "rapidfuzz", "bleu": "sacrebleu"}.get(kind, "json"))
        score = build_scorer({"type": kind, "threshold": 0.5})(ex, out)
        assert score.value == pytest.approx(1.0) and score.passed, kind
        partial = build_scorer({"type": kind, "threshold": 0.99})(
            ex, Output(text="the invoice was refunded yesterday")
        )
        assert 0.0 < (partial.value or 0) < 1.0 and partial.passed is False, kind
    no_ref = build_scorer({"type": "rouge-l"})(
        Example(id="n", vars={"q": "x"}, criteria=("c",)), out
    )
    assert no_ref.unscored and no_ref.reason == "example has no reference output"


def test_levenshtein_value_is_normalised_edit_similarity() -> None:
    pytest.importorskip("rapidfuzz")
    score = build_scorer({"type": "levenshtein", "reference": "kitten"})(EX, Output(text="sitting"))
    assert score.value == pytest.approx(1 - 3 / 7)


def test_embedding_cosine_with_injected_embedder() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.6, 0.8], "c": [-1.0, 0.0]}
    check = embedding_cosine(
        reference="a", embed=lambda texts: [vectors[t] for t in texts], threshold=0.5
    )
    assert check(EX, Output(text="b")).value == pytest.approx(0.6)
    opposite = check(EX, Output(text="c"))
    assert opposite.value == 0.0 and opposite.details["cosine"] == pytest.approx(-1.0)


def test_embedding_cosine_with_sentence_transformers() -> None:
    pytest.importorskip("sentence_transformers")
    check = embedding_cosine(reference="My invoice was charged twice")
    close = check(EX, Output(text="I was billed two times for the same invoice"))
    far = check(EX, Output(text="Please add a dark mode to the app"))
    assert (close.value or 0) > (far.value or 0)


# ---------------------------------------------------------------- registry and custom


def test_custom_scorer_registration_and_coercion() -> None:
    @scorer("mentions-refund")
    def mentions_refund(word: str = "refund") -> ScoreFn:
        def score(example: Example, output: Output) -> bool:
            return word in (output.as_text or "").lower()

        return score

    built = build_scorer({"type": "mentions_refund", "name": "refund?"})
    assert built.name == "refund?"
    result = built(EX, Output(text="We will REFUND"))
    assert result.passed and result.scorer == "refund?"
    assert mentions_refund(word="credit")(EX, Output(text="refund")).passed is False

    @scorer("returns-nan")
    def returns_nan() -> ScoreFn:
        return lambda example, output: math.nan

    nan = returns_nan()(EX, Output(text="x"))
    assert nan.unscored and nan.value is None and "nan" in nan.reason

    @scorer("explodes")
    def explodes() -> ScoreFn:
        def score(example: Example, output: Output) -> Score:
            raise KeyError("boom")

        return score

    crashed = explodes()(EX, Output(text="x"))
    assert crashed.unscored and crashed.reason == "scorer error: KeyError: 'boom'"


def test_registry_errors_carry_hints() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown scorer 'containz' \(hint: did you mean 'contains'\?\)"
    ):
        get_scorer_factory("containz")
    with pytest.raises(ConfigError) as info:
        build_scorer({"type": "label-match", "feild": "category"}, base_dir=None)
    assert "unexpected keyword argument 'feild'" in info.value.problems[0]
    assert "(hint: did you mean 'field'?)" in info.value.problems[0]
    with pytest.raises(ConfigError, match=r"suite\.yaml:7: scorer 'regex': "):
        build_scorer(ScorerSpec.parse({"type": "regex", "value": "("}, where="suite.yaml:7"))
    with pytest.raises(ConfigError, match="missing 'type'"):
        build_scorer({"value": "x"})
    negated_graded = build_scorer({"type": "not-rouge-l"})(
        Example(id="r", vars={"q": "x"}, reference="a b"), Output(text="a b")
    )
    assert negated_graded.unscored and "needs a pass/fail scorer" in negated_graded.reason


def test_score_rejects_nan_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        Score(float("nan"))
    with pytest.raises(ValueError):
        Score(1.5)
    with pytest.raises(ValueError):
        Score(None, passed=True)


async def test_async_scoring_path_handles_sync_scorers() -> None:
    assert (await contains("a").ascore(EX, Output(text="abc"))).passed


# ---------------------------------------------------------------- aggregates


def test_summaries_skip_and_count_unscored() -> None:
    scores = [
        Score.pass_("ok"),
        Score.fail("nope"),
        Score.pass_("ok"),
        Score.skip("judge reply is not JSON: 'blah'"),
        Score.skip("judge reply is not JSON: 'other'"),
        Score.graded(0.25, "partial"),
    ]
    summary = summarize_scores(scores, scorer="s")
    assert summary.total == 6 and summary.scored == 4 and summary.unscored == 2
    assert summary.unscored_reasons == {"judge reply is not JSON": 2}
    assert summary.mean is not None and summary.mean.value == pytest.approx((1 + 0 + 1 + 0.25) / 4)
    assert summary.pass_rate is not None and summary.pass_rate.value == pytest.approx(2 / 3)
    assert summary.pass_rate.n == 3
    empty = summarize_scores([Score.skip("nothing")], scorer="s")
    assert empty.mean is None and empty.pass_rate is None
    json.dumps(summary.to_json())


def test_breakdown_by_tag_key() -> None:
    examples = [
        Example(id="1", vars={"t": "a"}, expected="x", tags=("lang:en", "smoke")),
        Example(id="2", vars={"t": "b"}, expected="x", tags=("lang:de",)),
        Example(id="3", vars={"t": "c"}, expected="x", tags=("lang:en",)),
    ]
    scores = [Score.pass_("ok"), Score.fail("no"), Score.fail("no")]
    by_lang = summarize_by_tag(examples, scores, key="lang")
    assert list(by_lang) == ["de", "en"]
    assert by_lang["en"].pass_rate is not None and by_lang["en"].pass_rate.value == 0.5
    assert set(summarize_by_tag(examples, scores)) == {"lang:en", "lang:de", "smoke"}


def test_refusal_scorer_custom_phrases() -> None:
    check = refusal(phrases=["computer says no"])
    assert not check(EX, Output(text="Computer says no.")).passed
