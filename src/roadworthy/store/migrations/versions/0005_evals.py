"""evaluation runs, results and the output cache

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("subset", sa.String(100)),
        sa.Column("prompt_id", sa.String(200)),
        sa.Column("prompt_version", sa.Integer()),
        sa.Column("prompt_hash", sa.String(64)),
        sa.Column("prompt_ref", sa.String(300)),
        sa.Column("model", sa.String(200)),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("passed", sa.Integer()),
        sa.Column("summary", sa.JSON()),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_eval_runs_suite", "eval_runs", ["suite", "started_at"])
    op.create_table(
        "eval_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("example_id", sa.String(200), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("output", sa.JSON()),
        sa.Column("scores", sa.JSON()),
        sa.Column("cache_key", sa.String(64)),
    )
    op.create_index("ix_eval_results_run", "eval_results", ["run_id"])
    op.create_table(
        "eval_cache",
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eval_cache")
    op.drop_table("eval_results")
    op.drop_table("eval_runs")
