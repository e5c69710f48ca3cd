"""The job endpoints through httpx's ASGI transport: enqueue, job status, batch counts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from roadworthy.config import load_project
from roadworthy.jobs import EmbeddedQueue, Worker
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.server import create_app
from roadworthy.store.keys import KeyStore

from ..conftest import SCRIPTED_CONFIG, write_project

GOOD = {"category": "billing", "priority": "high"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = write_project(tmp_path / "proj", SCRIPTED_CONFIG)
    provider = ScriptedProvider([Reply(text=GOOD)], name="fake")
    return Workspace(load_project(root), providers={"fake": provider})


def client_for(ws: Workspace, token: str | None = None) -> httpx.AsyncClient:
    if token is None:
        _, token = KeyStore(ws.store.engine).create("tests", ("run",))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ws)),
        base_url="http://test",
        headers={"authorization": f"Bearer {token}"},
    )


async def drain(ws: Workspace) -> None:
    """Run a worker in-process until the queue is empty."""
    queue = EmbeddedQueue(ws.store)
    stop = asyncio.Event()
    worker = Worker(ws, queue, concurrency=2, poll_s=0.01)

    def on_result(*_: object) -> None:
        with ws.store.engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
            ).scalar()
        if left == 0:
            stop.set()

    worker.on_result = on_result
    await worker.run(stop)


async def test_one_item_job_runs_and_reports_its_result(ws: Workspace) -> None:
    client = client_for(ws)
    resp = await client.post("/v1/pipelines/triage/jobs", json={"input": {"text": "charged"}})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    job_id, batch_id = body["jobs"][0]["id"], body["batch_id"]
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "queued" and job["attempts"] == 0 and "result" not in job
    assert "lease_token" not in job
    await drain(ws)
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "done" and job["result"]["status"] == "done"
    assert job["result"]["output"] == GOOD
    batch = (await client.get(f"/v1/batches/{batch_id}")).json()
    assert batch["counts"] == {"queued": 0, "running": 0, "done": 1, "dead": 0}
    assert batch["finished"] and batch["total"] == 1


async def test_many_items_with_idempotency_keys(ws: Workspace) -> None:
    client = client_for(ws)
    inputs = [
        {"input": {"text": "a"}, "idempotency_key": "k-a"},
        {"input": {"text": "b"}},
        {"input": {"text": "c"}, "idempotency_key": "k-c"},
    ]
    resp = await client.post("/v1/pipelines/triage/jobs", json={"inputs": inputs, "priority": 3})
    assert resp.status_code == 202
    first = resp.json()
    assert len(first["jobs"]) == 3
    again = await client.post(
        "/v1/pipelines/triage/jobs", json={"input": {"text": "a"}, "idempotency_key": "k-a"}
    )
    assert again.json()["jobs"][0]["id"] == first["jobs"][0]["id"]
    batch = (await client.get(f"/v1/batches/{first['batch_id']}")).json()
    assert batch["counts"]["queued"] == 3 and not batch["finished"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        ("/v1/pipelines/nope/jobs", {"input": {"text": "a"}}, 404, "pipeline_not_found"),
        ("/v1/pipelines/triage/jobs", {}, 400, None),
        ("/v1/pipelines/triage/jobs", {"input": {}, "inputs": [{"input": {}}]}, 400, None),
        ("/v1/pipelines/triage/jobs", {"inputs": []}, 400, "invalid_request"),
        ("/v1/pipelines/triage/jobs", {"inputs": [{"text": "no wrapper"}]}, 400, None),
    ],
)
async def test_bad_job_requests(
    ws: Workspace, path: str, payload: dict[str, object], status: int, code: str | None
) -> None:
    resp = await client_for(ws).post(path, json=payload)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def test_unknown_job_and_batch_are_404_and_keys_are_required(ws: Workspace) -> None:
    client = client_for(ws)
    assert (await client.get("/v1/jobs/nope")).json()["error"]["code"] == "job_not_found"
    assert (await client.get("/v1/batches/nope")).status_code == 404
    anonymous = client_for(ws, token="rw-wrong")
    assert (await anonymous.get("/v1/jobs/nope")).status_code == 401
    resp = await anonymous.post("/v1/pipelines/triage/jobs", json={"input": {"text": "a"}})
    assert resp.status_code == 401
