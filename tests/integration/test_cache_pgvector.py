"""The semantic cache on PostgreSQL: pgvector when the server has it, else the in-process
index, said once in the log. Both run against the real PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from roadworthy.config import load_project
from roadworthy.models import FakeClock, StackBuilder
from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached, CachePolicy, canonical_request, partition_key
from roadworthy.models.semantic import SemanticIndex
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord, Store
from roadworthy.store.cache import StoreCache
from roadworthy.store.pgvector import PgVectorSearch

from ..conftest import write_project
from ..unit.test_cache import bag_of_words

pytestmark = pytest.mark.integration

CALL = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=1)


def ask(text: str) -> CompletionRequest:
    return CompletionRequest(messages=(Message("user", text),), model="m-1", temperature=0)


async def test_pgvector_keeps_and_ranks_the_vectors_when_the_extension_exists(
    postgres_url: str,
) -> None:
    store = Store.open(postgres_url)
    try:
        why = PgVectorSearch.unavailable_reason(store.engine)
        if why is not None:
            # Not a missing service: a server without the extension is a supported setup,
            # covered by the fallback test below, so this skips even where services are required.
            pytest.skip(f"the pgvector extension is not available on this PostgreSQL: {why}")
        backend = StoreCache(store.engine)
        pgvector = PgVectorSearch.open(store.engine)
        index = SemanticIndex(bag_of_words, backend, pgvector=pgvector)
        provider = ScriptedProvider([Reply(text="Settings, then Security")], name="p")
        wrapper = Cached(
            provider,
            CachePolicy(route="r", threshold=0.8),
            backend,
            model_name="m",
            model_id="m-1",
            provider_name="p",
            semantic=index,
        )
        question = "how do I reset my password please"
        with ctx.bind(ctx.call_context, CALL):
            await wrapper.complete(ask("how do I reset my password"))
            hit = await wrapper.complete(ask(question))
        assert hit.raw is not None and hit.raw["cache"] == "semantic"
        assert len(provider.requests) == 1
        assert index._partitions == {}  # nothing was held in process
        assert pgvector is not None
        partition = partition_key(canonical_request(ask(question), CALL), index.name)
        assert partition is not None
        vector = index.encode(question).tolist()
        found = pgvector.nearest(partition, vector, 5, 0.0)
        assert [q for _, q, _ in found] == ["how do I reset my password"]
        assert found[0][2] == pytest.approx(hit.raw["similarity"], abs=1e-5)
        backend.clear()  # vectors go with their entries (ON DELETE CASCADE)
        assert pgvector.nearest(partition, vector, 5, 0.0) == []
    finally:
        store.close()


CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  cheap: {type: scripted}
models:
  small: {provider: cheap, id: small-1, tier: small}
routes:
  faq:
    tiers: [small]
    cache: {semantic: {threshold: 0.8}}
  other:
    tiers: [small]
    cache: {semantic: {threshold: 0.9, ann_above: 500}}
pipelines:
  triage:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, route: faq}
"""


async def test_without_pgvector_the_in_process_index_serves_and_says_so_once(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(postgres_url)
    try:
        provider = ScriptedProvider([Reply(text="answer")], name="cheap")
        rows: list[CallRecord] = []
        stack = StackBuilder(
            load_project(write_project(tmp_path / "proj", CONFIG)).config,
            provider=lambda name: provider,
            price=lambda name: None,
            recorder=rows.append,
            clock=FakeClock(),
            cache=StoreCache(store.engine),
            embedder=lambda: bag_of_words,
        )
        with caplog.at_level(logging.WARNING, logger="roadworthy.cache"):
            faq, other = stack.route("faq"), stack.route("other")  # two indexes, one check
        if PgVectorSearch.unavailable_reason(store.engine) is None:
            pytest.skip("pgvector is installed on this PostgreSQL: there is no fallback to test")
        said = [r.getMessage() for r in caplog.records if "pgvector" in r.getMessage()]
        assert len(said) == 1 and "in-process index" in said[0]
        with ctx.bind(ctx.call_context, CALL):
            for route in (faq, other):
                await route.complete(ask("how do I reset my password"))
                await route.complete(ask("how do I reset my password please"))
        assert len(provider.requests) == 1  # the second route shares the first's entry
        assert [r.cache_outcome for r in rows] == ["miss", "semantic", "exact", "semantic"]
    finally:
        store.close()
