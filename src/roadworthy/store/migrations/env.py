"""Alembic environment: runs on the connection the Store hands over.

roadworthy applies migrations itself on first use (``Store.open``), so this env only
supports the online mode with a connection passed in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from roadworthy.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a misused alembic CLI
    raise RuntimeError("roadworthy migrations run through roadworthy.store.Store.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
