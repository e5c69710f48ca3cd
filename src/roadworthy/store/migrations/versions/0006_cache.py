"""exact and semantic cache entries; cache savings and similarity on calls

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("prompt_id", sa.String(200)),
        sa.Column("prompt_version", sa.Integer()),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("completion", sa.JSON(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10)),
        sa.Column("partition", sa.String(64)),
        sa.Column("query", sa.Text()),
        sa.Column("embedding", sa.LargeBinary()),
        sa.Column("hits", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", sa.Float()),
        sa.Column("used_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_cache_entries_route_used", "cache_entries", ["route", "used_at"])
    op.create_index("ix_cache_entries_prompt", "cache_entries", ["prompt_id", "prompt_version"])
    op.create_index("ix_cache_entries_partition", "cache_entries", ["partition"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("saved_usd", sa.Numeric(20, 10)))
        batch.add_column(sa.Column("cache_similarity", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("cache_similarity")
        batch.drop_column("saved_usd")
    op.drop_table("cache_entries")
