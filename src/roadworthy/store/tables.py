"""The store's tables as SQLAlchemy Core metadata.

This module describes the *current* schema for queries; migrations under ``migrations/``
create it. A test compares the two so they cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "ITEM_STATUSES",
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "budget_alerts",
    "budget_counters",
    "cache_entries",
    "calls",
    "drill_results",
    "eval_cache",
    "eval_results",
    "eval_runs",
    "items",
    "jobs",
    "label_moves",
    "metadata",
    "prompt_labels",
    "prompt_versions",
    "provider_batches",
    "review_items",
    "runs",
]

metadata = MetaData()

# An item is "pending" while queued and "running" while a worker has it; every other
# status is terminal and carries a reason when it is not "done".
ITEM_STATUSES = (
    "pending",
    "running",
    "deferred",
    "done",
    "degraded",
    "escalated",
    "rejected",
    "failed",
)
TERMINAL_STATUSES = frozenset({"done", "degraded", "escalated", "rejected", "failed"})

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("source", Text),
    Column("status", String(16), nullable=False),
    Column("options", JSON),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

items = Table(
    "items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id")),
    Column("pipeline", String(200), nullable=False),
    Column("item_key", String(200), nullable=False),
    Column("line_no", Integer),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("error_code", String(64)),
    Column("error_field", String(200)),
    Column("input", JSON),
    Column("input_hash", String(64), nullable=False),
    Column("output", JSON),
    Column("trace_id", String(32), nullable=False),
    Column("latency_ms", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("reviewed_by", String(200)),
    Column("ingest", JSON),
    Column("route", String(200)),
    Index("ix_items_pipeline_key", "pipeline", "item_key"),
    Index("ix_items_run_status", "run_id", "status"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column("item_id", String(36)),
    Column("run_id", String(36)),
    Column("pipeline", String(200)),
    Column("step", String(200)),
    Column("provider", String(100), nullable=False),
    Column("model", String(200), nullable=False),
    Column("model_name", String(200)),
    Column("tier", String(50)),
    Column("prompt_id", String(200)),
    Column("prompt_version", Integer),
    Column("prompt_label", String(100)),
    Column("experiment", String(200)),
    Column("arm", String(100)),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cached_read_tokens", Integer),
    Column("cache_write_tokens", Integer),
    Column("cost_usd", Numeric(20, 10)),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("status", String(16), nullable=False),
    Column("error_class", String(64)),
    Column("error_message", Text),
    Column("attempt", Integer, nullable=False),
    Column("fallback_depth", Integer, nullable=False),
    Column("cache_outcome", String(16), nullable=False),
    Column("finish_reason", String(32)),
    Column("request_id", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("route", String(200)),
    Column("hop_reason", String(100)),
    Column("saved_usd", Numeric(20, 10)),
    Column("cache_similarity", Float),
    # The service API key the call was made for (its id, never the secret), and whether
    # the token counts were estimated (a stream without a usage chunk, a cut stream).
    Column("api_key_id", String(36)),
    Column("usage_estimated", Boolean),
    Index("ix_calls_trace", "trace_id"),
    Index("ix_calls_run", "run_id"),
    Index("ix_calls_created", "created_at"),
    Index("ix_calls_api_key", "api_key_id", "created_at"),
)

# Prompt versions are immutable: a row is written once and never updated.
prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prompt_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("content", JSON, nullable=False),
    Column("source_path", Text),
    Column("rendered_tokens", Float),
    Column("created_by", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("prompt_id", "version", name="uq_prompt_versions_id_version"),
)

# A label is a movable pointer to one version. (A weighted split between versions, for
# gradual rollout and A/B tests, will hang off this key in a table of its own.)
prompt_labels = Table(
    "prompt_labels",
    metadata,
    Column("prompt_id", String(200), primary_key=True),
    Column("label", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every label move, for audit and for rollback ("back to the previous target").
label_moves = Table(
    "prompt_label_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prompt_id", String(200), nullable=False),
    Column("label", String(100), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer, nullable=False),
    Column("action", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    Column("moved_at", DateTime(timezone=True), nullable=False),
    Index("ix_label_moves_prompt_label", "prompt_id", "label"),
)

# Budget spend per budget and period, in nano-USD so arithmetic is exact on every backend.
# A call reserves its estimated cost here (a conditional UPDATE, atomic across processes)
# and moves it from reserved to spent, at its real cost, when it settles.
budget_counters = Table(
    "budget_counters",
    metadata,
    Column("budget", String(200), primary_key=True),
    Column("period", String(10), primary_key=True),
    Column("spent_nusd", BigInteger, nullable=False),
    Column("reserved_nusd", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A soft threshold crossed, once per budget, period and threshold.
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("budget", String(200), nullable=False),
    Column("period", String(10), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("used_nusd", BigInteger, nullable=False),
    Column("limit_nusd", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("budget", "period", "threshold", name="uq_budget_alerts_once"),
)

# One row per fallback-drill hop run; the latest per (route, hop) is its status.
drill_results = Table(
    "drill_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("route", String(200), nullable=False),
    Column("hop", Integer, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_class", String(64)),
    Column("detail", Text),
    Column("inputs", Integer, nullable=False),
    Column("source", String(16), nullable=False),
    Column("ran_at", DateTime(timezone=True), nullable=False),
    Index("ix_drill_results_route_hop", "route", "hop", "ran_at"),
)

# The human review queue. A row is claimed with a lease; an expired lease makes it
# pending again, so a reviewer who walks away never strands an item.
review_items = Table(
    "review_items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("item_id", String(36)),
    Column("pipeline", String(200), nullable=False),
    Column("trace_id", String(32)),
    Column("reason", Text, nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("input", JSON),
    Column("output", JSON),
    Column("context", JSON),
    Column("status", String(16), nullable=False),
    Column("claimed_by", String(200)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("decision", String(16)),
    Column("final_output", JSON),
    Column("reviewer", String(200)),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_review_items_status", "status", "created_at"),
    Index("ix_review_items_item", "item_id"),
)

# An evaluation run: which suite, subset, prompt version, model and commit it measured,
# its summary and whether it passed its gate (the promotion check reads this).
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("suite", String(200), nullable=False),
    Column("subset", String(100)),
    Column("prompt_id", String(200)),
    Column("prompt_version", Integer),
    Column("prompt_hash", String(64)),
    Column("prompt_ref", String(300)),
    Column("model", String(200)),
    Column("git_commit", String(64)),
    Column("repeats", Integer, nullable=False),
    Column("examples", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("passed", Integer),
    Column("summary", JSON),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_eval_runs_suite", "suite", "started_at"),
)

# One row per example and repeat of a run, with its output and every scorer's verdict.
eval_results = Table(
    "eval_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("example_id", String(200), nullable=False),
    Column("repeat", Integer, nullable=False),
    Column("output", JSON),
    Column("scores", JSON),
    Column("cache_key", String(64)),
    Index("ix_eval_results_run", "run_id"),
)

# Model outputs by (prompt version, model, settings, input, repeat): re-running a suite
# after changing only a scorer costs nothing.
eval_cache = Table(
    "eval_cache",
    metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("output", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# API keys of the HTTP service. Only a salted hash of each secret is kept; ``prefix`` is
# the public part of the key, so a lookup finds one row without scanning hashes.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("prefix", String(32), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    # Per-key limits, enforced by the model stack: a budget per period, requests/minute.
    Column("budget_usd", Numeric(20, 10)),
    Column("budget_period", String(8)),
    Column("rpm", Integer),
)

# Model answers by exact request key. ``expires_at`` and ``used_at`` are epoch seconds so
# TTL and least-recently-used order compare as plain numbers on every backend. Rows of a
# route with a semantic cache also keep the embedded query and its partition (model,
# prompt version, settings and every message but the last), which semantic search scans.
cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("route", String(200), nullable=False),
    Column("prompt_id", String(200)),
    Column("prompt_version", Integer),
    Column("model", String(200), nullable=False),
    Column("completion", JSON, nullable=False),
    Column("cost_usd", Numeric(20, 10)),
    Column("partition", String(64)),
    Column("query", Text),
    Column("embedding", LargeBinary),
    Column("hits", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", Float),
    Column("used_at", Float, nullable=False),
    Index("ix_cache_entries_route_used", "route", "used_at"),
    Index("ix_cache_entries_prompt", "prompt_id", "prompt_version"),
    Index("ix_cache_entries_partition_created", "partition", "created_at"),
)

# The embedded job queue (roadworthy.jobs). A job is ``queued`` until a worker claims it
# (``running`` with a lease deadline and a fresh ``lease_token``), then ``done`` or, after
# ``max_attempts``, ``dead`` with its last error. ``batch_id`` is a ``runs`` row and
# ``line_no`` the item's line in it: (batch_id, line_no) names the one item a job
# produces, which is how a job that runs twice finishes its item instead of adding one.
JOB_STATUSES = ("queued", "running", "done", "dead")

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("batch_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("payload", JSON),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("idempotency_key", String(200), unique=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="5"),
    Column("backoff_s", Float, nullable=False, server_default="5"),
    Column("run_after", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("lease_token", String(36)),
    Column("worker_id", String(200)),
    Column("item_id", String(36)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_jobs_claim", "status", "priority", "run_after"),
    Index("ix_jobs_batch_line", "batch_id", "line_no", unique=True),
)

# Provider batches of the batch path (roadworthy.jobs.batch_run): one row per batch a
# provider accepted, written before the first poll, so a process that dies while the
# provider works resumes polling it instead of submitting (and paying for) it again.
# ``custom_ids`` are the ids of the items it carries; ``status`` is ``submitted`` until
# its results are written to those items (``collected``); ``prompt`` pins the prompt
# version the requests were rendered from.
provider_batches = Table(
    "provider_batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("provider", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt", String(300), nullable=False),
    Column("batch_id", String(200), nullable=False),
    Column("input_file_id", String(200)),
    Column("round", Integer, nullable=False, server_default="1"),
    Column("custom_ids", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_provider_batches_run", "run_id", "status"),
)

# How far each call journal (store/journal.py: the service's call rows, appended to a file
# before the answer and copied into ``calls`` in bulk) has been copied. A copy and its new
# offset commit together, so a journal replayed after a crash resumes exactly there.
call_journals = Table(
    "call_journals",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("copied_bytes", BigInteger, nullable=False),
)
