"""``roadworthy serve`` as a real process on loopback, called with the official OpenAI SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from roadworthy.store import Store

from ..conftest import copied, create_key, serving, write_project

openai = pytest.importorskip("openai")

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake:
    type: scripted
    replies:
      - {when: "json please", text: {"category": "billing", "priority": "high"}}
      - {when: "fail please", error: ProviderUnavailable}
      - {text: "hello from roadworthy"}
models:
  cheap: {provider: fake, id: gpt-4o-mini, tier: small}
routes:
  chat: {tiers: [small], retry: {max_attempts: 1}}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    root = write_project(tmp_path / "proj", CONFIG)
    token = create_key(root, "sdk-test")
    with serving(root) as base:
        yield base, token, root


def test_openai_sdk_against_roadworthy_serve(served: tuple[str, str, Path]) -> None:
    base, token, _ = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0)
    reply = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "hello from roadworthy"
    assert reply.usage is not None and reply.usage.completion_tokens == 3

    raw = client.chat.completions.with_raw_response.create(
        model="cheap", messages=[{"role": "user", "content": "hi"}]
    )
    assert float(raw.headers["x-roadworthy-overhead-ms"]) >= 0

    parts = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == (
        "hello from roadworthy"
    )

    as_json = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(as_json.choices[0].message.content or "") == {
        "category": "billing",
        "priority": "high",
    }

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"

    with pytest.raises(openai.APIStatusError) as upstream:
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "fail please"}]
        )
    assert upstream.value.status_code == 502

    stranger = openai.OpenAI(base_url=f"{base}/v1", api_key="rw_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])


def test_ledger_has_every_served_call(served: tuple[str, str, Path]) -> None:
    base, token, root = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    trace = raw.headers["x-roadworthy-trace-id"]
    store = Store.open(f"sqlite:///{root / '.roadworthy' / 'state.db'}")
    try:
        (call,) = copied(store).list_calls(trace_id=trace)
    finally:
        store.close()
    assert call["status"] == "ok" and call["route"] == "chat" and call["model"] == "gpt-4o-mini"
