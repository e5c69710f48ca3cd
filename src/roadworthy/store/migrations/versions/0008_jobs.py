"""The embedded job queue: leases, attempts, backoff, priority, idempotency keys

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="5"),
        sa.Column("backoff_s", sa.Float(), nullable=False, server_default="5"),
        sa.Column("run_after", TS, nullable=False),
        sa.Column("lease_until", TS),
        sa.Column("lease_token", sa.String(36)),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("item_id", sa.String(36)),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "run_after"])
    op.create_index("ix_jobs_batch_line", "jobs", ["batch_id", "line_no"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_line", table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_table("jobs")
