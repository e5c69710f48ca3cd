"""API keys with limits, and key budgets in the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from roadworthy.errors import ConfigError
from roadworthy.store import Store
from roadworthy.store.budgets import BudgetLedger, BudgetLimit, OverBudget
from roadworthy.store.keys import KeyStore

from ..conftest import copied


def test_key_limits_round_trip(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        keys = KeyStore(store.engine)
        key, token = keys.create("team", budget_usd="12.5", period="month", rpm=30)
        plain, _ = keys.create("plain")
        verified = keys.verify(token)
        assert verified is not None
        assert verified.budget_usd == Decimal("12.5") and verified.budget_period == "month"
        assert verified.rpm == 30 and verified.id == key.id
        listed = {k.id: k for k in keys.list()}
        assert listed[plain.id].budget_usd is None and listed[plain.id].rpm is None
        with pytest.raises(ConfigError):
            keys.create("bad", budget_usd="0")
        with pytest.raises(ConfigError):
            keys.create("bad", rpm=0)
    finally:
        store.close()


def test_key_budget_is_a_ledger_budget(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        limit = BudgetLimit(name="key:abc", limit_usd=Decimal("0.05"), soft=())
        ledger = BudgetLedger(store.engine)
        first = ledger.reserve([limit], Decimal("0.03"))
        ledger.settle(first, Decimal("0.04"))
        with pytest.raises(OverBudget) as refused:
            ledger.reserve([limit], Decimal("0.015"))
        assert refused.value.budget == "key:abc" and not refused.value.downgrade
        (status,) = ledger.status([limit])
        assert status.spent_usd == Decimal("0.04") and status.reserved_usd == 0
    finally:
        store.close()


async def test_the_service_records_chat_calls_on_both_stores(
    tmp_path: Path, store_url: str
) -> None:
    """Plain (lean path) and streamed (FastAPI route) completions, each with its ledger row.

    The trace id a chat request gets must fit the ledger's ``trace_id`` column on every
    store: PostgreSQL enforces its length, SQLite does not.
    """
    import httpx

    from roadworthy.config import load_project
    from roadworthy.pipeline import Workspace
    from roadworthy.providers import Reply, ScriptedProvider
    from roadworthy.server import create_app

    from ..conftest import SCRIPTED_CONFIG, write_project

    config = SCRIPTED_CONFIG.replace(
        "storage: sqlite:///.roadworthy/state.db", f"storage: {store_url}"
    )
    root = write_project(tmp_path / "proj", config + "server: {auth: none}\n")
    good = '{"category": "billing", "priority": "high"}'
    provider = ScriptedProvider([Reply(text=good)] * 3, name="fake")
    workspace = Workspace(load_project(root), providers={"fake": provider})
    app = create_app(workspace)
    hi = [{"role": "user", "content": "hi"}]
    traces = []
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            plain = await client.post(
                "/v1/chat/completions", json={"model": "cheap", "messages": hi}
            )
            assert plain.status_code == 200, plain.text
            traces.append(plain.headers["x-roadworthy-trace-id"])
            streamed = await client.post(
                "/v1/chat/completions", json={"model": "cheap", "messages": hi, "stream": True}
            )
            assert streamed.status_code == 200, streamed.text
            assert "data: [DONE]" in streamed.text
            traces.append(streamed.headers["x-roadworthy-trace-id"])
            ran = await client.post(
                "/v1/pipelines/triage/run", json={"input": {"text": "charged twice"}}
            )
            assert ran.status_code == 200 and ran.json()["status"] == "done", ran.text
            traces.append(ran.json()["trace_id"])
            queued = await client.post(
                "/v1/pipelines/triage/jobs", json={"input": {"text": "later"}}
            )
            assert queued.status_code == 202, queued.text
            job = await client.get(f"/v1/jobs/{queued.json()['jobs'][0]['id']}")
            assert job.status_code == 200 and job.json()["status"] == "queued"
        for trace in traces:
            (call,) = copied(workspace).list_calls(trace_id=trace)
            assert call["status"] == "ok"
    finally:
        await workspace.aclose()
        workspace.close()
