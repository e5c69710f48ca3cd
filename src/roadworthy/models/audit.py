"""The LLM judge behind free-text audits of semantic cache hits.

An audited hit has two answers to one question: the cached one and the model's fresh
one. For structured outputs equality decides; for free text two right answers rarely
match word for word, so a judge model is asked whether the cached answer says the same
thing as the fresh one. It reuses the rubric judge of :mod:`roadworthy.evals.judges`
(structured verdict, reason before score, an unparseable reply is *no verdict*, never a
guess), with the fresh answer as the reference.

``roadworthy.evals`` sits above the model stack; the import is deferred to the moment a
route that names a judge is built, and only ``evals.judges`` is used, which itself
depends on nothing above ``providers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..providers.base import Provider

if TYPE_CHECKING:
    from .cache import AnswerJudge

__all__ = ["SAME_ANSWER_CRITERIA", "rubric_answer_judge"]

SAME_ANSWER_CRITERIA = (
    "The response gives the same answer as the reference answer: the same facts, numbers, "
    "dates, names, decisions and instructions. Wording, order and length may differ; a "
    "response that adds, drops or changes any of those does not give the same answer."
)
_SCALE = 5
_AGREE = 0.75  # normalised score: 4 or 5 of 5 counts as the same answer


def rubric_answer_judge(provider: Provider, model: str, *, seed: int | None = 0) -> AnswerJudge:
    """An :class:`~roadworthy.models.cache.AnswerJudge` asking ``model`` through ``provider``.

    ``provider`` is normally the judge model's own stack (recorded, budgeted, retried), so
    judge calls are ledger rows like any other call.
    """
    from ..evals.judges import JudgeModel, judge_rubric

    judge = JudgeModel(provider=provider, model=model, seed=seed)

    async def same_answer(question: str, cached: str, fresh: str) -> bool | None:
        result = await judge_rubric(
            judge,
            task_input=question,
            response=cached,
            criteria=[SAME_ANSWER_CRITERIA],
            reference=fresh,
            scale=_SCALE,
        )
        if result.score is None:
            return None
        return result.score >= _AGREE

    return same_answer
