"""Scorers: small decorated factories that turn (example, output) into a :class:`Score`.

Built-in names (usable as ``type:`` in suite files and dataset ``assert`` entries; a
``not-`` prefix inverts any pass/fail scorer):

* text: ``equals``, ``contains``, ``icontains``, ``contains-any``, ``contains-all``,
  ``icontains-any``, ``icontains-all``, ``regex``, ``starts-with``, ``length``,
  ``refusal``;
* JSON: ``is-json``, ``contains-json``, ``json-schema``, ``required-fields``,
  ``field-equals`` (numeric tolerance);
* classification: ``label-match`` (its :meth:`Scorer.report` is a
  :class:`ClassificationReport`);
* result record: ``latency``, ``cost``;
* similarity: ``levenshtein``, ``rouge-l``, ``bleu``, ``embedding-cosine``;
* LLM judges (registered by :mod:`roadworthy.evals.judges`): ``llm-rubric``.
"""

from __future__ import annotations

from . import classification, deterministic, similarity
from .aggregate import ScoreSummary, summarize_by_tag, summarize_scores
from .base import (
    ModelCall,
    Output,
    Score,
    ScoreFn,
    Scorer,
    ScorerSpec,
    build_scorer,
    get_scorer_factory,
    output_json,
    registered_scorers,
    scorer,
)
from .classification import (
    ClassificationReport,
    ClassReport,
    classification_report,
    label_match,
)
from .deterministic import (
    DEFAULT_REFUSAL_PHRASES,
    contains,
    contains_all,
    contains_any,
    contains_json,
    cost,
    equals,
    field_equals,
    find_refusal,
    icontains,
    icontains_all,
    icontains_any,
    is_json,
    json_schema,
    latency,
    length,
    refusal,
    regex,
    required_fields,
    starts_with,
)
from .similarity import (
    EmbedFn,
    bleu,
    cosine,
    embedding_cosine,
    levenshtein,
    rouge_l,
    rouge_l_score,
    sentence_transformers_embedder,
)

__all__ = [
    "DEFAULT_REFUSAL_PHRASES",
    "ClassReport",
    "ClassificationReport",
    "EmbedFn",
    "ModelCall",
    "Output",
    "Score",
    "ScoreFn",
    "ScoreSummary",
    "Scorer",
    "ScorerSpec",
    "bleu",
    "build_scorer",
    "classification",
    "classification_report",
    "contains",
    "contains_all",
    "contains_any",
    "contains_json",
    "cosine",
    "cost",
    "deterministic",
    "embedding_cosine",
    "equals",
    "field_equals",
    "find_refusal",
    "get_scorer_factory",
    "icontains",
    "icontains_all",
    "icontains_any",
    "is_json",
    "json_schema",
    "label_match",
    "latency",
    "length",
    "levenshtein",
    "output_json",
    "refusal",
    "regex",
    "registered_scorers",
    "required_fields",
    "rouge_l",
    "rouge_l_score",
    "scorer",
    "sentence_transformers_embedder",
    "similarity",
    "starts_with",
    "summarize_by_tag",
    "summarize_scores",
]
