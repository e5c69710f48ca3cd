"""Cache benchmarks: lookup latency, and what a semantic threshold buys and risks.

1. Exact lookup (key hash + backend ``get`` of a present key), p50/p99 in ms, at 10k
   entries on the store (SQLite WAL), Redis (when reachable) and memory; with ``--large``
   also 1M entries on SQLite.
2. Semantic lookup over one partition (candidates, exact re-scoring, guard) at 10k stored
   384-d vectors (exact search, the default up to 10k) and 100k (exact search as the
   peer, and the usearch HNSW index with its recall@1 against exact search), the time to
   load a partition as a process opening the store does, plus the cost of embedding the
   query with the bundled all-MiniLM-L6-v2 on CPU.
3. A workload written for this benchmark: FAQ-style intents, each asked verbatim several
   times, in paraphrases (which must hit) and as near misses that change the answer
   (another day, number, place, a negation: which must not). Per threshold: share of calls
   saved (hits / calls) and wrong hits (a served answer that is not the right one) / calls,
   with and without the near-miss guard, and the exact cache alone as the baseline.

Prints JSON. Run: ``python bench/cache.py`` (``--large`` adds the 1M-entry run).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached, CachePolicy, cache_key, canonical_request
from roadworthy.models.semantic import SemanticIndex, VectorSet, near_miss
from roadworthy.providers.base import Completion, CompletionRequest, Message, Usage
from roadworthy.store import Store
from roadworthy.store.cache import CacheBackend, CacheEntry, MemoryCache, RedisCache, StoreCache
from roadworthy.store.tables import cache_entries

# -- workload: (intent, phrasings that share its answer, near misses with their own answer) --

INTENTS: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    (
        "hours-mon",
        [
            "What are your opening hours on Monday?",
            "When do you open on Monday?",
            "On Monday, what time do you open?",
            "what are the opening hours on monday",
        ],
        [
            ("hours-tue", "What are your opening hours on Tuesday?"),
            ("hours-sun", "What are your opening hours on Sunday?"),
        ],
    ),
    (
        "cancel-how",
        [
            "How do I cancel my subscription?",
            "How can I cancel my subscription?",
            "What's the way to cancel my subscription?",
            "Cancel my subscription, how?",
        ],
        [
            ("cancel-not", "I don't want to cancel my subscription, what do I do?"),
            ("pause-how", "How do I pause my subscription?"),
        ],
    ),
    (
        "reset-password",
        [
            "How do I reset my password?",
            "How can I reset my password?",
            "I forgot my password, how do I reset it?",
            "password reset - how?",
        ],
        [("reset-email", "How do I reset my email address?")],
    ),
    (
        "return-30",
        [
            "Can I return shoes after 30 days?",
            "Is it possible to return shoes after 30 days?",
            "Can shoes be returned after 30 days?",
        ],
        [
            ("return-90", "Can I return shoes after 90 days?"),
            ("return-not", "Can I not return shoes after 30 days?"),
        ],
    ),
    (
        "ship-paris",
        ["Do you ship to Paris?", "Can you deliver to Paris?", "Is shipping to Paris available?"],
        [("ship-london", "Do you ship to London?"), ("ship-tokyo", "Do you ship to Tokyo?")],
    ),
    (
        "refund-time",
        [
            "How long does a refund take?",
            "How long do refunds take?",
            "How many days until I get my refund?",
        ],
        [("refund-no", "Why did I get no refund?")],
    ),
    (
        "order-1234",
        ["Where is order 1234?", "What is the status of order 1234?", "Track order 1234"],
        [("order-4321", "Where is order 4321?"), ("order-1235", "Where is order 1235?")],
    ),
    (
        "price-basic",
        [
            "How much is the Basic plan?",
            "What does the Basic plan cost?",
            "What is the price of the Basic plan?",
        ],
        [("price-pro", "How much is the Pro plan?")],
    ),
    (
        "delivery-2",
        [
            "Can I get delivery in 2 days?",
            "Is 2 day delivery possible?",
            "Do you offer delivery within 2 days?",
        ],
        [("delivery-5", "Can I get delivery in 5 days?")],
    ),
    (
        "gift-wrap",
        [
            "Do you offer gift wrapping?",
            "Can you gift wrap my order?",
            "Is gift wrapping available?",
        ],
        [("gift-card", "Do you offer gift cards?")],
    ),
    (
        "change-address",
        [
            "How do I change my delivery address?",
            "Can I change my delivery address?",
            "How can I update the delivery address?",
        ],
        [("change-billing", "How do I change my billing address?")],
    ),
    (
        "pay-paypal",
        ["Can I pay with PayPal?", "Do you accept PayPal?", "Is PayPal accepted?"],
        [("pay-bitcoin", "Can I pay with Bitcoin?")],
    ),
    (
        "hours-dec24",
        [
            "Are you open on December 24?",
            "Do you open on December 24?",
            "Is the store open on December 24?",
        ],
        [
            ("hours-dec25", "Are you open on December 25?"),
            ("hours-jan1", "Are you open on January 1?"),
        ],
    ),
    (
        "student-discount",
        [
            "Do you have a student discount?",
            "Is there a student discount?",
            "Can students get a discount?",
        ],
        [("senior-discount", "Do you have a senior discount?")],
    ),
    (
        "warranty-2y",
        [
            "Is the warranty 2 years?",
            "Does the warranty last 2 years?",
            "Is there a 2 year warranty?",
        ],
        [("warranty-3y", "Is the warranty 3 years?")],
    ),
    (
        "delete-account",
        [
            "How do I delete my account?",
            "How can I delete my account?",
            "I want to delete my account, how?",
        ],
        [("delete-not", "I do not want to delete my account, was it deleted?")],
    ),
]
REPEATS = 3  # each intent's first phrasing is asked this many times in the stream


def workload(seed: int = 7) -> list[tuple[str, str]]:
    """The call stream: (right answer id, question), shuffled with a fixed seed."""
    stream: list[tuple[str, str]] = []
    for answer, phrasings, misses in INTENTS:
        stream += [(answer, phrasings[0])] * REPEATS
        stream += [(answer, p) for p in phrasings[1:]]
        stream += list(misses)
    random.Random(seed).shuffle(stream)
    return stream


class Oracle:
    """The model: answers each question with its right answer id (usage priced later)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.name = "oracle"
        self.answers = answers
        self.calls = 0

    @property
    def capabilities(self) -> Any:
        from roadworthy.providers.base import Capabilities

        return Capabilities()

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        text = self.answers[request.messages[-1].content]
        return Completion(text, "stop", Usage(100, 10), request.model, "oracle")

    async def aclose(self) -> None:
        return None


def _request(question: str) -> CompletionRequest:
    return CompletionRequest(
        messages=(Message("system", "Answer the customer."), Message("user", question)),
        model="m",
        temperature=0.0,
    )


async def run_workload(
    stream: Sequence[tuple[str, str]],
    embed: Any,
    threshold: float | None,
    guard: bool,
) -> dict[str, Any]:
    answers = {q: a for a, q in stream}
    oracle = Oracle(answers)
    backend = MemoryCache()
    index = SemanticIndex(embed, backend) if threshold is not None else None
    if index is not None and not guard:
        import roadworthy.models.semantic as sem

        original = sem.near_miss
        sem.near_miss = lambda a, b: None  # type: ignore[assignment]
    wrapper = Cached(
        oracle,
        CachePolicy(route="bench", threshold=threshold),
        backend,
        model_name="m",
        model_id="m",
        provider_name="oracle",
        semantic=index,
    )
    wrong = hits = 0
    call = ctx.CallContext(trace_id="b", prompt_id="faq", prompt_version=1)
    try:
        with ctx.bind(ctx.call_context, call):
            for right, question in stream:
                completion = await wrapper.complete(_request(question))
                if completion.raw is not None and "cache" in completion.raw:
                    hits += 1
                    wrong += completion.text != right
    finally:
        if index is not None and not guard:
            sem.near_miss = original
    n = len(stream)
    return {
        "threshold": threshold,
        "guard": guard,
        "calls": n,
        "hits": hits,
        "saved_share": round(hits / n, 4),
        "wrong_hits": wrong,
        "wrong_share": round(wrong / n, 4),
    }


# -- latency -------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(samples, 0.5) * 1000, 4),
        "p99_ms": round(_pct(samples, 0.99) * 1000, 4),
        "mean_ms": round(statistics.fmean(samples) * 1000, 4),
    }


def _keys(n: int) -> list[str]:
    return [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(n)]


def fill_sql(engine: sa.Engine, n: int) -> list[str]:
    keys = _keys(n)
    batch = 20_000
    created = sa.func.current_timestamp()
    with engine.begin() as conn:
        for start in range(0, n, batch):
            rows = [
                {
                    "key": k,
                    "route": "bench",
                    "model": "m",
                    "completion": {"text": "an answer of moderate length " * 4},
                    "hits": 0,
                    "used_at": 0.0,
                    "expires_at": None,
                }
                for k in keys[start : start + batch]
            ]
            conn.execute(cache_entries.insert().values(created_at=created), rows)
    return keys


def time_exact(backend: CacheBackend, keys: list[str], lookups: int) -> dict[str, float]:
    rng = random.Random(1)
    samples = []
    requests = [_request(f"question {i}") for i in range(lookups)]
    call = ctx.CallContext(trace_id="b", prompt_id="faq", prompt_version=1)
    for i in range(lookups):
        key = keys[rng.randrange(len(keys))]
        t0 = time.perf_counter()
        cache_key(canonical_request(requests[i], call))  # the key is part of every lookup
        entry = backend.get(key, 1.0)
        samples.append(time.perf_counter() - t0)
        assert entry is not None
    return _summary(samples)


def exact_latency(large: bool) -> list[dict[str, Any]]:
    out = []
    sizes = [10_000] + ([1_000_000] if large else [])
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
            t0 = time.perf_counter()
            keys = fill_sql(store.engine, n)
            fill_s = time.perf_counter() - t0
            out.append(
                {
                    "backend": "store-sqlite",
                    "entries": n,
                    "fill_s": round(fill_s, 1),
                    **time_exact(StoreCache(store.engine), keys, 2000),
                }
            )
            store.close()
    memory = MemoryCache()
    from roadworthy.store.cache import CacheEntry

    keys = _keys(10_000)
    for k in keys:
        memory.put(CacheEntry(k, "bench", "m", {"text": "x"}), now=0, ttl_s=None, max_entries=10**9)
    out.append({"backend": "memory", "entries": 10_000, **time_exact(memory, keys, 2000)})
    url = os.environ.get("ROADWORTHY_BENCH_REDIS", "redis://127.0.0.1:6379/14")
    try:
        redis_cache = RedisCache(url, namespace="rw:bench")
        redis_cache.client.ping()
    except Exception as exc:  # Redis is optional here
        out.append({"backend": "redis", "skipped": str(exc)[:200]})
        return out
    redis_cache.clear()
    pipe = redis_cache.client.pipeline(transaction=False)
    for k in keys:
        pipe.set(
            redis_cache._entry(k),
            json.dumps(
                {
                    "key": k,
                    "route": "bench",
                    "model": "m",
                    "completion": {"text": "x"},
                    "prompt_id": None,
                    "prompt_version": None,
                    "cost_usd": None,
                    "partition": None,
                    "query": None,
                    "expires_at": None,
                }
            ),
        )
    pipe.execute()
    out.append({"backend": "redis", "entries": 10_000, **time_exact(redis_cache, keys, 2000)})
    redis_cache.clear()
    return out


def _unit(rows: Any) -> Any:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def semantic_latency(embed: Any) -> list[dict[str, Any]]:
    """Lookup at 10k (exact) and 100k (exact, the peer, and usearch), on 384-d vectors.

    Each run loads the partition from a backend the way a process opening the store does
    (one bulk read, one graph build past ``ann_above``), then times ``search`` (candidates, exact re-scoring, guard) for 300
    queries that are stored vectors plus noise (cosine ~0.93 to their source, like a
    paraphrase). recall@1: share of those queries whose best candidate is the one exact
    search finds.
    """
    out = []
    rng = np.random.default_rng(3)
    stored = _unit(rng.standard_normal((100_000, 384)).astype(np.float32))
    picks = rng.choice(100_000, 300, replace=False)
    noise = 0.02 * rng.standard_normal((300, 384)).astype(np.float32)
    backends = {}
    for n in (10_000, 100_000):
        backend = MemoryCache()
        for i in range(n):
            entry = CacheEntry(
                key=f"k{i}",
                route="bench",
                model="m",
                completion={"text": str(i)},
                partition="p",
                query=f"stored question {i}",
                embedding=stored[i].tobytes(),
            )
            backend.put(entry, now=0.0, ttl_s=None, max_entries=n)
        backends[n] = backend
    for n, mode in ((10_000, "exact"), (100_000, "exact"), (100_000, "usearch")):
        index = SemanticIndex(
            embed, backends[n], ann_above=n if mode == "exact" else 10_000, refresh_s=None
        )
        t0 = time.perf_counter()
        vectors = index.vectors("p", 0.0)  # what a process opening the store does
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        vectors.wait()  # the graph builds in the background; exact search serves meanwhile
        build_s = time.perf_counter() - t0
        assert vectors.approximate == (mode == "usearch")
        queries = _unit(stored[picks % n] + noise)
        samples, top = [], []
        for i, query in enumerate(queries):
            t0 = time.perf_counter()
            found = index.search("p", f"stored question {int(picks[i] % n)}", query, 0.9, 0.0)
            samples.append(time.perf_counter() - t0)
            top.append(found[0].key if found else None)
        row: dict[str, Any] = {
            "entries": n,
            "mode": mode,
            "load_s": round(load_s, 2),
            "graph_build_s": round(build_s, 2),
            "search": _summary(samples),
        }
        if mode == "usearch":
            exact = VectorSet(ann=False)
            exact.extend([(f"k{i}", "", stored[i]) for i in range(n)])
            truth = [exact.nearest(q, 1)[0][0] for q in queries]
            row["recall_at_1"] = round(
                sum(a == b for a, b in zip(top, truth, strict=True)) / 300, 4
            )
        out.append(row)
    samples = []
    for i in range(100):
        t0 = time.perf_counter()
        embed([f"What are your opening hours on day {i}?"])
        samples.append(time.perf_counter() - t0)
    out.append({"embed_one_query_minilm_cpu": _summary(samples)})
    return out


def main() -> None:
    large = "--large" in sys.argv
    from roadworthy.providers.embeddings import local_embedder

    embed_model = local_embedder()
    stream = workload()
    vectors = dict(zip([q for _, q in stream], embed_model([q for _, q in stream]), strict=True))

    def embed(texts: Sequence[str]) -> list[Sequence[float]]:
        return [vectors[t] if t in vectors else embed_model([t])[0] for t in texts]

    curve = []
    baseline = asyncio.run(run_workload(stream, embed, None, True))
    for threshold in (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.95, 0.98):
        for guard in (True, False):
            curve.append(asyncio.run(run_workload(stream, embed, threshold, guard)))
    misses = [q for _, _, near in INTENTS for _, q in near]
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "workload": {
            "calls": len(stream),
            "intents": len(INTENTS),
            "distinct_questions": len({q for _, q in stream}),
            "near_miss_questions": len(misses),
            "best_possible_saved_share": round(1 - len({a for a, _ in stream}) / len(stream), 4),
        },
        "exact_only": baseline,
        "semantic_curve": curve,
        "guard_sanity": near_miss("hours on Monday", "hours on Tuesday"),
        "exact_latency": exact_latency(large),
        "semantic_latency": semantic_latency(embed_model),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
