"""The prompt registry on SQLite and PostgreSQL: versions, labels, TTL, outages, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace
from roadworthy.prompts import PromptRegistry, load_prompts, render_messages
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.store import Store

from ..conftest import PROMPT, SCRIPTED_CONFIG, write_project

V2 = PROMPT.replace("Classify the ticket.", "Classify the ticket. Be terse.")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def project(tmp_path: Path, store_url: str) -> Path:
    root = write_project(
        tmp_path / "proj",
        SCRIPTED_CONFIG.replace("storage: sqlite:///.roadworthy/state.db", f"storage: {store_url}"),
    )
    return root


def registry(root: Path, store_url: str, clock: Clock | None = None) -> PromptRegistry:
    return PromptRegistry(Store.open(store_url), root, ttl_s=30, clock=clock or Clock())


def test_sync_creates_versions_only_on_change(tmp_path: Path, store_url: str) -> None:
    root = project(tmp_path, store_url)
    reg = registry(root, store_url)
    first = reg.sync(actor="alice")
    assert [(v.prompt_id, v.version) for v in first.created] == [("triage", 1)]
    assert [(m.label, m.to_version, m.actor) for m in first.labelled] == [
        ("production", 1, "alice")
    ]
    again = reg.sync(actor="alice")
    assert again.created == [] and [v.version for v in again.unchanged] == [1]
    (root / "prompts" / "triage.yaml").write_text(V2)
    third = reg.sync(actor="bob")
    assert [v.version for v in third.created] == [2]
    assert third.labelled == []  # production stays on v1 until someone promotes v2
    assert reg.store.prompts.labels("triage") == {"production": 1}


def test_promote_and_rollback_reach_a_running_process_within_the_ttl(
    tmp_path: Path, store_url: str
) -> None:
    root = project(tmp_path, store_url)
    clock = Clock()
    running = registry(root, store_url, clock)  # the serving process
    admin = registry(root, store_url)  # the operator's CLI, another process
    admin.sync(actor="alice")
    (root / "prompts" / "triage.yaml").write_text(V2)
    admin.sync(actor="alice")

    def rendered() -> str:
        return render_messages(running.resolve("triage@production").doc, {"text": "x"})[0].content

    assert rendered() == "Classify the ticket."
    admin.promote("triage", 2, label="production", actor="alice", why="terser output")
    clock.now += 29
    assert rendered() == "Classify the ticket."  # still inside the TTL
    clock.now += 2
    assert rendered() == "Classify the ticket. Be terse."
    admin.rollback("triage", label="production", actor="bob", why="accuracy dropped")
    clock.now += 31
    assert rendered() == "Classify the ticket."
    assert running.resolve("triage@2").version == 2  # pinned versions ignore labels
    history = [
        (m.from_version, m.to_version, m.action, m.actor, m.reason)
        for m in admin.store.prompts.history("triage", "production")
    ]
    assert history == [
        (None, 1, "promote", "alice", "first version of a new prompt"),
        (1, 2, "promote", "alice", "terser output"),
        (2, 1, "rollback", "bob", "accuracy dropped"),
    ]


def test_round_trip_file_registry_render(tmp_path: Path, store_url: str) -> None:
    root = project(tmp_path, store_url)
    reg = registry(root, store_url)
    reg.sync()
    values = {"text": "{{ 7 * 7 }} and ünïcødé 🚀", "unused": 1}
    from_file = render_messages(load_prompts(root).prompts["triage"].doc, values)
    from_registry = render_messages(reg.resolve("triage@1").doc, values)
    assert from_file == from_registry
    assert from_registry[1].content == "Ticket: {{ 7 * 7 }} and ünïcødé 🚀"


SYNC_SCRIPT = """
import sys
from pathlib import Path
from roadworthy.prompts import PromptRegistry
from roadworthy.store import Store
reg = PromptRegistry(Store.open(sys.argv[1]), Path(sys.argv[2]))
for _ in range(5):
    reg.sync(actor=sys.argv[3])
"""


def test_concurrent_syncs_from_two_processes_create_one_version(
    tmp_path: Path, store_url: str
) -> None:
    root = project(tmp_path, store_url)
    Store.open(store_url).close()  # migrate once, up front
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SYNC_SCRIPT, store_url, str(root), who],
            env={**os.environ},
            stderr=subprocess.PIPE,
        )
        for who in ("p1", "p2")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    store = Store.open(store_url)
    assert [v.version for v in store.prompts.versions("triage")] == [1]
    assert len(store.prompts.history("triage")) == 1


def test_sqlite_registry_unreadable_serves_last_known_good(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    root = project(tmp_path, url)
    reg = registry(root, url)
    reg.sync()
    (root / "prompts" / "triage.yaml").write_text(V2)
    reg.sync()
    reg.promote("triage", 2, label="production")
    assert reg.resolve("triage@production").version == 2
    reg.store.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "state.db") + suffix).unlink(missing_ok=True)
    reg.ttl_s = 0  # force a label lookup, which now fails
    served = reg.resolve("triage@production")
    assert (served.version, served.stale) == (2, True)
    assert render_messages(served.doc, {"text": "x"})[0].content == "Classify the ticket. Be terse."
    never = reg.resolve("triage@staging")  # never resolved before: the file is served
    assert never.version is None and never.stale


def test_postgres_registry_gone_mid_run_serves_last_known_good(
    tmp_path: Path, postgres_url: str
) -> None:
    root = project(tmp_path, postgres_url)
    ws = Workspace(
        load_project(root),
        providers={
            "fake": ScriptedProvider(
                [Reply(text={"category": "billing", "priority": "high"})], name="fake"
            )
        },
    )
    pipe = ws.pipeline("triage")
    import asyncio

    first = asyncio.run(pipe.run({"text": "charged twice"}))
    assert first.status == "done"
    (call,) = ws.store.list_calls()
    assert (call["prompt_id"], call["prompt_version"], call["prompt_label"]) == (
        "triage",
        1,
        "production",
    )
    # the registry's database goes away while the process keeps serving
    admin = sa.create_engine(postgres_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    ws.prompts.ttl_s = 0
    ws.store.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{postgres_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()
    served = ws.prompts.resolve("triage")
    assert served.stale and served.version == 1
    prepared = pipe.steps[0].prepare({"text": "still works"})
    assert prepared.request.messages[1].content == "Ticket: still works"


def test_pipeline_calls_record_prompt_version_and_label(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    root = project(tmp_path, url)
    import asyncio

    provider = ScriptedProvider(
        [Reply(text={"category": "billing", "priority": "high"})], name="fake"
    )
    ws = Workspace(load_project(root), providers={"fake": provider})
    asyncio.run(ws.pipeline("triage").run({"text": "a"}))
    (root / "prompts" / "triage.yaml").write_text(V2)
    ws.prompts.sync()
    ws.prompts.promote("triage", 2, label="production")
    asyncio.run(ws.pipeline("triage").run({"text": "b"}))
    rows = sorted(ws.store.list_calls(), key=lambda r: r["id"])
    assert [(r["prompt_version"], r["prompt_label"]) for r in rows] == [
        (1, "production"),
        (2, "production"),
    ]
    assert provider.requests[1].messages[0].content == "Classify the ticket. Be terse."
    assert json.loads(json.dumps(rows[0]["prompt_id"])) == "triage"
