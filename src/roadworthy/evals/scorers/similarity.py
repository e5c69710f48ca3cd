"""Similarity to a reference output: Levenshtein, ROUGE-L, BLEU and embedding cosine.

The reference is the scorer's ``reference`` setting, else the example's ``reference``,
else its ``expected`` when that is a string; an example with none is unscored. Each
scorer gives a graded value in [0, 1]; with ``threshold`` it also passes or fails.

Libraries: rapidfuzz (Levenshtein) and sacrebleu (BLEU) are the ``[evals]`` extra;
sentence-transformers is the ``[embeddings]`` extra. A missing one fails when the scorer
is built, naming the ``pip install`` line. ROUGE-L is computed here: it is a longest
common subsequence over tokens, and ``rouge-score`` would add nltk and absl for it.
Its tokens are lowercase runs of letters and digits in any script (``rouge-score`` keeps
only ASCII ``a-z0-9``, which scores every non-English pair as 0).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from types import ModuleType

from ...errors import ConfigError
from ...providers.embeddings import local_embedder
from ..datasets import Example
from .base import Output, Score, ScoreFn, scorer

__all__ = [
    "EmbedFn",
    "bleu",
    "cosine",
    "embedding_cosine",
    "levenshtein",
    "rouge_l",
    "rouge_l_score",
    "sentence_transformers_embedder",
]

EmbedFn = Callable[[Sequence[str]], Sequence[Sequence[float]]]


def _require(module: str, dist: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{purpose} needs the {dist} package ({exc}); install it: "
            f"pip install 'roadworthy[{extra}]'"
        ) from None


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")


def _pair(example: Example, output: Output, reference: str | None) -> tuple[str, str] | Score:
    ref = reference
    if ref is None:
        ref = example.reference
    if ref is None and isinstance(example.expected, str):
        ref = example.expected
    if ref is None:
        return Score.skip("example has no reference output")
    text = output.as_text
    if text is None:
        return Score.fail(f"no output ({output.error or 'empty'})")
    return text, ref


def _similarity_scorer(
    measure: Callable[[str, str], float], label: str, reference: str | None, threshold: float | None
) -> ScoreFn:
    _check_threshold(threshold)

    def score(example: Example, output: Output) -> Score:
        pair = _pair(example, output, reference)
        if isinstance(pair, Score):
            return pair
        value = measure(*pair)
        return Score.graded(value, f"{label} {value:.3f}", threshold=threshold)

    return score


@scorer("levenshtein")
def levenshtein(reference: str | None = None, *, threshold: float | None = None) -> ScoreFn:
    """Normalised Levenshtein similarity, 1 - distance / max(len) (rapidfuzz)."""
    lev = _require("rapidfuzz.distance", "rapidfuzz", "evals", "the levenshtein scorer")

    def measure(text: str, ref: str) -> float:
        return float(lev.Levenshtein.normalized_similarity(text, ref))

    return _similarity_scorer(measure, "levenshtein similarity", reference, threshold)


_TOKEN = re.compile(r"[^\W_]+")


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_score(candidate: str, reference: str) -> float:
    """ROUGE-L F1 between two texts (token LCS; precision and recall weighted equally)."""
    cand = _TOKEN.findall(candidate.lower())
    ref = _TOKEN.findall(reference.lower())
    if not cand or not ref:
        return 0.0
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@scorer("rouge-l")
def rouge_l(reference: str | None = None, *, threshold: float | None = None) -> ScoreFn:
    return _similarity_scorer(rouge_l_score, "ROUGE-L F1", reference, threshold)


@scorer("bleu")
def bleu(reference: str | None = None, *, threshold: float | None = None) -> ScoreFn:
    """Sentence BLEU (sacrebleu, default smoothing) scaled to [0, 1]."""
    sacrebleu = _require("sacrebleu", "sacrebleu", "evals", "the bleu scorer")

    def measure(text: str, ref: str) -> float:
        return float(sacrebleu.sentence_bleu(text, [ref]).score) / 100.0

    return _similarity_scorer(measure, "BLEU", reference, threshold)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} vs {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    if na == 0 or nb == 0:
        return 0.0
    return dot / (na * nb)


def sentence_transformers_embedder(model: str | None = None) -> EmbedFn:
    """A local sentence-transformers embedder (the ``[embeddings]`` extra), offline.

    Defaults to the bundled all-MiniLM-L6-v2; nothing is downloaded at run time.
    """
    _require("sentence_transformers", "sentence-transformers", "embeddings", "the embedding scorer")
    return local_embedder(model)


@scorer("embedding-cosine")
def embedding_cosine(
    reference: str | None = None,
    *,
    threshold: float | None = None,
    embed: EmbedFn | None = None,
    model: str | None = None,
) -> ScoreFn:
    """Cosine similarity of embeddings, negative values clamped to 0.

    ``embed`` maps a list of texts to vectors (inject any embedding model, e.g. an
    OpenAI-compatible ``/v1/embeddings`` client); by default a local sentence-transformers
    model. The raw cosine is kept in ``details``.
    """
    embedder = embed if embed is not None else sentence_transformers_embedder(model)
    _check_threshold(threshold)

    def score(example: Example, output: Output) -> Score:
        pair = _pair(example, output, reference)
        if isinstance(pair, Score):
            return pair
        vectors = embedder([pair[0], pair[1]])
        raw = cosine(vectors[0], vectors[1])
        return Score.graded(max(0.0, raw), f"cosine {raw:.3f}", threshold=threshold, cosine=raw)

    return score
