"""Provider batches of the batch path, kept so a restarted process resumes, not resubmits

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "provider_batches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt", sa.String(300), nullable=False),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("input_file_id", sa.String(200)),
        sa.Column("round", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("custom_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_provider_batches_run", "provider_batches", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_provider_batches_run", table_name="provider_batches")
    op.drop_table("provider_batches")
