"""review queue; items: attempts, next_attempt_at, reviewed_by, ingest report, route

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("next_attempt_at", TS))
        batch.add_column(sa.Column("reviewed_by", sa.String(200)))
        batch.add_column(sa.Column("ingest", sa.JSON()))
        batch.add_column(sa.Column("route", sa.String(200)))
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("item_id", sa.String(36)),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("input", sa.JSON()),
        sa.Column("output", sa.JSON()),
        sa.Column("context", sa.JSON()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("lease_expires_at", TS),
        sa.Column("decision", sa.String(16)),
        sa.Column("final_output", sa.JSON()),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("note", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
    )
    op.create_index("ix_review_items_status", "review_items", ["status", "created_at"])
    op.create_index("ix_review_items_item", "review_items", ["item_id"])


def downgrade() -> None:
    op.drop_table("review_items")
    with op.batch_alter_table("items") as batch:
        for column in ("route", "ingest", "reviewed_by", "next_attempt_at", "attempts"):
            batch.drop_column(column)
