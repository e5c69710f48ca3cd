"""Per-key budgets and rate limits on API keys; the key of every call in the ledger

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default) is an in-place change on both backends; a
    # batch copy of ``calls`` would rewrite the whole ledger.
    op.add_column("api_keys", sa.Column("budget_usd", sa.Numeric(20, 10)))
    op.add_column("api_keys", sa.Column("budget_period", sa.String(8)))
    op.add_column("api_keys", sa.Column("rpm", sa.Integer()))
    op.add_column("calls", sa.Column("api_key_id", sa.String(36)))
    op.add_column("calls", sa.Column("usage_estimated", sa.Boolean()))
    op.create_index("ix_calls_api_key", "calls", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_api_key", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("usage_estimated")
        batch.drop_column("api_key_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rpm")
        batch.drop_column("budget_period")
        batch.drop_column("budget_usd")
