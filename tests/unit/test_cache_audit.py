"""Audits of semantic hits: structured outputs by value, free text by an LLM judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.errors import ConfigError
from roadworthy.models import FakeClock, StackBuilder
from roadworthy.models import context as ctx
from roadworthy.models.audit import rubric_answer_judge
from roadworthy.models.cache import AnswerJudge, Cached, CachePolicy
from roadworthy.models.semantic import SemanticIndex
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message, ResponseFormat
from roadworthy.store import CallRecord, Store
from roadworthy.store.cache import MemoryCache, cache_stats

from ..conftest import write_project
from .test_cache import bag_of_words

CALL = ctx.CallContext(trace_id="t", pipeline="p", step="s", prompt_id="faq", prompt_version=1)
FIRST = "How do I reset my password?"
PARAPHRASE = "How do I reset my password please?"


def verdict(score: int) -> Reply:
    return Reply(text={"reason": f"scored {score}", "score": score}, when="## Reference answer")


def ask(text: str, *, schema: dict[str, object] | None = None) -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("user", text),),
        model="m-1",
        temperature=0,
        response_format=ResponseFormat(schema=schema) if schema else None,
    )


def audited(
    answers: list[Reply], judge: AnswerJudge | None
) -> tuple[Cached, ScriptedProvider, list[CallRecord], MemoryCache]:
    backend = MemoryCache()
    model = ScriptedProvider(answers, name="p")
    rows: list[CallRecord] = []
    wrapper = Cached(
        model,
        CachePolicy(route="r", threshold=0.8, audit_rate=1.0),
        backend,
        model_name="cheap",
        model_id="m-1",
        provider_name="p",
        recorder=rows.append,
        semantic=SemanticIndex(bag_of_words, backend),
        judge=judge,
    )
    return wrapper, model, rows, backend


# Texts, not Reply objects: a Reply counts its uses, so it must not be shared by tests.
FIRST_TEXT = "Open Settings, choose Security, then Reset password."
SAME_MEANING = "Go to Settings > Security and press Reset password."
OTHER_MEANING = "Email support and they will reset it within 24 hours."


def first_answer() -> Reply:
    return Reply(text=FIRST_TEXT, times=1)


@pytest.mark.parametrize(
    ("fresh", "score", "outcome", "served"),
    [
        (SAME_MEANING, 5, "audit:match", FIRST_TEXT),
        (OTHER_MEANING, 1, "audit:mismatch", OTHER_MEANING),
    ],
    ids=["same-meaning", "different-meaning"],
)
async def test_free_text_audits_ask_the_judge(
    fresh: str, score: int, outcome: str, served: str
) -> None:
    judge_model = ScriptedProvider([verdict(score)], name="judge")
    judge = rubric_answer_judge(judge_model, "judge-1")
    wrapper, model, rows, backend = audited([first_answer(), Reply(text=fresh)], judge)
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(ask(FIRST))
        answer = await wrapper.complete(ask(PARAPHRASE))
    assert answer.text == served
    assert [r.hop_reason for r in rows] == [outcome]
    assert len(model.requests) == 2 and len(judge_model.requests) == 1
    sent = judge_model.requests[0].messages[-1].content
    # the judge grades the cached answer against the fresh one, for the asked question
    assert PARAPHRASE in sent
    assert f"## Response to grade\n{FIRST_TEXT}" in sent
    assert f"## Reference answer (for comparison)\n{fresh}" in sent
    assert backend.sizes() == {"r": 1}  # a wrong entry is replaced, a right one kept


async def test_a_judge_without_a_verdict_leaves_the_hit_standing() -> None:
    judge_model = ScriptedProvider(
        [Reply(text="I think they are similar", times=1), Reply(error="ProviderUnavailable")],
        name="judge",
    )
    wrapper, _, rows, _ = audited(
        [first_answer(), Reply(text=OTHER_MEANING)], rubric_answer_judge(judge_model, "judge-1")
    )
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(ask(FIRST))
        unparsed = await wrapper.complete(ask(PARAPHRASE))
        failed = await wrapper.complete(ask("How do I reset my password, please?"))
    assert unparsed.text == failed.text == FIRST_TEXT
    assert [r.hop_reason for r in rows] == ["audit:unjudged", "audit:unjudged"]


async def test_structured_outputs_compare_by_value_without_the_judge() -> None:
    judge_model = ScriptedProvider([verdict(5)], name="judge")
    schema: dict[str, object] = {"type": "object"}
    wrapper, _, rows, _ = audited(
        [
            Reply(text={"category": "account", "urgent": False}, times=1),
            Reply(text={"urgent": False, "category": "account"}, times=1),
            Reply(text={"category": "billing", "urgent": False}),
        ],
        rubric_answer_judge(judge_model, "judge-1"),
    )
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(ask(FIRST, schema=schema))
        same = await wrapper.complete(ask(PARAPHRASE, schema=schema))
        other = await wrapper.complete(ask("How do I reset my password, please?", schema=schema))
    assert json.loads(same.text) == {"category": "account", "urgent": False}
    assert json.loads(other.text)["category"] == "billing"
    assert [r.hop_reason for r in rows] == ["audit:match", "audit:mismatch"]
    assert judge_model.requests == []


async def test_identical_free_text_needs_no_judge() -> None:
    judge_model = ScriptedProvider([verdict(1)], name="judge")
    wrapper, _, rows, _ = audited(
        [Reply(text="Settings, then Security.")], rubric_answer_judge(judge_model, "judge-1")
    )
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(ask(FIRST))
        await wrapper.complete(ask(PARAPHRASE))
    assert [r.hop_reason for r in rows] == ["audit:match"]
    assert judge_model.requests == []


CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  cheap: {type: scripted}
  judging: {type: scripted}
models:
  small: {provider: cheap, id: small-1, tier: small}
  grader: {provider: judging, id: grader-1, tier: large}
routes:
  faq:
    tiers: [small]
    cache: {semantic: {threshold: 0.8, audit_rate: 1.0, judge: JUDGE}}
pipelines:
  triage:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, route: faq}
"""


async def test_the_route_config_names_the_judge_model(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "proj", CONFIG.replace("JUDGE", "grader")))
    providers = {
        "cheap": ScriptedProvider([first_answer(), Reply(text=OTHER_MEANING)], name="cheap"),
        "judging": ScriptedProvider([verdict(2)], name="judging"),
    }
    rows: list[CallRecord] = []
    stack = StackBuilder(
        project.config,
        provider=lambda name: providers[name],
        price=lambda name: None,
        recorder=rows.append,
        clock=FakeClock(),
        cache=MemoryCache(),
        embedder=lambda: bag_of_words,
    )
    route = stack.route("faq")
    with ctx.bind(ctx.call_context, CALL):
        await route.complete(ask(FIRST))
        answer = await route.complete(ask(PARAPHRASE))
    assert answer.text == OTHER_MEANING
    judged = [r for r in rows if r.model == "grader-1"]
    assert len(judged) == 1 and judged[0].hop_reason == "judge:cache-audit"
    assert providers["judging"].requests[0].model == "grader-1"
    assert [r.hop_reason for r in rows if r.cache_outcome == "semantic"] == ["audit:mismatch"]


def test_an_unknown_judge_model_is_a_config_error(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "proj", CONFIG.replace("JUDGE", "gpt-9")))
    stack = StackBuilder(
        project.config,
        provider=lambda name: ScriptedProvider(name=name),
        price=lambda name: None,
        cache=MemoryCache(),
        embedder=lambda: bag_of_words,
    )
    with pytest.raises(ConfigError, match=r"routes\.faq\.cache\.semantic\.judge: no model 'gpt-9'"):
        stack.route("faq")


async def test_cache_stats_count_judged_audits_apart_from_unjudged_ones(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    judge_model = ScriptedProvider(
        [
            Reply(text={"reason": "same steps", "score": 5}, times=1),
            Reply(text={"reason": "other advice", "score": 1}, times=1),
            Reply(text="no idea"),
        ],
        name="judge",
    )
    model = ScriptedProvider(
        [
            first_answer(),
            Reply(text=SAME_MEANING, times=1),
            Reply(text=OTHER_MEANING, times=1),
            Reply(text=SAME_MEANING),
        ],
        name="p",
    )
    backend = MemoryCache()
    wrapper = Cached(
        model,
        CachePolicy(route="r", threshold=0.8, audit_rate=1.0),
        backend,
        model_name="cheap",
        model_id="m-1",
        provider_name="p",
        recorder=store.record_call,
        semantic=SemanticIndex(bag_of_words, backend),
        judge=rubric_answer_judge(judge_model, "judge-1"),
    )
    questions = [
        FIRST,  # miss
        PARAPHRASE,  # judged the same: match
        "How do I reset my password, please?",  # judged different: mismatch, entry replaced
        "Please, how do I reset my password?",  # no verdict: unjudged
    ]
    try:
        with ctx.bind(ctx.call_context, CALL), ctx.bind(ctx.route_name, "r"):
            for question in questions:
                await wrapper.complete(ask(question))
        (stats,) = cache_stats(store.engine)
    finally:
        store.close()
    assert (stats.semantic_hits, stats.audited, stats.audit_mismatches) == (3, 2, 1)
    assert stats.audit_unjudged == 1
    assert stats.wrong_hit_rate == 0.5  # one mismatch of two verdicts; unjudged left out
