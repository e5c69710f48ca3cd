"""Exact and semantic cache: key, scoping, TTL, LRU, recording and the near-miss guard."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import pytest

from roadworthy.config.routes import RouteConfig
from roadworthy.models import context as ctx
from roadworthy.models.cache import (
    Cached,
    CachePolicy,
    cache_key,
    canonical_request,
    normalise_text,
    partition_key,
)
from roadworthy.models.semantic import SemanticIndex, near_miss
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message, ResponseFormat
from roadworthy.providers.pricing import Price
from roadworthy.store import CallRecord
from roadworthy.store.cache import CacheBackend, CacheEntry, MemoryCache, StoreCache

PRICE = Price(input=Decimal(1000), output=Decimal(2000))
CALL = ctx.CallContext(trace_id="t", pipeline="p", step="s", prompt_id="faq", prompt_version=1)


def req(
    text: str, *, temperature: float = 0.0, schema: dict[str, object] | None = None
) -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("system", "Answer briefly."), Message("user", text)),
        model="m-1",
        temperature=temperature,
        response_format=ResponseFormat(schema=schema) if schema is not None else None,
    )


def key_of(request: CompletionRequest, call: ctx.CallContext | None = CALL) -> str:
    return cache_key(canonical_request(request, call))


class Wall:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def cached(
    backend: CacheBackend | None = None,
    *,
    policy: CachePolicy | None = None,
    semantic: SemanticIndex | None = None,
    wall: Wall | None = None,
    text: str = "answer",
) -> tuple[Cached, ScriptedProvider, list[CallRecord]]:
    provider = ScriptedProvider([Reply(text=text, input_tokens=100, output_tokens=10)], name="p")
    rows: list[CallRecord] = []
    wrapper = Cached(
        provider,
        policy or CachePolicy(route="r"),
        backend or MemoryCache(),
        model_name="cheap",
        model_id="m-1",
        provider_name="p",
        price=PRICE,
        recorder=rows.append,
        semantic=semantic,
        wall=wall or Wall(),
    )
    return wrapper, provider, rows


# -- the key ---------------------------------------------------------------------------


def test_key_ignores_schema_key_order_whitespace_and_unicode_form() -> None:
    a = req("Café  opening\thours  \n\n", schema={"type": "object", "required": ["a"]})
    b = req("Cafe\u0301 opening hours", schema={"required": ["a"], "type": "object"})
    assert key_of(a) == key_of(b)


def test_key_ignores_timeout_and_metadata_but_not_settings() -> None:
    base = req("hi")
    same = CompletionRequest(
        messages=base.messages, model="m-1", temperature=0.0, timeout_s=3, metadata={"x": "y"}
    )
    assert key_of(base) == key_of(same)
    assert key_of(base) != key_of(req("hi", temperature=0.5))
    assert key_of(base) != key_of(req("hi", schema={"type": "object"}))
    other_model = CompletionRequest(messages=base.messages, model="m-2", temperature=0.0)
    assert key_of(base) != key_of(other_model)
    assert key_of(base) != key_of(req("hi there"))


def test_key_is_scoped_by_prompt_version_and_by_step_without_a_prompt() -> None:
    v2 = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=2)
    assert key_of(req("hi")) != key_of(req("hi"), v2)
    no_prompt_a = ctx.CallContext(trace_id="t", pipeline="p", step="a")
    no_prompt_b = ctx.CallContext(trace_id="t", pipeline="p", step="b")
    assert key_of(req("hi"), no_prompt_a) != key_of(req("hi"), no_prompt_b)
    assert re.fullmatch(r"[0-9a-f]{64}", key_of(req("hi")))


def test_partition_is_the_key_without_the_last_user_message() -> None:
    one = canonical_request(req("opening hours?"), CALL)
    two = canonical_request(req("when are you open?"), CALL)
    assert cache_key(one) != cache_key(two)
    assert partition_key(one) == partition_key(two)
    v2 = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=2)
    assert partition_key(one) != partition_key(canonical_request(req("opening hours?"), v2))


def test_normalise_keeps_line_structure() -> None:
    assert normalise_text("  a   b  \r\n\n c\u00a0 d \n") == "a b\n\nc d"


# -- the wrapper -----------------------------------------------------------------------


async def test_a_repeat_is_an_exact_hit_recorded_at_zero_cost_with_the_saving() -> None:
    wrapper, provider, rows = cached()
    with ctx.bind(ctx.call_context, CALL):
        first = await wrapper.complete(req("hours?"))
        second = await wrapper.complete(req("hours?  "))
    assert first.text == second.text == "answer"
    assert len(provider.requests) == 1
    assert [r.cache_outcome for r in rows] == ["exact"]  # the miss is Recorded's row
    hit = rows[0]
    assert hit.cost_usd == Decimal(0)
    assert hit.saved_usd == Decimal("0.12")  # 100 in * 1000/M + 10 out * 2000/M
    assert hit.prompt_id == "faq" and hit.prompt_version == 1 and hit.model == "m-1"
    assert second.raw is not None and second.raw["cache"] == "exact"


async def test_a_new_prompt_version_never_reads_the_old_versions_entries() -> None:
    wrapper, provider, rows = cached()
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(req("hours?"))
    v2 = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=2)
    with ctx.bind(ctx.call_context, v2):
        await wrapper.complete(req("hours?"))
    assert len(provider.requests) == 2 and rows == []


async def test_sampled_calls_are_cached_only_when_the_route_opts_in() -> None:
    wrapper, provider, _ = cached()
    for _ in range(2):
        await wrapper.complete(req("poem", temperature=0.7))
    assert len(provider.requests) == 2
    opted, provider, rows = cached(policy=CachePolicy(route="r", nondeterministic=True))
    for _ in range(2):
        await opted.complete(req("poem", temperature=0.7))
    assert len(provider.requests) == 1 and rows[0].cache_outcome == "exact"


@pytest.mark.parametrize("backend", ["memory", "store"])
async def test_entries_expire_after_the_route_ttl(backend: str, sqlite_url: str) -> None:
    wall = Wall()
    store = _backend(backend, sqlite_url)
    wrapper, provider, _ = cached(store, policy=CachePolicy(route="r", ttl_s=60), wall=wall)
    await wrapper.complete(req("hours?"))
    wall.t += 59
    await wrapper.complete(req("hours?"))
    assert len(provider.requests) == 1
    wall.t += 2
    await wrapper.complete(req("hours?"))
    assert len(provider.requests) == 2


@pytest.mark.parametrize("backend", ["memory", "store"])
async def test_least_recently_used_entries_are_evicted_past_max_entries(
    backend: str, sqlite_url: str
) -> None:
    wall = Wall()
    store = _backend(backend, sqlite_url)
    wrapper, provider, _ = cached(store, policy=CachePolicy(route="r", max_entries=2), wall=wall)
    for text in ("a", "b"):
        await wrapper.complete(req(text))
        wall.t += 1
    await wrapper.complete(req("a"))  # a is now more recent than b
    wall.t += 1
    await wrapper.complete(req("c"))  # evicts b
    assert store.sizes() == {"r": 2}
    calls_before = len(provider.requests)
    await wrapper.complete(req("a"))
    assert len(provider.requests) == calls_before
    await wrapper.complete(req("b"))
    assert len(provider.requests) == calls_before + 1


def test_store_cache_clear_by_prompt_and_overwrite(sqlite_url: str) -> None:
    store = StoreCache(_store_engine(sqlite_url))
    for key, prompt in (("k1", "faq"), ("k2", "faq"), ("k3", "other")):
        entry = CacheEntry(
            key=key, route="r", model="m", completion={"text": key}, prompt_id=prompt
        )
        store.put(entry, now=1.0, ttl_s=None, max_entries=10)
    overwrite = CacheEntry(
        key="k1", route="r", model="m", completion={"text": "new"}, prompt_id="faq"
    )
    store.put(overwrite, now=2.0, ttl_s=None, max_entries=10)
    got = store.get("k1", 3.0)
    assert got is not None and got.completion == {"text": "new"}
    assert store.clear(prompt_id="faq") == 2
    assert store.sizes() == {"r": 1}
    assert store.clear() == 1


async def test_an_answer_that_fails_the_output_check_is_not_cached() -> None:
    from roadworthy import errors

    def reject(_completion: object) -> object:
        raise errors.OutputInvalid("bad")

    wrapper, provider, _ = cached()
    with ctx.bind(ctx.output_check, reject):
        await wrapper.complete(req("x"))
        await wrapper.complete(req("x"))
    assert len(provider.requests) == 2


async def test_a_broken_backend_never_fails_the_call() -> None:
    class Broken(MemoryCache):
        def get(self, key: str, now: float) -> CacheEntry | None:
            raise ConnectionError("down")

        def put(
            self, entry: CacheEntry, *, now: float, ttl_s: float | None, max_entries: int
        ) -> None:
            raise ConnectionError("down")

    wrapper, _provider, _ = cached(Broken())
    assert (await wrapper.complete(req("x"))).text == "answer"


# -- semantic --------------------------------------------------------------------------


def bag_of_words(texts: object) -> list[list[float]]:
    """A deterministic stand-in embedder: hashed word counts (similar words, similar vectors)."""
    out = []
    for text in texts:  # type: ignore[attr-defined]
        vec = [0.0] * 64
        for word in re.findall(r"\w+", str(text).lower()):
            vec[sum(map(ord, word)) % 64] += 1.0
        out.append(vec)
    return out


async def test_semantic_hit_records_similarity_and_the_guard_blocks_near_misses() -> None:
    backend = MemoryCache()
    index = SemanticIndex(bag_of_words, backend)
    wrapper, provider, rows = cached(
        backend, policy=CachePolicy(route="r", threshold=0.8), semantic=index
    )
    with ctx.bind(ctx.call_context, CALL):
        await wrapper.complete(req("What are your opening hours on Monday?"))
        hit = await wrapper.complete(req("what are your opening hours on monday please"))
        await wrapper.complete(req("What are your opening hours on Tuesday?"))
    assert len(provider.requests) == 2  # the Tuesday question went to the model
    assert [r.cache_outcome for r in rows] == ["semantic"]
    assert rows[0].cache_similarity is not None and 0.8 <= rows[0].cache_similarity < 1.0
    assert hit.raw is not None and math.isclose(hit.raw["similarity"], rows[0].cache_similarity)
    assert index.rejected == {"date": 1}


async def test_semantic_audit_serves_the_fresh_answer_on_a_mismatch() -> None:
    backend = MemoryCache()
    index = SemanticIndex(bag_of_words, backend)
    provider = ScriptedProvider([Reply(text="first", times=1), Reply(text="second")], name="p")
    rows: list[CallRecord] = []
    wrapper = Cached(
        provider,
        CachePolicy(route="r", threshold=0.8, audit_rate=1.0),
        backend,
        model_name="cheap",
        model_id="m-1",
        provider_name="p",
        recorder=rows.append,
        semantic=index,
    )
    await wrapper.complete(req("how do I reset my password"))
    answer = await wrapper.complete(req("how do I reset my password please"))
    assert answer.text == "second"
    assert rows[0].hop_reason == "audit:mismatch"
    assert backend.sizes() == {"r": 1}  # the wrong entry is gone, the fresh one stored


# False hits the guard must refuse, and paraphrases it must let through.
GUARD_TABLE = [
    ("What are your hours on Monday?", "What are your hours on Tuesday?", "date"),
    ("I want to cancel my order", "I don't want to cancel my order", "negation"),
    ("Cancel my subscription", "Do not cancel my subscription", "negation"),
    ("Refund for order 1234", "Refund for order 1235", "number"),
    ("Is a 2 day delivery possible?", "Is a 3 day delivery possible?", "number"),
    ("Do you ship in March?", "Do you ship in April?", "date"),
    ("Can I ship to Paris?", "Can I ship to London?", "entity"),
    ("What does Alice's plan include?", "What does Bob's plan include?", "entity"),
    ("Send it to a@example.com", "Send it to b@example.com", "entity"),
    ("Hours on Monday?", "What are your hours on Monday?", None),
    ("I do not want to cancel", "I don't want to cancel", None),
    ("How do I reset my password?", "What is the way to reset my password?", None),
    ("Can I return shoes after 30 days?", "Is it possible to return shoes after 30 days?", None),
    ("Ship to Paris", "Send it to Paris", None),
]


@pytest.mark.parametrize(("a", "b", "why"), GUARD_TABLE)
def test_near_miss_guard(a: str, b: str, why: str | None) -> None:
    assert near_miss(a, b) == why
    assert near_miss(b, a) == why


def test_route_cache_config() -> None:
    route = RouteConfig.model_validate(
        {
            "cache": {
                "ttl_s": 60,
                "max_entries": 5,
                "semantic": {"threshold": 0.9, "audit_rate": 0.1},
            }
        }
    )
    assert route.cache is not None and route.cache.exact and route.cache.ttl_s == 60
    assert route.cache.semantic is not None and route.cache.semantic.threshold == 0.9
    with pytest.raises(ValueError):
        RouteConfig.model_validate({"cache": {"ttl": 60}})


def _store_engine(url: str) -> object:
    from roadworthy.store import Store

    return Store.open(url).engine


def _backend(kind: str, url: str) -> CacheBackend:
    if kind == "memory":
        return MemoryCache()
    return StoreCache(_store_engine(url))  # type: ignore[arg-type]
