"""The whole stack against the fault-injecting upstream over real HTTP.

A batch runs through a route whose primary upstream follows a mixed fault schedule and
whose fallback answers normally. Whatever the mix, every item ends done or failed with
a recorded error class, no hop makes more attempts than configured, every request the
upstreams saw is a ledger row, and only billed calls carry cost.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace, run_file
from roadworthy.testing import Fault, FaultServer

from ..conftest import write_project

MAX_ATTEMPTS = 3
GOOD = json.dumps({"category": "billing", "priority": "high"})

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  flaky: {{type: openai, base_url: "{primary}/v1", api_key_env: null, json_mode: json_object}}
  steady: {{type: openai, base_url: "{backup}/v1", api_key_env: null, json_mode: json_object}}
models:
  cheap: {{provider: flaky, id: cheap-1, tier: small, price: {{input: 1, output: 2}}}}
  backup: {{provider: steady, id: backup-1, tier: large, price: {{input: 10, output: 20}}}}
routes:
  triage:
    fallbacks: [cheap, {{model: backup, on_errors: [Timeout, RateLimited, ProviderUnavailable, MalformedResponse, ContextTooLong]}}]
    retry: {{max_attempts: {attempts}, base_delay_s: 0.001, max_delay_s: 0.01, attempt_timeout_s: 0.5}}
    breaker: {{min_calls: 1000}}
    deadline_s: 20
pipelines:
  triage:
    input: {{fields: {{text: {{type: string}}}}}}
    steps:
      - generate: {{prompt: triage, route: triage, output: schemas/triage.json}}
"""


def mixed_schedule() -> list[Fault]:
    return [
        Fault.status(429, retry_after="0"),
        Fault.ok(GOOD),
        Fault.status(429),
        Fault.status(500),
        Fault.ok(GOOD),
        Fault.status(502),
        Fault.status(503),
        Fault.hang(5),
        Fault.reset(),
        Fault.ok(GOOD),
        Fault.reset_mid_body(),
        Fault.raw(b"<html>oops</html>"),
        Fault.truncated(),
        Fault.slow(0.02, GOOD),
        Fault.context_length(),
        Fault.content_filter(),
        Fault.filtered_output(),
        Fault.ok(GOOD),
        Fault.status(401, message="invalid api key"),
    ]


async def test_batch_under_mixed_faults_ends_every_item_and_accounts_cost(
    tmp_path: Path,
) -> None:
    with (
        FaultServer(mixed_schedule(), cycle=True, usage_from_request=True) as primary,
        FaultServer([Fault.ok(GOOD)], cycle=True, usage_from_request=True) as backup,
    ):
        root = write_project(
            tmp_path / "proj",
            CONFIG.format(primary=primary.url, backup=backup.url, attempts=MAX_ATTEMPTS),
        )
        source = tmp_path / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"id": n, "text": f"ticket {n}"}) + "\n" for n in range(24))
        )
        ws = Workspace(load_project(root))
        try:
            outcome = await run_file(ws.pipeline("triage"), source, concurrency=4)
            items = ws.store.items_for_run(outcome.run_id)
            calls = ws.store.list_calls(run_id=outcome.run_id, limit=10_000)
        finally:
            await ws.aclose()
            ws.store.close()
        sent = len(primary.requests) + len(backup.requests)

    assert len(items) == 24
    for item in items:
        assert item["status"] in ("done", "failed"), item
        if item["status"] == "failed":
            assert item["error_code"] and item["reason"]
    statuses = Counter(i["status"] for i in items)
    assert statuses["done"] >= 18  # the fallback rescued most of what the primary failed
    failed_codes = {i["error_code"] for i in items if i["status"] == "failed"}
    assert failed_codes <= {"AuthFailed", "ContentFiltered"}  # nothing a fallback could cure

    assert len(calls) == sent  # every request the upstreams saw is a ledger row
    per_hop = Counter((c["trace_id"], c["model_name"]) for c in calls)
    assert max(per_hop.values()) <= MAX_ATTEMPTS
    assert all(c["attempt"] <= MAX_ATTEMPTS for c in calls)
    for call in calls:
        if call["status"] == "ok":
            assert call["cost_usd"] is not None and Decimal(str(call["cost_usd"])) > 0
        else:
            assert call["error_class"]
            assert call["cost_usd"] is None or Decimal(str(call["cost_usd"])) == 0
    backups = [c for c in calls if c["model_name"] == "backup"]
    assert backups and all(c["fallback_depth"] == 1 and c["hop_reason"] for c in backups)
    kinds = {c["error_class"] for c in calls if c["status"] != "ok"}
    assert {"RateLimited", "ProviderUnavailable", "Timeout", "MalformedResponse"} <= kinds
    assert {"ContextTooLong", "ContentFiltered", "AuthFailed"} <= kinds
