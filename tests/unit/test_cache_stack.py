"""The cache inside a route's stack, built from config."""

from __future__ import annotations

from pathlib import Path

from roadworthy.config import load_project
from roadworthy.models import FakeClock, StackBuilder
from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord
from roadworthy.store.cache import MemoryCache

from ..conftest import write_project
from .test_cache import bag_of_words

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  cheap: {type: scripted}
models:
  small: {provider: cheap, id: small-1, tier: small, price: {input: 1, output: 2}}
routes:
  faq:
    tiers: [small]
    retry: {max_attempts: 2, base_delay_s: 0}
    cache: {ttl_s: 60, max_entries: 10, semantic: {threshold: 0.8}}
  plain:
    tiers: [small]
pipelines:
  triage:
    input: {fields: {text: {type: string}}}
    steps:
      - generate: {prompt: triage, route: faq}
"""


def builder(tmp_path: Path, provider: ScriptedProvider, rows: list[CallRecord]) -> StackBuilder:
    project = load_project(write_project(tmp_path / "proj", CONFIG))
    return StackBuilder(
        project.config,
        provider=lambda name: provider,
        price=lambda name: None,
        recorder=rows.append,
        clock=FakeClock(),
        cache=MemoryCache(),
        embedder=lambda: bag_of_words,
    )


async def test_a_route_with_a_cache_section_answers_repeats_from_it(tmp_path: Path) -> None:
    provider = ScriptedProvider([Reply(text="answer")], name="cheap")
    rows: list[CallRecord] = []
    stack = builder(tmp_path, provider, rows)
    route = stack.route("faq")
    assert all(isinstance(h.provider, Cached) for h in route.all_hops())
    assert not any(isinstance(h.provider, Cached) for h in stack.route("plain").all_hops())
    call = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=3)
    with ctx.bind(ctx.call_context, call):
        for text in (
            "opening hours on Monday",
            "opening hours on Monday",
            "the opening hours on Monday",
        ):
            request = CompletionRequest(messages=(Message("user", text),), model="", temperature=0)
            assert (await route.complete(request)).text == "answer"
    assert len(provider.requests) == 1
    assert [r.cache_outcome for r in rows] == ["miss", "exact", "semantic"]
    assert all(r.route == "faq" and r.model == "small-1" for r in rows)
    assert stack.cache_backend().sizes() == {"faq": 1}
