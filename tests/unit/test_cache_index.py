"""The semantic index: exact search up to a size, usearch past it, refresh from the store."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from roadworthy.config.routes import RouteConfig
from roadworthy.models import context as ctx
from roadworthy.models import semantic
from roadworthy.models.cache import Cached, CachePolicy, canonical_request, partition_key
from roadworthy.models.semantic import SemanticIndex, VectorSet
from roadworthy.providers import ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store.cache import MemoryCache

from .test_cache import bag_of_words

Matrix = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def needs_usearch() -> None:
    pytest.importorskip("usearch", reason="usearch is not installed (roadworthy[embeddings])")


def fill(vectors: VectorSet, rows: Matrix, start: int = 0) -> None:
    vectors.extend([(f"k{i}", f"q{i}", row) for i, row in enumerate(rows, start)])


def test_ann_recall_at_20k_against_exact_search() -> None:
    """recall@1 of the HNSW path vs exact search, on fixed random unit vectors.

    Half the queries are stored vectors plus noise (a paraphrase of a cached question),
    half are unrelated random directions (the hard case for a graph index).
    """
    needs_usearch()
    rng = np.random.default_rng(20_000)
    rows = unit_rows(rng, 20_000, 64)
    approx, exact = VectorSet(ann_above=10_000), VectorSet(ann=False)
    fill(approx, rows)
    fill(exact, rows)
    assert approx.approximate and not exact.approximate
    near = rows[rng.choice(len(rows), 200, replace=False)] + 0.05 * rng.standard_normal(
        (200, 64)
    ).astype(np.float32)
    far = unit_rows(rng, 200, 64)
    queries = np.vstack([near / np.linalg.norm(near, axis=1, keepdims=True), far])
    agree = 0
    for query in queries:
        got, want = approx.nearest(query, 5), exact.nearest(query, 5)
        agree += got[0][0] == want[0][0]
        # similarities are recomputed exactly, so a shared key has the same score
        assert got[0][2] <= want[0][2] + 1e-6
    assert agree / len(queries) >= 0.95


def test_removed_entries_never_come_back_and_holes_are_compacted() -> None:
    needs_usearch()
    rng = np.random.default_rng(3)
    rows = unit_rows(rng, 3_000, 32)
    vectors = VectorSet(ann_above=100)
    fill(vectors, rows)
    for i in range(0, 2_000):
        vectors.remove(f"k{i}")
    assert len(vectors) == 1_000
    # once holes outnumbered live entries (at 1,501 of 3,000) they were compacted away
    assert len(vectors.keys) == 1_499
    assert vectors.approximate
    for i in (0, 1_999):  # removed: their own vector finds someone else
        assert vectors.nearest(rows[i], 1)[0][0] != f"k{i}"
    for i in (2_000, 2_500, 2_999):
        key, query, sim = vectors.nearest(rows[i], 1)[0]
        assert (key, query) == (f"k{i}", f"q{i}") and sim == pytest.approx(1.0, abs=1e-5)


class GatedGraph:
    """A real usearch graph whose first (bulk) add waits for the test to open the gate."""

    def __init__(self, graph: Any, gate: threading.Event) -> None:
        self.graph, self.gate, self.first = graph, gate, True

    def add(self, keys: Any, vectors: Any) -> None:
        if self.first:
            self.first = False
            assert self.gate.wait(60)
        self.graph.add(keys, vectors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)


def test_a_background_build_catches_up_with_changes_made_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    needs_usearch()
    gate = threading.Event()
    real = semantic._usearch_index
    monkeypatch.setattr(semantic, "_usearch_index", lambda ndim: GatedGraph(real(ndim), gate))
    rows = unit_rows(np.random.default_rng(5), 600, 32)
    vectors = VectorSet(ann_above=100, background=True)
    fill(vectors, rows[:400])  # starts the build, which waits at the gate
    fill(vectors, rows[400:], start=400)  # arrives during the build
    for i in (7, 450):
        vectors.remove(f"k{i}")  # leaves during the build
    assert not vectors.approximate
    assert vectors.nearest(rows[500], 1)[0][0] == "k500"  # exact search serves meanwhile
    gate.set()
    vectors.wait()
    assert vectors.approximate
    for i in (0, 399, 400, 599):
        assert vectors.nearest(rows[i], 1)[0][0] == f"k{i}"
    for i in (7, 450):
        assert f"k{i}" not in [key for key, _, _ in vectors.nearest(rows[i], 16)]


def test_a_partition_switches_to_ann_past_the_threshold_and_still_hits() -> None:
    needs_usearch()
    backend = MemoryCache()
    index = SemanticIndex(bag_of_words, backend, ann_above=8)
    texts = [
        f"how do I export the {w} report"
        for w in ["red", "green", "blue", "pink", "gold", "grey", "teal"]
    ]
    texts += [f"where is the {w} button" for w in ["red", "green", "blue", "pink", "gold"]]
    for i, text in enumerate(texts):
        index.add("p", f"k{i}", text, index.encode(text), now=0.0)
    index.vectors("p", 0.0).wait()  # the index builds its graph in a background thread
    assert index.vectors("p", 0.0).approximate
    found = index.search(
        "p", "where is the gold button", index.encode("where is the gold button"), 0.9, 0.0
    )
    assert [c.key for c in found][:1] == ["k11"]


def test_without_usearch_a_big_partition_stays_exact_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "usearch.index", None)  # import fails as if absent
    rows = unit_rows(np.random.default_rng(1), 50, 16)
    vectors = VectorSet(ann_above=10)
    with caplog.at_level(logging.WARNING, logger="roadworthy.cache"):
        fill(vectors, rows[:20])
        fill(vectors, rows[20:], start=20)
    assert not vectors.approximate
    assert sum("stays on exact search" in r.getMessage() for r in caplog.records) == 1
    assert vectors.nearest(rows[42], 1)[0][0] == "k42"


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def ask(text: str) -> CompletionRequest:
    return CompletionRequest(messages=(Message("user", text),), model="m-1", temperature=0)


def wrapper(backend: MemoryCache, index: SemanticIndex) -> Cached:
    return Cached(
        ScriptedProvider(echo=True, name="p"),
        CachePolicy(route="r", threshold=0.85),
        backend,
        model_name="m",
        model_id="m-1",
        provider_name="p",
        semantic=index,
    )


async def test_an_index_learns_entries_another_writer_added_after_refresh_s() -> None:
    backend = MemoryCache()
    ticks = Ticks()
    reader_index = SemanticIndex(bag_of_words, backend, refresh_s=30, monotonic=ticks)
    reader = wrapper(backend, reader_index)
    writer = wrapper(backend, SemanticIndex(bag_of_words, backend))
    call = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=1)
    question = "how can I change my delivery address"
    partition = partition_key(canonical_request(ask(question), call), reader_index.name)
    assert partition is not None
    with ctx.bind(ctx.call_context, call):
        await reader.complete(ask("one question about invoices"))  # loads the partition
        await writer.complete(ask("how do I change my delivery address"))
    vector = reader_index.encode(question)
    assert reader_index.search(partition, question, vector, 0.8, time.time()) == []
    ticks.t = 29.0
    assert reader_index.search(partition, question, vector, 0.8, time.time()) == []
    ticks.t = 31.0
    found = reader_index.search(partition, question, vector, 0.8, time.time())
    assert [c.query for c in found] == ["how do I change my delivery address"]
    assert reader_index.refreshed == 1


def test_semantic_cache_config_knobs() -> None:
    route = RouteConfig.model_validate(
        {
            "cache": {
                "semantic": {
                    "threshold": 0.9,
                    "ann_above": 500,
                    "refresh_s": 0,
                    "judge": "big",
                    "embeddings": {"type": "openai", "model": "text-embedding-3-small"},
                }
            }
        }
    )
    assert route.cache is not None and route.cache.semantic is not None
    semantic = route.cache.semantic
    assert (semantic.ann_above, semantic.refresh_s, semantic.judge) == (500, 0, "big")
    assert semantic.embeddings.base_url == "https://api.openai.com/v1"
    with pytest.raises(ValueError, match="need a model id"):
        RouteConfig.model_validate({"cache": {"semantic": {"embeddings": {"type": "openai"}}}})
    with pytest.raises(ValueError):
        RouteConfig.model_validate({"cache": {"semantic": {"ann_above": 0}}})
