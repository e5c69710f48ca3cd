"""The router and the whole stack inside a workspace, on scripted providers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.errors import ConfigError
from roadworthy.models import FakeClock, StackBuilder
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.store.budgets import DrillLog

from ..conftest import write_project

GOOD = {"category": "billing", "priority": "high"}

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  cheap: {type: scripted}
  cheaper: {type: scripted}
  frontier: {type: scripted}
models:
  small-a: {provider: cheap, id: small-a, tier: small, context_window: 4000, price: {input: 0.2, output: 0.8}}
  small-b: {provider: cheaper, id: small-b, tier: small, context_window: 4000, price: {input: 0.1, output: 0.4}}
  big: {provider: frontier, id: big, tier: large, context_window: 128000, price: {input: 3, output: 15}}
routes:
  triage:
    tiers: [small, large]
    rules: [{min_tokens: 3000, tier: large}]
    cascade: true
    fallbacks: [big]
    retry: {max_attempts: 2, base_delay_s: 0}
    breaker: {min_calls: 2, open_s: 60}
BUDGETS
pipelines:
  triage:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, route: triage, output: schemas/triage.json}
"""


def make(
    tmp_path: Path, replies: dict[str, list[Reply]], budgets: str = ""
) -> tuple[Workspace, dict[str, ScriptedProvider]]:
    root = write_project(tmp_path / "proj", CONFIG.replace("BUDGETS", budgets))
    providers = {name: ScriptedProvider(r, name=name) for name, r in replies.items()}
    for name in ("cheap", "cheaper", "frontier"):
        providers.setdefault(name, ScriptedProvider([], name=name))
    ws = Workspace(load_project(root), providers=dict(providers))
    return ws, providers


async def test_cheapest_model_of_the_tier_answers(tmp_path: Path) -> None:
    ws, p = make(tmp_path, {"cheaper": [Reply(text=GOOD)]})
    result = await ws.pipeline("triage").run({"text": "charged twice"})
    assert result.status == "done" and result.output == GOOD
    (call,) = ws.store.list_calls()
    assert call["model_name"] == "small-b" and call["route"] == "triage"
    assert p["cheap"].requests == [] and p["frontier"].requests == []


async def test_cascade_escalates_when_the_output_fails_its_schema(tmp_path: Path) -> None:
    ws, _ = make(
        tmp_path,
        {"cheaper": [Reply(text={"category": "nope"})], "frontier": [Reply(text=GOOD)]},
    )
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "done" and result.output == GOOD
    calls = sorted(ws.store.list_calls(), key=lambda c: c["id"])
    assert [(c["model_name"], c["hop_reason"]) for c in calls] == [
        ("small-b", None),
        ("big", "escalated:OutputInvalid"),
    ]


async def test_long_input_rule_picks_the_large_tier(tmp_path: Path) -> None:
    ws, p = make(tmp_path, {"frontier": [Reply(text=GOOD)]})
    result = await ws.pipeline("triage").run({"text": "word " * 10_000})
    assert result.status == "done"
    assert p["cheaper"].requests == [] and len(p["frontier"].requests) == 1


async def test_retries_then_falls_back_and_every_attempt_is_a_row(tmp_path: Path) -> None:
    ws, _ = make(
        tmp_path,
        {
            "cheaper": [Reply(error="ProviderUnavailable")],
            "cheap": [Reply(error="RateLimited", retry_after=0)],
            "frontier": [Reply(text=GOOD)],
        },
    )
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "done"
    calls = sorted(ws.store.list_calls(), key=lambda c: c["id"])
    assert [
        (c["model_name"], c["attempt"], c["fallback_depth"], c["hop_reason"]) for c in calls
    ] == [
        ("small-b", 1, 0, None),
        ("small-b", 2, 0, None),
        ("small-a", 1, 1, "ProviderUnavailable"),
        ("small-a", 2, 1, "ProviderUnavailable"),
        ("big", 1, 2, "RateLimited"),
    ]
    assert {c["trace_id"] for c in calls} == {result.trace_id}
    assert [c["cost_usd"] is None for c in calls] == [True, True, False, False, False]


async def test_open_breaker_is_skipped_without_a_call(tmp_path: Path) -> None:
    ws, p = make(
        tmp_path,
        {"cheaper": [Reply(error="Timeout")], "cheap": [Reply(text=GOOD)]},
    )
    pipe = ws.pipeline("triage")
    await pipe.run({"text": "one"})  # small-b fails twice (2 attempts): breaker opens
    assert ws.stack.breakers["small-b"].state == "open"
    before = len(p["cheaper"].requests)
    result = await pipe.run({"text": "two"})
    assert result.status == "done" and len(p["cheaper"].requests) == before


async def test_budget_downgrades_to_a_cheaper_model_when_spent(tmp_path: Path) -> None:
    budgets = """\
budgets:
  tiny: {limit_usd: 0.0000001, period: day, on_exceed: downgrade, scope: model:big}
"""
    ws, p = make(
        tmp_path,
        {"frontier": [Reply(text=GOOD)], "cheaper": [Reply(text=GOOD)]},
        budgets,
    )
    result = await ws.pipeline("triage").run({"text": "word " * 2000})  # rule: large tier
    assert result.status == "done"
    assert p["frontier"].requests == []
    (call,) = ws.store.list_calls()
    assert call["model_name"] == "small-b" and call["hop_reason"] == "downgraded:BudgetExceeded"


async def test_budget_refuses_with_budget_exceeded(tmp_path: Path) -> None:
    budgets = """\
budgets:
  tiny: {limit_usd: 0.0000001, period: day, on_exceed: refuse, scope: global}
"""
    ws, _ = make(tmp_path, {"cheaper": [Reply(text=GOOD)]}, budgets)
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "failed" and result.error_code == "BudgetExceeded"
    assert ws.store.list_calls() == []


async def test_drill_reports_a_broken_hop(tmp_path: Path) -> None:
    from roadworthy.models import run_drill
    from roadworthy.providers.base import CompletionRequest, Message

    ws, _ = make(
        tmp_path,
        {
            "cheaper": [Reply(text=GOOD)],
            "cheap": [Reply(error="AuthFailed")],  # an expired key on the second hop
            "frontier": [Reply(text=GOOD)],
        },
    )
    router = ws.route("triage")
    log = DrillLog(ws.store.engine)

    def record(outcome: object, source: str) -> None:
        assert ws.stack.drill_recorder is not None
        ws.stack.drill_recorder(outcome, source)  # type: ignore[arg-type]

    request = CompletionRequest(messages=(Message("user", "hi"),), model="")
    report = await run_drill(router, [request], recorder=record)
    assert [(o.model_name, o.ok) for o in report.outcomes] == [
        ("small-b", True),
        ("small-a", False),
        ("big", True),
    ]
    assert not report.ok and report.outcomes[1].error_class == "AuthFailed"
    assert [(r["hop"], r["status"]) for r in log.latest("triage")] == [
        (0, "ok"),
        (1, "failed"),
        (2, "ok"),
    ]
    drilled = [c for c in ws.store.list_calls(limit=100) if c["status"] == "drill"]
    assert drilled and all(c["cost_usd"] == 0 for c in drilled)
    assert all(b.state == "closed" for b in ws.stack.breakers.values())


def test_stack_builder_refuses_budgets_over_unpriced_models(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "proj",
        CONFIG.replace("BUDGETS", "budgets:\n  all: {limit_usd: 1, scope: global}\n").replace(
            ", price: {input: 3, output: 15}", ""
        ),
    )
    project = load_project(root)
    builder = StackBuilder(
        project.config,
        provider=lambda name: ScriptedProvider([], name=name),
        price=lambda name: None,
        ledger=object(),  # type: ignore[arg-type]
        clock=FakeClock(),
    )
    with pytest.raises(ConfigError, match="no price"):
        builder.route("triage")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("fallbacks: [big]", "fallbacks: [big, small-a, big]"),
        ("fallbacks: [big]", "fallbacks: [bigg]"),
        ("tiers: [small, large]", "tiers: [small, huge]"),
        ("rules: [{min_tokens: 3000, tier: large}]", "rules: [{min_tokens: 300000, tier: large}]"),
        (
            "    breaker: {min_calls: 2, open_s: 60}",
            "    budget: nope\n    breaker: {min_calls: 2}",
        ),
    ],
)
def test_route_config_errors_name_the_route(tmp_path: Path, patch: str, message: str) -> None:
    root = write_project(tmp_path / "proj", CONFIG.replace("BUDGETS", "").replace(patch, message))
    with pytest.raises(ConfigError) as info:
        load_project(root)
    text = str(info.value)
    assert "route 'triage'" in text and "roadworthy.yaml:" in text
    expected = {
        "fallbacks: [big, small-a, big]": "loops",
        "fallbacks: [bigg]": "did you mean 'big'",
        "tiers: [small, huge]": "no model has tier 'huge'",
        "rules: [{min_tokens: 300000, tier: large}]": "fits",
    }.get(message, "unknown budget")
    assert expected in text


async def test_model_step_is_a_one_model_route_with_a_single_attempt(tmp_path: Path) -> None:
    config = CONFIG.replace("BUDGETS", "").replace("route: triage", "model: small-a")
    root = write_project(tmp_path / "proj", config)
    provider = ScriptedProvider([Reply(error="ProviderUnavailable")], name="cheap")
    ws = Workspace(load_project(root), providers={"cheap": provider})
    result = await ws.pipeline("triage").run({"text": "hello"})
    assert result.status == "failed" and len(provider.requests) == 1
    (call,) = ws.store.list_calls()
    assert call["attempt"] == 1 and call["cost_usd"] is None and call["route"] == "small-a"
    assert Decimal(0) == Decimal(0)
