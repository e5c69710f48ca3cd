"""model stack: calls.route and calls.hop_reason; budget counters and alerts; drill results

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("route", sa.String(200)))
        batch.add_column(sa.Column("hop_reason", sa.String(100)))
    op.create_table(
        "budget_counters",
        sa.Column("budget", sa.String(200), primary_key=True),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("spent_nusd", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nusd", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("budget", sa.String(200), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("used_nusd", sa.BigInteger(), nullable=False),
        sa.Column("limit_nusd", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("budget", "period", "threshold", name="uq_budget_alerts_once"),
    )
    op.create_table(
        "drill_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("hop", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.Column("inputs", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ran_at", TS, nullable=False),
    )
    op.create_index("ix_drill_results_route_hop", "drill_results", ["route", "hop", "ran_at"])


def downgrade() -> None:
    op.drop_table("drill_results")
    op.drop_table("budget_alerts")
    op.drop_table("budget_counters")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("hop_reason")
        batch.drop_column("route")
