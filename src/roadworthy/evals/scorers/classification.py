"""Classification: a per-example label match and the run-level report behind it.

``label-match`` compares one field of the output (``category``) with the same field of
the example's ``expected``. Each score records the expected and predicted labels, so
:func:`classification_report` can build per-class precision, recall, F1 and the
confusion matrix from a run's scores without re-reading outputs. An output with no label
(the system failed, or the field is missing) is a miss, shown in the matrix as the
predicted label ``(none)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..datasets import Example
from ..stats import Interval, wilson_interval
from .base import Output, Score, ScoreFn, output_json, scorer
from .deterministic import _MISSING, get_field

__all__ = [
    "NO_LABEL",
    "ClassReport",
    "ClassificationReport",
    "classification_report",
    "label_match",
]

NO_LABEL = "(none)"


@dataclass(frozen=True)
class ClassReport:
    """Precision, recall and F1 of one class; ``None`` where the denominator is 0.

    F1 is ``2TP / (2TP + FP + FN)``, so a class that is never predicted has F1 0, not
    ``None``: macro F1 then counts it as the failure it is.
    """

    label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int
    predicted: int

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "predicted": self.predicted,
        }


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy (with its Wilson interval), per-class figures and the confusion matrix.

    ``matrix[i][j]`` counts examples whose expected label is ``labels[i]`` and predicted
    label is ``columns[j]``; ``columns`` is ``labels`` plus any predicted label not in it
    (``(none)`` for missing predictions, and labels the model invented).
    """

    n: int
    correct: int
    accuracy: float | None
    accuracy_interval: Interval
    macro_f1: float | None
    classes: tuple[ClassReport, ...]
    labels: tuple[str, ...]
    columns: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    unscored: int

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "accuracy_interval": self.accuracy_interval.to_json(),
            "macro_f1": self.macro_f1,
            "classes": [c.to_json() for c in self.classes],
            "confusion": {
                "labels": list(self.labels),
                "columns": list(self.columns),
                "matrix": [list(r) for r in self.matrix],
            },
            "unscored": self.unscored,
        }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def classification_report(
    pairs_or_scores: Sequence[tuple[str, str | None]] | Sequence[Score],
    *,
    labels: Sequence[str] | None = None,
    level: float = 0.95,
) -> ClassificationReport:
    """Build the report from ``(expected, predicted)`` pairs or from label-match scores.

    Unscored scores (no expected label) are counted and left out. ``labels`` fixes the
    class order (e.g. the schema's enum); by default, expected labels in sorted order.
    """
    pairs: list[tuple[str, str]] = []
    unscored = 0
    for item in pairs_or_scores:
        if isinstance(item, Score):
            if item.unscored or "expected" not in item.details:
                unscored += 1
                continue
            expected, predicted = item.details["expected"], item.details.get("predicted")
        else:
            expected, predicted = item
        pairs.append((str(expected), NO_LABEL if predicted is None else str(predicted)))
    ordered = list(labels) if labels is not None else sorted({e for e, _ in pairs})
    for expected, _ in pairs:
        if expected not in ordered:
            ordered.append(expected)
    columns = list(ordered) + sorted({p for _, p in pairs if p not in ordered})
    index = {label: i for i, label in enumerate(columns)}
    matrix = [[0] * len(columns) for _ in ordered]
    for expected, predicted in pairs:
        matrix[index[expected]][index[predicted]] += 1
    classes = []
    for i, label in enumerate(ordered):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted_count = sum(row[i] for row in matrix)
        precision = _ratio(tp, predicted_count)
        recall = _ratio(tp, support)
        # 2TP / (2TP + FP + FN): the harmonic mean of precision and recall, and still
        # defined (0) for a class the model never predicts.
        f1 = _ratio(2 * tp, support + predicted_count)
        classes.append(ClassReport(label, precision, recall, f1, support, predicted_count))
    n = len(pairs)
    correct = sum(1 for e, p in pairs if e == p)
    f1s = [c.f1 for c in classes if c.support > 0 and c.f1 is not None]
    return ClassificationReport(
        n=n,
        correct=correct,
        accuracy=_ratio(correct, n),
        accuracy_interval=wilson_interval(correct, n, level=level),
        macro_f1=sum(f1s) / len(f1s) if f1s else None,
        classes=tuple(classes),
        labels=tuple(ordered),
        columns=tuple(columns),
        matrix=tuple(tuple(r) for r in matrix),
        unscored=unscored,
    )


def _summarize(scores: Sequence[Score], params: Mapping[str, Any]) -> ClassificationReport:
    labels = params.get("labels")
    return classification_report(scores, labels=list(labels) if labels else None)


@scorer("label-match", summarize=_summarize)
def label_match(
    field: str | None = None, *, labels: Sequence[str] | None = None, ignore_case: bool = False
) -> ScoreFn:
    """The output's ``field`` (or whole text) equals the expected label.

    ``labels`` is accepted for documentation and to order the report; a predicted label
    outside it still counts as a (wrong) prediction.
    """

    def norm(value: Any) -> str:
        text = str(value).strip()
        return text.lower() if ignore_case else text

    def score(example: Example, output: Output) -> Score:
        expected = example.expected_field(field) if field else example.expected
        if expected is None or isinstance(expected, dict | list):
            what = f"expected.{field}" if field else "a string 'expected'"
            return Score.skip(f"example has no {what}")
        want = norm(expected)
        if field is None:
            text = output.as_text
            if text is None:
                return Score.fail(f"no output ({output.error or 'empty'})", expected=want)
            got: str | None = norm(text)
        else:
            ok, data, problem = output_json(output)
            if not ok:
                return Score.fail(problem, expected=want, predicted=None)
            value = get_field(data, field)
            if value is _MISSING or value is None:
                return Score.fail(f"output has no {field!r}", expected=want, predicted=None)
            got = norm(value)
        return Score.check(
            got == want, f"expected {want!r}, got {got!r}", expected=want, predicted=got
        )

    return score
