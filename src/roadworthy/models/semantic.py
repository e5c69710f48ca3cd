"""Semantic cache: find a stored answer to a *similar* input, and refuse the classic false hit.

Sentence embeddings put "opening hours on Monday" and "opening hours on Tuesday" very
close together (cosine ~0.95 with all-MiniLM-L6-v2), yet the answers differ. Similarity
alone cannot tell a paraphrase from a near miss, so a candidate above the threshold must
also pass :func:`near_miss`: both inputs must mention the same numbers, dates and days,
named entities and the same number of negations. The guard is lexical on purpose: it is
cheap, explainable in a log line, and errs towards a miss (a paraphrase that swaps a
number for a word costs one model call; a wrong hit costs a wrong answer).

The index holds one partition (model, prompt version, settings, embedder and every
message but the last) at a time in memory, loaded from the store on first use:

* up to ``ann_above`` entries (default 10,000) it is exact search, one matrix product:
  no recall to tune, and at 10k it costs well under a millisecond (``bench/cache.py``);
* past it, a usearch HNSW graph over the same vectors proposes candidates whose
  similarity is then recomputed exactly, so the threshold means the same on both paths.
  The graph is built in a background thread; lookups stay exact until it is ready, so
  crossing the size, or opening a big partition, never stalls a request. Without usearch
  installed the partition stays exact and says so once.

The vectors themselves stay in the store, which is what makes the index "persisted with
the store": a new process rebuilds it from the rows, and every ``refresh_s`` seconds a
lookup reads the rows written since its last read (by any process), so entries that
another worker added become hits here too. Entries another process deleted are caught
when their row is fetched (:meth:`SemanticIndex.entry`) and leave the index then.

On a PostgreSQL store with the pgvector extension none of this is held in process: the
index hands adds, removals and searches to :class:`~roadworthy.store.pgvector.PgVectorSearch`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..store.cache import CacheBackend, CacheEntry
from ..store.pgvector import PgVectorSearch

__all__ = ["Candidate", "SemanticIndex", "VectorSet", "critical_terms", "near_miss"]

log = logging.getLogger("roadworthy.cache")

Vector = npt.NDArray[np.float32]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
# "may" is left out: it is far more often the verb.
_MONTHS = _words(
    "january february march april june july august september october november december"
)
_DATES = (
    _WEEKDAYS
    | _MONTHS
    | _words("today tomorrow yesterday tonight weekend weekday weekdays morning evening night")
)
_NUMBER_WORDS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty "
    "hundred thousand million first second third fourth fifth last next previous"
)
_NEGATIONS = _words("not no never none nothing nobody without nor cannot")
# Capitalised words that start questions and sentences, not names.
_NOT_NAMES = _words(
    "i a an the what whats what's how when where why who whom which whose is are was were "
    "do does did can could would should will shall may might must my your our their his "
    "her its it this that these those there here please hi hello hey thanks thank if "
    "and or but so also tell give show explain list describe any some it's im i'm "
    "i've i'd i'll we you they he she me us them ok okay yes in on at for to of from with"
)
_TOKEN = re.compile(r"[\w@.:/'+-]+", re.UNICODE)
_NUMERIC = re.compile(r"\d")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class CriticalTerms:
    numbers: frozenset[str]
    dates: frozenset[str]
    entities: frozenset[str]
    negations: int


def _sentences(text: str) -> list[list[str]]:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    text = re.sub(r"n't\b", " not", text, flags=re.IGNORECASE)  # don't -> do not
    out = []
    for sentence in _SENTENCE.split(text):
        tokens = [t.strip(".:/'-+") for t in _TOKEN.findall(sentence)]
        out.append([t for t in tokens if t])
    return out


def critical_terms(text: str) -> CriticalTerms:
    """The parts of an input that change its answer: numbers, dates, names, negations.

    A capitalised word counts as a name unless it opens its sentence ("Ship to Paris":
    Paris, not Ship) or is a common question word; names that open a sentence are the
    guard's known blind spot, left to similarity.
    """
    numbers: set[str] = set()
    dates: set[str] = set()
    entities: set[str] = set()
    negations = 0
    for sentence in _sentences(text):
        for position, token in enumerate(sentence):
            low = token.lower()
            if _NUMERIC.search(token) or low in _NUMBER_WORDS:
                numbers.add(low.replace(",", ""))
            elif low in _DATES:
                dates.add(low)
            elif low in _NEGATIONS:
                negations += 1
            elif "@" in token or "://" in token:
                entities.add(low)
            elif position > 0 and token[0].isupper() and low not in _NOT_NAMES:
                entities.add(low)
    return CriticalTerms(frozenset(numbers), frozenset(dates), frozenset(entities), negations)


def near_miss(a: str, b: str) -> str | None:
    """Why ``a`` and ``b`` may need different answers ("number", "date", ...), or None."""
    ta, tb = critical_terms(a), critical_terms(b)
    if ta.numbers != tb.numbers:
        return "number"
    if ta.dates != tb.dates:
        return "date"
    if ta.negations != tb.negations:
        return "negation"
    if ta.entities != tb.entities:
        return "entity"
    return None


EmbedOne = Callable[[Sequence[str]], Sequence[Sequence[float]]]

# Rows whose transaction commits after a later-stamped one would be skipped by a reader
# that only asks for rows newer than its last read; re-reading this much of the past
# (and skipping keys already held) closes that gap between writer processes.
_REFRESH_OVERLAP_S = 10.0


def _usearch_index(ndim: int) -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise ConfigError(
            "an approximate semantic index needs usearch: pip install 'roadworthy[embeddings]'"
        ) from None
    # The graph stores int8-quantised vectors: it builds ~3x faster than float32 and its
    # only job is to propose candidates, which are re-scored against the float32 rows, so
    # quantisation costs no accuracy in the similarity a hit is judged by (recall@1 vs
    # exact search: bench/cache.py).
    return Index(
        ndim=ndim,
        metric="cos",
        dtype="i8",
        connectivity=16,
        expansion_add=64,
        expansion_search=256,  # recall@1 at 100k: 0.92 with 128, 0.99 with 256, 1.0 with 512
    )


_GRAPH_CANDIDATES = 16  # asked of the graph, then re-scored exactly


class VectorSet:
    """Unit vectors by key: exact search up to ``ann_above`` entries, an HNSW graph past it.

    Slots are stable integers (usearch labels), so removing an entry leaves a hole (a zero
    row, never above a positive threshold) instead of renumbering; holes are compacted
    away once they outnumber the live entries.

    With ``background=True`` the graph is built in a thread (100k entries take tens of
    seconds on two cores) while lookups stay on exact search; the finished graph is
    adopted by the next call on the owning thread, which first adds what arrived and
    removes what left during the build. All other state changes on the owning thread.
    """

    def __init__(
        self, *, ann_above: int = 10_000, ann: bool = True, background: bool = False
    ) -> None:
        self.ann_above = ann_above
        self.ann_allowed = ann
        self.background = background
        self.keys: list[str | None] = []
        self.queries: list[str] = []
        self.matrix: Vector = np.zeros((0, 0), dtype=np.float32)
        self.slot_of: dict[str, int] = {}
        self.ann: Any = None
        self._builder: threading.Thread | None = None
        self._built: tuple[Any, int] | None = None  # (graph, slots it covers), from the thread
        self._removed_meanwhile: list[int] = []

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, key: str) -> bool:
        return key in self.slot_of

    @property
    def approximate(self) -> bool:
        return self.ann is not None

    def add(self, key: str, query: str, vector: Vector) -> None:
        self.extend([(key, query, vector)])

    def extend(self, rows: Sequence[tuple[str, str, Vector]]) -> None:
        """Add many entries; the graph takes them in one multi-threaded batch."""
        self._adopt()
        fresh = [r for r in dict((r[0], r) for r in rows).values() if r[0] not in self.slot_of]
        if not fresh:
            return
        width = self.matrix.shape[1] if self.keys else fresh[0][2].shape[0]
        if any(v.shape[0] != width for _, _, v in fresh):
            log.warning(
                "semantic cache: vectors of another width than the partition's %d were "
                "skipped (embedder changed without a new name?)",
                width,
            )
            fresh = [r for r in fresh if r[2].shape[0] == width]
            if not fresh:
                return
        first = len(self.keys)
        need = first + len(fresh)
        if self.matrix.shape[0] < need:  # grow by doubling: amortised O(1) appends
            grown = np.zeros((max(16, 2 * need), width), dtype=np.float32)
            if first:
                grown[:first] = self.matrix[:first]
            self.matrix = grown
        for offset, (key, query, vector) in enumerate(fresh):
            self.matrix[first + offset] = vector
            self.keys.append(key)
            self.queries.append(query)
            self.slot_of[key] = first + offset
        if self.ann is not None:
            slots = np.arange(first, need, dtype=np.uint64)
            self.ann.add(slots, self.matrix[first:need])
        elif self.ann_allowed and self._builder is None and len(self.slot_of) > self.ann_above:
            self._build_ann()

    def _build_ann(self) -> None:
        try:
            ann = _usearch_index(self.matrix.shape[1])
        except ConfigError as exc:
            log.warning("semantic cache stays on exact search past %d entries: %s", len(self), exc)
            self.ann_allowed = False
            return
        upto = len(self.keys)
        slots = np.fromiter(self.slot_of.values(), dtype=np.uint64, count=len(self.slot_of))
        rows = self.matrix  # growth allocates a new array, so these rows stay put

        def build() -> None:
            try:
                if len(slots):
                    ann.add(slots, rows[slots.astype(np.int64)])
            except Exception:  # never retried: the partition stays on exact search
                log.exception("semantic cache: building the usearch graph failed")
                return
            self._built = (ann, upto)

        if not self.background:
            build()
            self._adopt()
            return
        self._builder = threading.Thread(target=build, name="rw-semantic-ann", daemon=True)
        self._builder.start()

    def _adopt(self) -> None:
        """Take over a finished graph: add what arrived and drop what left meanwhile."""
        built = self._built
        if built is None:
            return
        ann, upto = built
        late = [s for s in range(upto, len(self.keys)) if self.keys[s] is not None]
        if late:
            ann.add(np.asarray(late, dtype=np.uint64), self.matrix[late])
        for slot in self._removed_meanwhile:
            if slot < upto:
                ann.remove(slot)
        self._removed_meanwhile.clear()
        self.ann, self._built, self._builder = ann, None, None

    def wait(self) -> None:
        """Block until a background graph build is done, and adopt it (tests, benchmarks)."""
        builder = self._builder
        if builder is not None:
            builder.join()
        self._adopt()

    def remove(self, key: str) -> None:
        self._adopt()
        slot = self.slot_of.pop(key, None)
        if slot is None:
            return
        self.keys[slot] = None
        self.matrix[slot] = 0.0
        if self.ann is not None:
            self.ann.remove(slot)
        elif self._builder is not None:
            self._removed_meanwhile.append(slot)
        holes = len(self.keys) - len(self.slot_of)
        if self._builder is None and holes > max(1024, len(self.slot_of)):
            self._compact()

    def _compact(self) -> None:
        live = [
            (key, self.queries[slot], self.matrix[slot].copy())
            for slot, key in enumerate(self.keys)
            if key is not None
        ]
        self.keys, self.queries, self.slot_of, self.ann = [], [], {}, None
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        background, self.background = self.background, False  # one pause, then all is back
        self.extend(live)
        self.background = background

    def nearest(self, vector: Vector, k: int) -> list[tuple[str, str, float]]:
        """Up to ``k`` (key, query, cosine similarity), most similar first."""
        self._adopt()
        n = len(self.keys)
        if not self.slot_of or k < 1:
            return []
        if self.ann is not None:
            found = self.ann.search(vector, max(k, _GRAPH_CANDIDATES))
            slots = np.asarray(found.keys, dtype=np.int64)
        else:
            sims = self.matrix[:n] @ vector
            k = min(k, n)
            slots = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        scored = [(int(s), float(self.matrix[s] @ vector)) for s in slots]
        out = []
        for slot, sim in sorted(scored, key=lambda pair: -pair[1])[:k]:
            key = self.keys[slot]
            if key is not None:
                out.append((key, self.queries[slot], sim))
        return out


@dataclass
class _Partition:
    vectors: VectorSet
    loaded_at: float  # wall time of the last read from the store (rows after it are new)
    checked_at: float  # monotonic time of that read, for the refresh interval


@dataclass(frozen=True)
class Candidate:
    key: str
    query: str
    similarity: float


class SemanticIndex:
    """Embeds queries and finds the nearest stored ones, per partition, in process.

    ``name`` names the vector space (the embedder and its model): it is part of the
    partition key, so switching embedders starts new partitions instead of comparing
    vectors from two models. With ``pgvector`` (a PostgreSQL store with the extension)
    vectors are kept and ranked in the database instead of in process.
    """

    def __init__(
        self,
        embed: EmbedOne,
        backend: CacheBackend,
        *,
        candidates: int = 5,
        ann_above: int = 10_000,
        refresh_s: float | None = 1.0,
        name: str = "default",
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pgvector: PgVectorSearch | None = None,
    ) -> None:
        self.embed_fn = embed
        self.pgvector = pgvector
        self.backend = backend
        self.candidates = candidates
        self.ann_above = ann_above
        self.refresh_s = refresh_s
        self.name = name
        self.wall = wall
        self.monotonic = monotonic
        self._partitions: dict[str, _Partition] = {}
        self.rejected: dict[str, int] = {}  # near-miss guard refusals by reason
        self.failures: dict[str, int] = {}  # embedder failures by error class
        self.refreshed = 0  # entries learnt from the store after a partition was loaded

    def encode(self, text: str) -> Vector:
        vector = np.asarray(self.embed_fn([text])[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    async def aencode(self, text: str) -> Vector:
        return await asyncio.to_thread(self.encode, text)

    def vectors(self, partition: str, now: float) -> VectorSet:
        """The partition's vectors, loaded on first use and refreshed from the store."""
        part = self._partitions.get(partition)
        if part is None:
            part = _Partition(VectorSet(ann_above=self.ann_above, background=True), 0.0, 0.0)
            self._load(part, partition, now, since=None)
            self._partitions[partition] = part
        elif self.refresh_s is not None and self.monotonic() - part.checked_at >= self.refresh_s:
            before = len(part.vectors)
            self._load(part, partition, now, since=part.loaded_at - _REFRESH_OVERLAP_S)
            self.refreshed += max(0, len(part.vectors) - before)
        return part.vectors

    def _load(self, part: _Partition, partition: str, now: float, since: float | None) -> None:
        started = self.wall()
        part.vectors.extend(
            [
                (row.key, row.query, np.frombuffer(row.embedding, np.float32))
                for row in self.backend.semantic_vectors(partition, now, since)
                if row.key not in part.vectors
            ]
        )
        part.loaded_at = started
        part.checked_at = self.monotonic()

    def add(self, partition: str, key: str, query: str, vector: Vector, now: float) -> None:
        if self.pgvector is not None:
            self.pgvector.add(partition, key, query, vector.tolist())
            return
        part = self._partitions.get(partition)  # no refresh: this entry is the news
        (part.vectors if part is not None else self.vectors(partition, now)).add(key, query, vector)

    def remove(self, partition: str, key: str) -> None:
        if self.pgvector is not None:
            self.pgvector.remove(key)
        if partition in self._partitions:
            self._partitions[partition].vectors.remove(key)

    def search(
        self, partition: str, query: str, vector: Vector, threshold: float, now: float
    ) -> list[Candidate]:
        """Entries over ``threshold`` that pass the near-miss guard, most similar first."""
        out: list[Candidate] = []
        if self.pgvector is not None:
            nearest = self.pgvector.nearest(partition, vector.tolist(), self.candidates, now)
        else:
            nearest = self.vectors(partition, now).nearest(vector, self.candidates)
        for key, stored, sim in nearest:
            if sim < threshold:
                break
            why = near_miss(query, stored)
            if why is not None:
                self.rejected[why] = self.rejected.get(why, 0) + 1
                continue
            out.append(Candidate(key, stored, sim))
        return out

    def entry(self, partition: str, candidate: Candidate, now: float) -> CacheEntry | None:
        """The live entry behind a candidate; an expired or evicted one leaves the index."""
        entry = self.backend.get(candidate.key, now)
        if entry is None:
            self.remove(partition, candidate.key)
        return entry
