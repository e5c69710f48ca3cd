"""``roadworthy serve`` as a real process on loopback, called with the official OpenAI SDK."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roadworthy.store import Store

from ..conftest import write_project

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roadworthy.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    root = write_project(tmp_path / "proj", CONFIG)
    token = _cli("keys", "create", "--name", "sdk-test", cwd=root).stdout.strip()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadworthy.cli.main", "serve", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # polls readiness; no assertion on how long it took
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"roadworthy serve exited early:\n{out}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("roadworthy serve never became ready")
        yield base, token, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        (call,) = store.list_calls(trace_id=trace)
    finally:
        store.close()
    assert call["status"] == "ok" and call["route"] == "chat" and call["model"] == "gpt-4o-mini"
