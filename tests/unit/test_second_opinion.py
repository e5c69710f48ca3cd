"""Escalation on disagreement between two models."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.review import ReviewQueue

from ..conftest import SCRIPTED_CONFIG, write_project

CONFIG = (
    SCRIPTED_CONFIG.replace(
        "  fake: {type: scripted}", "  fake: {type: scripted}\n  fake2: {type: scripted}"
    ).replace("models:\n", "models:\n  other: {provider: fake2, id: claude-haiku-4-5}\n")
    + "    escalate:\n      second_opinion: {model: other, fields: [category]}\n"
)


def run(tmp_path: Path, text: str) -> tuple[Workspace, str, str | None]:
    first = ScriptedProvider([Reply(text={"category": "billing", "priority": "high"})], name="fake")
    second = ScriptedProvider(
        [
            Reply(when="app", text={"category": "technical", "priority": "high"}),
            Reply(text={"category": "billing", "priority": "low"}),
        ],
        name="fake2",
    )
    ws = Workspace(
        load_project(write_project(tmp_path, CONFIG)), providers={"fake": first, "fake2": second}
    )
    result = asyncio.run(ws.pipeline("triage").run({"text": text}))
    return ws, result.status, result.reason


def test_agreement_on_the_compared_fields_is_done(tmp_path: Path) -> None:
    ws, status, _ = run(tmp_path, "refund my invoice")  # priorities differ, but are not compared
    assert status == "done"
    assert len(ws.store.list_calls()) == 2


def test_disagreement_escalates_with_both_answers(tmp_path: Path) -> None:
    ws, status, reason = run(tmp_path, "the app is broken")
    assert status == "escalated"
    assert reason == "other disagrees (category: 'billing' vs 'technical')"
    (pending,) = ReviewQueue(ws.store).list()
    assert pending.reason_code == "disagreement" and pending.output["category"] == "billing"
