"""``roadworthy run`` on the batch and auto paths against the fault-injecting upstream.

Real HTTP on loopback: the provider's batch endpoints (OpenAI files + batches, Anthropic
message batches) run on :class:`FaultServer`, some requests fail and are retried, and one
test SIGKILLs a real ``roadworthy run`` while its batch runs and resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roadworthy.cli.main import app
from roadworthy.config import load_project
from roadworthy.jobs.batch_run import BatchPath
from roadworthy.pipeline import Workspace
from roadworthy.providers import builtin_price, call_cost
from roadworthy.providers.base import Usage
from roadworthy.store import Store
from roadworthy.store.budgets import BudgetLedger, BudgetLimit
from roadworthy.store.tables import provider_batches
from roadworthy.testing import BatchOutcome, Fault, FaultServer

from ..conftest import write_project

pytestmark = pytest.mark.integration

KEY_ENV = "RW_BATCH_RUN_TEST_KEY"
runner = CliRunner()

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  up: {type: TYPE, base_url: URL, api_key_env: RW_BATCH_RUN_TEST_KEY}
models:
  mini: {provider: up, id: MODEL}
pipelines:
  triage:
    path: PATH
    batch: {poll_interval_s: 0, on_error: POLICY}
    input:
      fields:
        text: {type: string, max_chars: 500}
    escalate:
      output_in: {category: [billing]}
    steps:
      - generate: {prompt: triage, model: mini, output: schemas/triage.json}
"""


def answer(category: str, priority: str = "low") -> Fault:
    return Fault.ok(json.dumps({"category": category, "priority": priority}))


def project(
    tmp_path: Path,
    server: FaultServer,
    *,
    kind: str = "openai",
    path: str = "batch",
    policy: str = "resubmit",
    extra: str = "",
) -> Path:
    url = server.url + ("/v1" if kind == "openai" else "")
    model = "gpt-4o-mini" if kind == "openai" else "claude-3-5-haiku-20241022"
    config = (
        CONFIG.replace("TYPE", kind)
        .replace("URL", url)
        .replace("MODEL", model)
        .replace("PATH", path)
        .replace("POLICY", policy)
    )
    return write_project(tmp_path / "proj", config + extra)


def store_of(root: Path) -> Store:
    return Store.open(f"sqlite:///{root / '.roadworthy' / 'state.db'}")


def batch_rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(provider_batches.select())]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-batch-run-test")


def test_openai_batch_run_writes_items_like_the_sync_path(tmp_path: Path) -> None:
    schedule = [
        answer("technical"),  # line 1
        Fault.status(503),  # line 3: retryable, resubmitted in round 2
        Fault.context_length(),  # line 5: cannot succeed, fails at once
        Fault.ok("not json at all"),  # line 6: output check fails
        answer("billing", "high"),  # line 3 again (round 2): escalated by output_in
    ]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "my screen is black"}),
                "{not json",
                json.dumps({"id": "3", "text": "charged twice"}),
                json.dumps({"id": "4"}),
                json.dumps({"id": "5", "text": "a very long ticket"}),
                "",
                json.dumps({"id": "6", "text": "hello"}),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    with FaultServer(schedule) as server:
        root = project(tmp_path, server)
        result = runner.invoke(app, ["run", "triage", str(source), "-p", str(root), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert len(server.batches) == 2  # the first batch and one resubmission
        second = list(server.batches.values())[1]
        assert len(second.lines) == 1

    rows = lines_of(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 7]
    assert [r["status"] for r in rows] == [
        "done",
        "rejected",
        "escalated",
        "rejected",
        "failed",
        "failed",
    ]
    assert rows[0]["output"] == {"category": "technical", "priority": "low"}
    assert rows[1]["error"]["code"] == "malformed_json"
    assert rows[2]["review"]["id"] and rows[2]["review"]["code"] == "output_rule"
    assert rows[3]["error"]["code"] == "missing_field"
    assert rows[4]["error"]["code"] == "ContextTooLong"
    assert rows[5]["error"]["code"] == "output_invalid"

    store = store_of(root)
    try:
        calls = list(store.iter_table("calls"))
        assert {c["hop_reason"] for c in calls} == {"batch"}
        # line 3 has two rows (503 in round 1, answer in round 2); the rest one each
        by_item: dict[str, list[dict[str, Any]]] = {}
        for call in calls:
            by_item.setdefault(call["item_id"], []).append(call)
        assert sorted(len(v) for v in by_item.values()) == [1, 1, 1, 2]
        price = builtin_price("gpt-4o-mini")
        for call in calls:
            if call["status"] != "ok":
                assert call["cost_usd"] == 0  # failed batch requests are not billed
                continue
            usage = Usage(input_tokens=call["input_tokens"], output_tokens=call["output_tokens"])
            full = call_cost(usage, price)
            half = call_cost(usage, price, batch=True)
            assert full is not None and half is not None and half < full
            assert Decimal(str(call["cost_usd"])) == half
        batches = batch_rows(store)
        assert sorted(b["round"] for b in batches) == [1, 2]
        assert {b["status"] for b in batches} == {"collected"}
        assert [r["status"] for r in store.list_runs()] == ["finished"]
    finally:
        store.close()


def test_anthropic_batch_by_flag_with_the_realtime_fallback(tmp_path: Path) -> None:
    schedule = [
        answer("technical"),
        Fault.status(529),  # overloaded: retryable, goes real-time at full price
        answer("other"),  # the real-time call
    ]
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "a", "text": "one"}) + "\n" + json.dumps({"id": "b", "text": "two"})
    )
    out = tmp_path / "out.jsonl"
    with FaultServer(schedule) as server:
        root = project(tmp_path, server, kind="anthropic", path="sync", policy="realtime")
        result = runner.invoke(
            app, ["run", "triage", str(source), "-p", str(root), "-o", str(out), "--batch"]
        )
        assert result.exit_code == 0, result.output
        assert len(server.batches) == 1
        paths = [r["path"] for r in server.requests]
        assert paths == ["/v1/messages/batches", "/v1/messages"]

    rows = lines_of(out)
    assert [(r["line"], r["status"]) for r in rows] == [(1, "done"), (2, "done")]
    assert rows[1]["output"]["category"] == "other"
    store = store_of(root)
    try:
        reasons = sorted(c["hop_reason"] for c in store.iter_table("calls"))
        assert reasons == ["batch", "batch", "batch_fallback"]
    finally:
        store.close()


def test_a_killed_batch_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps({"id": str(i), "text": f"ticket {i}"}) for i in range(1, 5)) + "\n"
    )
    out = tmp_path / "out.jsonl"
    schedule = [answer("technical") for _ in range(4)]
    with FaultServer(schedule, batch_outcomes=[BatchOutcome.completed(polls=2)]) as server:
        root = project(tmp_path, server)
        cmd = [
            sys.executable,
            "-m",
            "roadworthy.cli.main",
            "run",
            "triage",
            str(source),
            "-p",
            str(root),
            "-o",
            str(out),
            "--poll-interval",
            "3600",  # it polls once, then waits: long enough to be killed mid-batch
        ]
        env = {**os.environ, KEY_ENV: "sk-batch-run-test", "COLUMNS": "200"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        db = root / ".roadworthy" / "state.db"
        try:
            for _ in range(6000):  # wait for the batch row (event polling, not timing)
                if server.batches and db.exists():
                    store = store_of(root)
                    try:  # its create answered: killed while it polls
                        if [r for r in batch_rows(store) if r["status"] == "submitted"]:
                            break
                    finally:
                        store.close()
                if proc.poll() is not None:
                    break
                subprocess.run(["sleep", "0.01"], check=True)
            assert proc.poll() is None, proc.communicate()[0].decode()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()

        store = store_of(root)
        try:
            assert {r["status"] for r in store.iter_table("items")} == {"running"}
            (row,) = batch_rows(store)
            assert row["status"] == "submitted" and len(row["custom_ids"]) == 4
            assert [r["status"] for r in store.list_runs()] == ["running"]
        finally:
            store.close()

        listed = runner.invoke(app, ["batches", "-p", str(root)])
        assert listed.exit_code == 0, listed.output
        assert "triage" in listed.output

        resumed = runner.invoke(
            app,
            ["run", "triage", str(source), "-p", str(root), "-o", str(out), "--resume"],
        )
        assert resumed.exit_code == 0, resumed.output
        assert "resuming batch run" in resumed.output
        assert len(server.batches) == 1  # polled again, never resubmitted
        uploads = [r for r in server.requests if r["path"] == "/v1/batches"]
        assert len(uploads) == 1

    rows = lines_of(out)
    assert [(r["line"], r["status"]) for r in rows] == [(i, "done") for i in range(1, 5)]
    store = store_of(root)
    try:
        assert len(list(store.iter_table("items"))) == 4
        assert len(list(store.iter_table("calls"))) == 4
        assert [r["status"] for r in store.list_runs()] == ["finished"]
        assert {b["status"] for b in batch_rows(store)} == {"collected"}
    finally:
        store.close()
    again = runner.invoke(app, ["batches", "-p", str(root)])
    assert "no unfinished batch runs" in again.output


def auto_project(tmp_path: Path, server: FaultServer, extra: str = "") -> Path:
    """A project on the auto path: priority 5 and up runs here, the rest goes to batch."""
    root = project(tmp_path, server, path="auto", extra=extra)
    config = (root / "roadworthy.yaml").read_text()
    (root / "roadworthy.yaml").write_text(
        config.replace(
            "    path: auto\n",
            "    path:\n      mode: auto\n      rules: [{priority_at_least: 5, path: sync}]\n"
            "      default: batch\n",
        )
    )
    return root


def test_auto_routes_each_line_by_priority_within_one_run(tmp_path: Path) -> None:
    extra = ""
    schedule = [answer("technical"), answer("other"), answer("technical")]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "urgent", "priority": 9}),
                json.dumps({"id": "2", "text": "later"}),
                json.dumps({"id": "3", "text": "later too", "priority": 1}),
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    with FaultServer(schedule) as server:
        root = auto_project(tmp_path, server, extra=extra)
        result = runner.invoke(app, ["run", "triage", str(source), "-p", str(root), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "1 sync, 0 async, 2 batch" in result.output
        assert len(server.batches) == 1
        (batch,) = server.batches.values()
        assert len(batch.lines) == 2

    rows = lines_of(out)
    assert [(r["line"], r["status"]) for r in rows] == [(1, "done"), (2, "done"), (3, "done")]
    store = store_of(root)
    try:
        by_line = {r["line_no"]: r["id"] for r in store.iter_table("items")}
        reasons = {c["item_id"]: c["hop_reason"] for c in store.iter_table("calls")}
        assert reasons[by_line[2]] == reasons[by_line[3]] == "batch"
        assert reasons[by_line[1]] != "batch"
        assert len(store.list_runs()) == 1
    finally:
        store.close()


@pytest.mark.parametrize("how", [["--path", "auto"], ["--async"]])
def test_resume_on_a_queue_path_is_refused_before_anything_is_sent(
    tmp_path: Path, how: list[str]
) -> None:
    """Ignoring --resume there would start a second run and send every line again."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "1", "text": "later"}) + "\n")
    with FaultServer([]) as server:
        root = auto_project(tmp_path, server)
        result = runner.invoke(
            app, ["run", "triage", str(source), "-p", str(root), "--resume", *how]
        )
        assert result.exit_code == 2, result.output
        assert "--resume works on the sync and batch paths" in result.output
        assert server.requests == [] and not server.batches
    store = store_of(root)
    try:
        assert store.list_runs() == []
    finally:
        store.close()


async def no_sleep(_: float) -> None:
    return None


def three_tickets(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """An input file of three tickets, and its lines."""
    source = tmp_path / "in.jsonl"
    raw = [json.dumps({"id": str(i), "text": f"ticket {i}"}).encode() for i in range(1, 4)]
    source.write_bytes(b"\n".join(raw) + b"\n")
    return source, raw


async def test_resume_admits_lines_a_dead_process_never_reached(tmp_path: Path) -> None:
    source, raw = three_tickets(tmp_path)
    with FaultServer([answer("technical") for _ in range(3)]) as server:
        root = project(tmp_path, server)
        workspace = Workspace(load_project(root))
        try:
            pipe = workspace.pipeline("triage")
            store = workspace.store
            run_id = store.start_run("triage", str(source.resolve()), {"path": "batch"})
            # the earlier process admitted line 1, then died before submitting anything
            assert BatchPath(workspace, pipe).admit(run_id, 1, raw[0]).status == "running"
            outcome = await BatchPath(workspace, pipe, sleep=no_sleep).resume(run_id)
            assert (outcome.admitted, outcome.submitted, outcome.resumed) == (2, 1, 0)
            (batch,) = server.batches.values()
            assert len(batch.lines) == 3
            rows = store.items_for_run(run_id)
            assert [(r["line_no"], r["status"]) for r in rows] == [(i, "done") for i in (1, 2, 3)]
            again = await BatchPath(workspace, pipe, sleep=no_sleep).resume(run_id)
            assert (again.admitted, again.submitted, again.resumed) == (0, 0, 0)
            assert len(server.batches) == 1 and len(store.items_for_run(run_id)) == 3
        finally:
            await workspace.aclose()
            workspace.store.close()


class Died(BaseException):
    """The process stopping dead at a chosen point (nothing after it runs)."""


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_run_that_died_before_hearing_its_batch_was_accepted(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider accepted the batch, the process died before writing so: the resume
    finds the batch by the token it was created with instead of paying for it twice
    (OpenAI keeps metadata); where a provider keeps none (Anthropic) it says so."""
    source, raw = three_tickets(tmp_path)
    with FaultServer([answer("technical") for _ in range(6)]) as server:
        root = project(tmp_path, server, kind=kind)
        workspace = Workspace(load_project(root))
        try:
            pipe = workspace.pipeline("triage")
            store = workspace.store
            run_id = store.start_run("triage", str(source.resolve()), {"path": "batch"})

            def die(*_: object) -> None:
                raise Died

            with monkeypatch.context() as patch:
                patch.setattr(BatchPath, "_record", die)
                with pytest.raises(Died):
                    await BatchPath(workspace, pipe, sleep=no_sleep).run(
                        run_id, enumerate(raw, 1), finish=False
                    )
            (row,) = batch_rows(store)
            assert row["status"] == "submitting" and len(server.batches) == 1
            outcome = await BatchPath(workspace, pipe, sleep=no_sleep).resume(run_id)
            rows = store.items_for_run(run_id)
            assert [(r["line_no"], r["status"]) for r in rows] == [(i, "done") for i in (1, 2, 3)]
            if kind == "openai":
                assert len(server.batches) == 1  # found and polled, not sent again
                assert (outcome.submitted, outcome.resumed) == (0, 1)
                assert [r["status"] for r in batch_rows(store)] == ["collected"]
            else:
                assert len(server.batches) == 2  # nothing to find it by: sent again
                assert "may run twice" in caplog.text
        finally:
            await workspace.aclose()
            workspace.store.close()


CAP = BudgetLimit(name="cap", limit_usd=Decimal("0.0004"))


def test_batch_requests_reserve_budget_and_settle_at_the_batch_price(tmp_path: Path) -> None:
    """A budget caps the batch path as it caps real-time calls: what does not fit is not sent."""
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps({"id": str(i), "text": f"ticket {i}"}) for i in range(5)) + "\n"
    )
    out = tmp_path / "out.jsonl"
    budget = f"budgets:\n  cap: {{limit_usd: {CAP.limit_usd}, scope: global}}\n"
    with FaultServer([answer("technical")] * 5) as server:
        root = project(tmp_path, server, extra=budget)
        result = runner.invoke(app, ["run", "triage", str(source), "-p", str(root), "-o", str(out)])
        assert result.exit_code == 0, result.output
        sent = sum(len(b.lines) for b in server.batches.values())

    rows = lines_of(out)
    done = [r for r in rows if r["status"] == "done"]
    refused = [r for r in rows if r["status"] != "done"]
    assert done and refused, rows  # the cap lets some requests through, not all
    assert len(done) == sent  # nothing refused was sent
    assert {r["error"]["code"] for r in refused} == {"BudgetExceeded"}

    store = store_of(root)
    try:
        costs = [Decimal(str(c["cost_usd"])) for c in store.iter_table("calls")]
        assert len(costs) == sent and all(c > 0 for c in costs)
        (status,) = BudgetLedger(store.engine).status([CAP])
        assert status.reserved_usd == 0  # every reservation settled
        assert status.spent_usd == sum(costs)  # at the batch price the ledger recorded
        assert status.spent_usd <= status.limit_usd
    finally:
        store.close()
