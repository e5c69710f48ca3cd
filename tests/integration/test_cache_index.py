"""Two writer processes fill a semantic partition in the store; a third process's index,
opened before they started, serves their entries after its refresh (exact and ANN)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached, CachePolicy
from roadworthy.models.semantic import SemanticIndex
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import CallRecord, Store
from roadworthy.store.cache import StoreCache
from roadworthy.testing.faults import fake_embedding

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]

# One writer: asks its share of questions through a cached wrapper whose model answers
# "from <writer>", so each stored answer says which process wrote it.
WRITER = """
import asyncio, sys
from roadworthy.models import context as ctx
from roadworthy.models.cache import Cached, CachePolicy
from roadworthy.models.semantic import SemanticIndex
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store import Store
from roadworthy.store.cache import StoreCache
from roadworthy.testing.faults import fake_embedding

url, name, words = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
store = Store.open(url)
backend = StoreCache(store.engine)
index = SemanticIndex(lambda ts: [fake_embedding(t, 1024) for t in ts], backend, name="fake")
wrapper = Cached(
    ScriptedProvider([Reply(text=f"from {name}")], name="p"),
    CachePolicy(route="r", threshold=0.9),
    backend, model_name="m", model_id="m-1", provider_name="p", semantic=index,
)

async def main():
    call = ctx.CallContext(trace_id=name, prompt_id="faq", prompt_version=1)
    with ctx.bind(ctx.call_context, call):
        for word in words:
            q = f"how do I configure the {word} setting"
            req = CompletionRequest(messages=(Message("user", q),), model="m-1", temperature=0)
            await wrapper.complete(req)

asyncio.run(main())
store.close()
"""


def embed(texts: object) -> list[list[float]]:
    return [fake_embedding(str(t), 1024) for t in texts]  # type: ignore[attr-defined]


@pytest.mark.parametrize("ann_above", [10_000, 8], ids=["exact", "ann"])
async def test_entries_written_by_other_processes_become_hits_here(
    store_url: str, ann_above: int
) -> None:
    if ann_above < 100:
        pytest.importorskip("usearch", reason="usearch is not installed (roadworthy[embeddings])")
    store = Store.open(store_url)  # migrates before the writers start
    backend = StoreCache(store.engine)
    index = SemanticIndex(embed, backend, name="fake", ann_above=ann_above, refresh_s=0)
    rows: list[CallRecord] = []
    reader = Cached(
        ScriptedProvider([Reply(text="from reader")], name="p"),
        CachePolicy(route="r", threshold=0.9),
        backend,
        model_name="m",
        model_id="m-1",
        provider_name="p",
        recorder=rows.append,
        semantic=index,
    )
    call = ctx.CallContext(trace_id="reader", prompt_id="faq", prompt_version=1)

    def ask(text: str) -> CompletionRequest:
        return CompletionRequest(messages=(Message("user", text),), model="m-1", temperature=0)

    try:
        with ctx.bind(ctx.call_context, call):  # the reader's index is loaded now, empty
            assert (await reader.complete(ask("what is the refund policy"))).text == "from reader"
        halves = {"one": WORDS[:12], "two": WORDS[12:]}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, store_url, name, ",".join(words)],
                cwd=ROOT,
                stderr=subprocess.PIPE,
            )
            for name, words in halves.items()
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
        with ctx.bind(ctx.call_context, call):
            answers = {
                word: (await reader.complete(ask(f"how do I configure the {word} setting please")))
                for word in ("alpha", "lima", "oscar", "zulu")
            }
        assert {w: a.text for w, a in answers.items()} == {
            "alpha": "from one",
            "lima": "from one",
            "oscar": "from two",
            "zulu": "from two",
        }
        assert [r.cache_outcome for r in rows] == ["semantic"] * 4
        assert index.refreshed == len(WORDS)
        partition = next(iter(index._partitions.values())).vectors
        partition.wait()  # hits above came from exact search or the graph, whichever was ready
        assert partition.approximate == (ann_above < len(WORDS))
    finally:
        store.close()
