"""Stage 3b: route an input to a processing path.

Rules come first (kind, language, script, length, regex), in the order configured; then,
where configured, a nearest-centroid classifier over embeddings of labelled examples;
then the default route. The embedding function is injected (``texts -> vectors``) so the
same code runs with sentence-transformers, an OpenAI-compatible ``/v1/embeddings``
endpoint, or a deterministic fake in tests.

Language detection is deliberately cheap: the dominant script of the letters, then, for
Latin and Cyrillic text, stopword counts. It tells English from German from Russian well
enough to route; it is not a language identifier for short or mixed text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ._chars import script_of
from .config import CentroidClassifierConfig, RouteRule, RoutingConfig
from .report import RouteDecision

__all__ = ["CentroidClassifier", "EmbedFn", "Router", "detect_language"]

EmbedFn = Callable[[Sequence[str]], Sequence[Sequence[float]]]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words("the and is are of to in that it for with you this was not be on have"),
    "de": _words("der die das und ist nicht ein eine ich sie mit zu den von auf für"),
    "fr": _words("le la les et est un une des du pas je vous que pour dans avec sur"),
    "es": _words("el la los las y es un una que de no por para con en se del"),
    "it": _words("il la le e è un una che di non per con del della sono gli"),
    "pt": _words("o a os as e é um uma que de não para com em do da"),
    "nl": _words("de het een en is niet van ik je dat met op voor zijn"),
    "ru": _words("и в не на я что он с как это по но из за"),  # noqa: RUF001
    "uk": _words("і в не на я що він з як це по але із за та"),  # noqa: RUF001
}
_SCRIPT_LANG = {
    "Han": "zh",
    "Hiragana": "ja",
    "Katakana": "ja",
    "Hangul": "ko",
    "Arabic": "ar",
    "Hebrew": "he",
    "Greek": "el",
    "Devanagari": "hi",
    "Thai": "th",
    "Armenian": "hy",
    "Georgian": "ka",
    "Bengali": "bn",
    "Tamil": "ta",
}
_WORD = re.compile(r"[^\W\d_]+")
_SAMPLE = 20_000


def detect_language(text: str) -> tuple[str, str | None]:
    """``(language, script)``: an ISO 639-1 code (``und`` when unsure) and the script."""
    sample = text[:_SAMPLE]
    scripts = Counter(s for s in map(script_of, filter(str.isalpha, sample)) if s)
    if not scripts:
        return "und", None
    script, _ = scripts.most_common(1)[0]
    if script in ("Hiragana", "Katakana") or (
        script == "Han" and scripts["Hiragana"] + scripts["Katakana"] > 0
    ):
        return "ja", "Han" if script == "Han" else script
    if script not in ("Latin", "Cyrillic"):
        return _SCRIPT_LANG.get(script, "und"), script
    words = [w.casefold() for w in _WORD.findall(sample)]
    candidates = (
        ("ru", "uk") if script == "Cyrillic" else ("en", "de", "fr", "es", "it", "pt", "nl")
    )
    scores = {lang: sum(w in _STOPWORDS[lang] for w in words) for lang in candidates}
    if script == "Cyrillic" and any(ch in sample for ch in "іїєґІЇЄҐ"):
        scores["uk"] += 3
    best = max(scores, key=lambda lang: scores[lang])
    if scores[best] == 0:
        return "und", script
    return best, script


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class CentroidClassifier:
    """Nearest centroid over unit-normalised embeddings; fitted once from examples."""

    def __init__(self, config: CentroidClassifierConfig, embed: EmbedFn) -> None:
        self.config = config
        self.embed = embed
        labels = list(config.examples)
        texts = [t for label in labels for t in config.examples[label]]
        vectors = [_unit(v) for v in embed(texts)]
        if len(vectors) != len(texts):
            raise ConfigError(
                f"routes.classifier: the embedding function returned {len(vectors)} vectors "
                f"for {len(texts)} examples"
            )
        self.centroids: dict[str, list[float]] = {}
        offset = 0
        for label in labels:
            group = vectors[offset : offset + len(config.examples[label])]
            offset += len(group)
            self.centroids[label] = _unit(
                [sum(col) / len(group) for col in zip(*group, strict=True)]
            )

    def predict(self, text: str) -> tuple[str, float]:
        """The nearest label and its cosine similarity."""
        (vector,) = self.embed([text])
        scored = [(label, _cosine(vector, c)) for label, c in self.centroids.items()]
        return max(scored, key=lambda pair: pair[1])


def _matches(rule: RouteRule, kind: str, text: str, language: str, script: str | None) -> bool:
    if rule.kinds and kind not in rule.kinds:
        return False
    if rule.languages and language not in rule.languages:
        return False
    if rule.scripts and script not in rule.scripts:
        return False
    if rule.min_chars is not None and len(text) < rule.min_chars:
        return False
    if rule.max_chars is not None and len(text) > rule.max_chars:
        return False
    if rule.pattern is not None:
        flags = re.I if rule.ignore_case else 0
        if not re.search(rule.pattern, text, flags):
            return False
    return True


class Router:
    """Routes inputs by :class:`RoutingConfig`; build once, call :meth:`route` per input."""

    def __init__(self, config: RoutingConfig, embed: EmbedFn | None = None) -> None:
        self.config = config
        self.classifier: CentroidClassifier | None = None
        if config.classifier is not None:
            if embed is None:
                raise ConfigError(
                    "routes.classifier needs an embedding function: pass embed=... "
                    "(e.g. sentence-transformers via pip install 'roadworthy[embeddings]')"
                )
            self.classifier = CentroidClassifier(config.classifier, embed)

    def route(self, kind: str, text: str) -> RouteDecision:
        language, script = detect_language(text)
        for index, rule in enumerate(self.config.rules):
            if _matches(rule, kind, text, language, script):
                name = rule.name or str(index)
                return RouteDecision(rule.route, f"rule:{name}", language, script)
        if self.classifier is not None and text.strip():
            label, score = self.classifier.predict(text)
            cfg = self.classifier.config
            if score >= cfg.min_similarity:
                route = cfg.routes.get(label, label)
                return RouteDecision(route, "classifier", language, script, label, round(score, 4))
        return RouteDecision(self.config.default, "default", language, script)
