"""Semantic cache: find a stored answer to a *similar* input, and refuse the classic false hit.

Sentence embeddings put "opening hours on Monday" and "opening hours on Tuesday" very
close together (cosine ~0.95 with all-MiniLM-L6-v2), yet the answers differ. Similarity
alone cannot tell a paraphrase from a near miss, so a candidate above the threshold must
also pass :func:`near_miss`: both inputs must mention the same numbers, dates and days,
named entities and the same number of negations. The guard is lexical on purpose: it is
cheap, explainable in a log line, and errs towards a miss (a paraphrase that swaps a
number for a word costs one model call; a wrong hit costs a wrong answer).

The index is exact search (one matrix product) over the entries of one partition (model,
prompt version, settings and every message but the last), loaded from the store on
first use. That is fast enough up to tens of thousands of entries per partition (see
``bench/cache.py``); an approximate index is the next step beyond that.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..store.cache import CacheBackend, CacheEntry

__all__ = ["SemanticIndex", "critical_terms", "near_miss"]

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


@dataclass
class _Partition:
    keys: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    matrix: Vector = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    members: set[str] = field(default_factory=set)

    def add(self, key: str, query: str, vector: Vector) -> None:
        if key in self.members:
            return
        self.members.add(key)
        n = len(self.keys)
        if self.matrix.shape[0] <= n:  # grow by doubling: amortised O(1) appends
            grown = np.zeros((max(16, 2 * n), vector.shape[0]), dtype=np.float32)
            if n:
                grown[:n] = self.matrix[:n]
            self.matrix = grown
        self.matrix[n] = vector
        self.keys.append(key)
        self.queries.append(query)

    def remove(self, key: str) -> None:
        if key not in self.members:
            return
        self.members.discard(key)
        i = self.keys.index(key)
        n = len(self.keys)
        self.matrix[i : n - 1] = self.matrix[i + 1 : n]
        del self.keys[i]
        del self.queries[i]


@dataclass(frozen=True)
class Candidate:
    key: str
    query: str
    similarity: float


class SemanticIndex:
    """Embeds queries and finds the nearest stored ones, per partition, in process."""

    def __init__(self, embed: EmbedOne, backend: CacheBackend, *, candidates: int = 5) -> None:
        self.embed_fn = embed
        self.backend = backend
        self.candidates = candidates
        self._partitions: dict[str, _Partition] = {}
        self.rejected: dict[str, int] = {}  # near-miss guard refusals by reason

    def encode(self, text: str) -> Vector:
        vector = np.asarray(self.embed_fn([text])[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    async def aencode(self, text: str) -> Vector:
        return await asyncio.to_thread(self.encode, text)

    def _partition(self, partition: str, now: float) -> _Partition:
        part = self._partitions.get(partition)
        if part is None:
            part = _Partition()
            for entry in self.backend.semantic_rows(partition, now):
                if entry.embedding is not None and entry.query is not None:
                    part.add(entry.key, entry.query, np.frombuffer(entry.embedding, np.float32))
            self._partitions[partition] = part
        return part

    def add(self, partition: str, key: str, query: str, vector: Vector, now: float) -> None:
        self._partition(partition, now).add(key, query, vector)

    def remove(self, partition: str, key: str) -> None:
        if partition in self._partitions:
            self._partitions[partition].remove(key)

    def search(
        self, partition: str, query: str, vector: Vector, threshold: float, now: float
    ) -> list[Candidate]:
        """Entries over ``threshold`` that pass the near-miss guard, most similar first."""
        part = self._partition(partition, now)
        n = len(part.keys)
        if n == 0:
            return []
        sims = part.matrix[:n] @ vector
        k = min(self.candidates, n)
        top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        out: list[Candidate] = []
        for i in sorted(top, key=lambda j: -float(sims[j])):
            sim = float(sims[i])
            if sim < threshold:
                break
            why = near_miss(query, part.queries[i])
            if why is not None:
                self.rejected[why] = self.rejected.get(why, 0) + 1
                continue
            out.append(Candidate(part.keys[i], part.queries[i], sim))
        return out

    def entry(self, partition: str, candidate: Candidate, now: float) -> CacheEntry | None:
        """The live entry behind a candidate; an expired or evicted one leaves the index."""
        entry = self.backend.get(candidate.key, now)
        if entry is None:
            self.remove(partition, candidate.key)
        return entry
