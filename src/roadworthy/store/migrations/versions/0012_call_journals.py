"""how far each call journal has been copied into ``calls``

Revision ID: 0012
Revises: 0011

``roadworthy serve`` on SQLite answers a call once its row is appended to a journal file
next to the database and copies journaled rows into ``calls`` in bulk (store/journal.py).
The copy and the journal's new offset commit in one transaction, so replaying a journal
after a crash starts exactly where the last copy ended: no row twice, none missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_journals",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("copied_bytes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("call_journals")
