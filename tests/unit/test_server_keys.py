"""Per-key budgets and RPM: stored with the key, enforced by the model stack, recorded."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app as cli_app
from roadworthy.config import load_project
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.server import create_app
from roadworthy.store.keys import KeyStore

from ..conftest import copied, write_project

# $1000 per million tokens: $0.001 a token, so a 40-token call costs $0.04.
CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake: {type: scripted}
models:
  priced:
    provider: fake
    id: priced-model
    tier: small
    price: {input: 1000, output: 1000}
routes:
  chat: {tiers: [small], retry: {max_attempts: 1}}
pipelines:
  triage:
    input:
      fields:
        text: {type: string, max_chars: 500}
    steps:
      - generate: {prompt: triage, model: priced, output: schemas/triage.json}
"""

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = write_project(tmp_path / "proj", CONFIG)
    replies = [
        Reply(when="Ticket:", text={"category": "billing", "priority": "high"}),
        Reply(text="hello", input_tokens=20, output_tokens=20),
    ]
    return Workspace(load_project(root), providers={"fake": ScriptedProvider(replies, name="fake")})


def client_for(workspace: Workspace, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(workspace)),
        base_url="http://test",
        headers={"authorization": f"Bearer {token}"},
    )


async def test_key_over_budget_gets_insufficient_quota(workspace: Workspace) -> None:
    keys = KeyStore(workspace.store.engine)
    capped, capped_token = keys.create("capped", budget_usd="0.05", period="day")
    _, free_token = keys.create("uncapped")
    client = client_for(workspace, capped_token)

    first = await client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200, first.text
    # $0.04 spent; the next call's estimate (15 tokens, $0.015) does not fit in $0.05.
    refused = await client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    assert f"key:{capped.id}" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1

    # Another key is not held to this key's budget.
    other = await client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {free_token}"}
    )
    assert other.status_code == 200, other.text

    calls = copied(workspace).list_calls()
    spent = [c for c in calls if c["api_key_id"] == capped.id]
    assert len(spent) == 1 and Decimal(str(spent[0]["cost_usd"])) == Decimal("0.04")
    assert sum(1 for c in calls if c["api_key_id"] not in (None, capped.id)) == 1
    assert all(capped_token not in str(value) for c in calls for value in c.values())


async def test_key_over_rpm_gets_429_with_retry_after(workspace: Workspace) -> None:
    keys = KeyStore(workspace.store.engine)
    _, token = keys.create("slow", rpm=2)
    _, other_token = keys.create("other", rpm=2)
    client = client_for(workspace, token)
    for _ in range(2):
        ok = await client.post("/v1/chat/completions", json=CHAT)
        assert ok.status_code == 200, ok.text
    limited = await client.post("/v1/chat/completions", json=CHAT)
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # A refused request never reached the model: two calls in the ledger, not three.
    assert len(copied(workspace).list_calls()) == 2
    # The limit is the key's, not the route's: another key still gets through.
    other = await client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {other_token}"}
    )
    assert other.status_code == 200, other.text


async def test_pipeline_calls_are_recorded_and_budgeted_per_key(workspace: Workspace) -> None:
    keys = KeyStore(workspace.store.engine)
    key, token = keys.create("pipeline", budget_usd=1)
    resp = await client_for(workspace, token).post(
        "/v1/pipelines/triage/run", json={"input": {"text": "charged twice"}}
    )
    assert resp.status_code == 200, resp.text
    (call,) = copied(workspace).list_calls()
    assert call["api_key_id"] == key.id


async def test_pipeline_run_over_a_key_limit_is_429(workspace: Workspace) -> None:
    keys = KeyStore(workspace.store.engine)
    _, token = keys.create("one-a-minute", rpm=1)
    client = client_for(workspace, token)
    url, item = "/v1/pipelines/triage/run", {"input": {"text": "charged twice"}}
    assert (await client.post(url, json=item)).status_code == 200
    limited = await client.post(url, json=item)
    assert limited.status_code == 429, limited.text
    body = limited.json()
    assert body["status"] == "failed" and body["error"]["code"] == "RateLimited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_keys_cli_creates_and_lists_limits(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", CONFIG)
    runner = CliRunner()
    made = runner.invoke(
        cli_app,
        [
            "keys",
            "create",
            "--name",
            "team-a",
            "--budget",
            "5",
            "--period",
            "month",
            "--rpm",
            "30",
            "-p",
            str(root),
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("rw_")
    listed = runner.invoke(cli_app, ["keys", "list", "-p", str(root)])
    assert listed.exit_code == 0 and "limits" in listed.stdout
    ws = Workspace(load_project(root))
    try:
        (key,) = KeyStore(ws.store.engine).list()
    finally:
        ws.store.close()
    assert (key.budget_usd, key.budget_period, key.rpm) == (Decimal(5), "month", 30)
    bad = runner.invoke(
        cli_app, ["keys", "create", "--name", "b", "--period", "week", "-p", str(root)]
    )
    assert bad.exit_code == 2
    negative = runner.invoke(
        cli_app, ["keys", "create", "--name", "b", "--budget", "-1", "-p", str(root)]
    )
    assert negative.exit_code == 2
