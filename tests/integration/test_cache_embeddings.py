"""Remote embeddings over real HTTP: the fake upstream's ``/v1/embeddings``, its faults,
and what the semantic cache does when its embedder fails (a recorded miss, never an error).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from roadworthy import errors
from roadworthy.config import load_project
from roadworthy.models import FakeClock, StackBuilder
from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached, CachePolicy
from roadworthy.models.semantic import SemanticIndex
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.providers.embeddings import OpenAIEmbedder
from roadworthy.store import CallRecord
from roadworthy.store.cache import MemoryCache
from roadworthy.testing import Fault, FaultServer
from roadworthy.testing.faults import fake_embedding

from ..conftest import write_project

pytestmark = pytest.mark.integration

KEY = "sk-embed-test-1234567890"
CALL = ctx.CallContext(trace_id="t", pipeline="p", step="s", prompt_id="faq", prompt_version=1)


def ask(text: str) -> CompletionRequest:
    return CompletionRequest(messages=(Message("user", text),), model="m-1", temperature=0)


def test_texts_go_out_in_batches_and_come_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RW_TEST_EMBED_KEY", KEY)
    texts = [f"question number {i} about refunds" for i in range(5)]
    with FaultServer() as server:
        embed = OpenAIEmbedder(
            base_url=server.url + "/v1",
            model="embed-small",
            api_key_env="RW_TEST_EMBED_KEY",
            batch_size=2,
            dimensions=32,
        )
        vectors = embed(texts)
        embed.close()
    assert len(server.requests) == 3  # 2 + 2 + 1
    assert [len(r["json"]["input"]) for r in server.requests] == [2, 2, 1]
    assert all(r["path"] == "/v1/embeddings" for r in server.requests)
    assert server.requests[0]["json"]["model"] == "embed-small"
    assert server.requests[0]["json"]["dimensions"] == 32
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert np.allclose(vectors, [fake_embedding(t, 32) for t in texts])
    assert "embed-small" in embed.name and KEY not in embed.name


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(503), errors.ProviderUnavailable),
        (Fault.status(429, retry_after="3"), errors.RateLimited),
        (Fault.status(401, message=f"bad key {KEY}"), errors.AuthFailed),
        (Fault.status(404), errors.NotFound),
        (Fault.raw(b"<html>502 Bad Gateway</html>"), errors.MalformedResponse),
        (Fault.raw(b'{"data": [{"index": 0}]}'), errors.MalformedResponse),
        (Fault.reset(), errors.ProviderUnavailable),
        (Fault.hang(5.0), errors.Timeout),
    ],
    ids=["503", "429", "401", "404", "html", "no-vector", "reset", "hang"],
)
def test_failures_are_classified_and_never_carry_the_key(
    fault: Fault, error: type[errors.ProviderError], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_TEST_EMBED_KEY", KEY)
    with FaultServer([fault]) as server:
        embed = OpenAIEmbedder(
            base_url=server.url + "/v1",
            model="embed-small",
            api_key_env="RW_TEST_EMBED_KEY",
            # short only where the fault is a hang: a busy machine can take longer than
            # that to answer the others, which would then read as a timeout
            timeout_s=0.3 if fault.kind == "hang" else 30.0,
        )
        with pytest.raises(error) as caught:
            embed(["hello there"])
        embed.close()
    assert KEY not in str(caught.value)
    if isinstance(caught.value, errors.RateLimited):
        assert caught.value.retry_after == 3.0


async def test_a_failing_embedder_degrades_to_a_recorded_miss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryCache()
    provider = ScriptedProvider([Reply(text="9 to 5")], name="p")
    rows: list[CallRecord] = []
    with FaultServer() as server:
        embed = OpenAIEmbedder(base_url=server.url + "/v1", model="e", timeout_s=0.3)
        index = SemanticIndex(embed, backend, name=embed.name)
        wrapper = Cached(
            provider,
            CachePolicy(route="r", threshold=0.8),
            backend,
            model_name="cheap",
            model_id="m-1",
            provider_name="p",
            recorder=rows.append,
            semantic=index,
        )
        with ctx.bind(ctx.call_context, CALL):
            await wrapper.complete(ask("What are your opening hours on Monday?"))
            hit = await wrapper.complete(ask("what are your opening hours on monday please"))
            assert hit.raw is not None and hit.raw["cache"] == "semantic"
            server.push(Fault.status(503), Fault.hang(5.0))
            with caplog.at_level(logging.WARNING, logger="roadworthy.cache"):
                down = await wrapper.complete(ask("opening hours on Monday, please?"))
                slow = await wrapper.complete(ask("Monday opening hours?"))
            again = await wrapper.complete(ask("What are your opening hours on Monday, please?"))
        embed.close()
    assert down.text == slow.text == "9 to 5"
    assert len(provider.requests) == 3  # two degraded lookups went to the model
    assert index.failures == {"ProviderUnavailable": 1, "Timeout": 1}
    assert sum("embedder failed" in r.getMessage() for r in caplog.records) == 2
    assert again.raw is not None and again.raw["cache"] == "semantic"  # recovered
    assert [r.cache_outcome for r in rows] == ["semantic", "semantic"]


CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  cheap: {{type: scripted}}
models:
  small: {{provider: cheap, id: small-1, tier: small}}
routes:
  faq:
    tiers: [small]
    retry: {{max_attempts: 1}}
    cache:
      semantic:
        threshold: 0.8
        embeddings: {{type: openai, base_url: "{url}/v1", model: embed-small, api_key_env: RW_TEST_EMBED_KEY, batch_size: 8, timeout_s: 2}}
pipelines:
  triage:
    input: {{fields: {{text: {{type: string}}}}}}
    steps:
      - generate: {{prompt: triage, route: faq}}
"""


async def test_a_route_configured_with_an_embeddings_endpoint_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_TEST_EMBED_KEY", KEY)
    provider = ScriptedProvider([Reply(text="answer")], name="cheap")
    rows: list[CallRecord] = []
    with FaultServer() as server:
        project = load_project(write_project(tmp_path / "proj", CONFIG.format(url=server.url)))
        stack = StackBuilder(
            project.config,
            provider=lambda name: provider,
            price=lambda name: None,
            recorder=rows.append,
            clock=FakeClock(),
            cache=MemoryCache(),
        )
        route = stack.route("faq")
        with ctx.bind(ctx.call_context, CALL):
            for text in ("how do I reset my password", "how do I reset my password please"):
                assert (await route.complete(ask(text))).text == "answer"
            server.push(Fault.status(503))
            assert (await route.complete(ask("how can I reset my password"))).text == "answer"
    assert len(provider.requests) == 2
    assert [(r.cache_outcome, r.hop_reason) for r in rows] == [
        ("miss", None),
        ("semantic", None),
        ("miss", "cache:embed_failed:ProviderUnavailable"),
    ]
    assert [r["path"] for r in server.requests] == ["/v1/embeddings"] * 3
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
