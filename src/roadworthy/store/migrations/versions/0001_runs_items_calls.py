"""runs, items and calls: the first schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON()),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id")),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("line_no", sa.Integer()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_field", sa.String(200)),
        sa.Column("input", sa.JSON()),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("output", sa.JSON()),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_items_pipeline_key", "items", ["pipeline", "item_key"])
    op.create_index("ix_items_run_status", "items", ["run_id", "status"])
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(36)),
        sa.Column("run_id", sa.String(36)),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("step", sa.String(200)),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(200)),
        sa.Column("tier", sa.String(50)),
        sa.Column("prompt_id", sa.String(200)),
        sa.Column("prompt_version", sa.Integer()),
        sa.Column("experiment", sa.String(200)),
        sa.Column("arm", sa.String(100)),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("cached_read_tokens", sa.Integer()),
        sa.Column("cache_write_tokens", sa.Integer()),
        sa.Column("cost_usd", sa.Numeric(20, 10)),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(64)),
        sa.Column("error_message", sa.Text()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fallback_depth", sa.Integer(), nullable=False),
        sa.Column("cache_outcome", sa.String(16), nullable=False),
        sa.Column("finish_reason", sa.String(32)),
        sa.Column("request_id", sa.String(200)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_calls_trace", "calls", ["trace_id"])
    op.create_index("ix_calls_run", "calls", ["run_id"])
    op.create_index("ix_calls_created", "calls", ["created_at"])


def downgrade() -> None:
    op.drop_table("calls")
    op.drop_table("items")
    op.drop_table("runs")
