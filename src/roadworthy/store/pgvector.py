"""Semantic search inside PostgreSQL, when the pgvector extension is there.

With pgvector the vectors live in a ``vector`` column and the database ranks them with
``<=>`` (cosine distance), so every process and machine searches the same rows with no
in-process copy to load or refresh. Whether it is there is decided once per engine:
``CREATE EXTENSION IF NOT EXISTS vector`` either succeeds, or the reason it failed
(extension not installed on the server, no privilege) is logged once and the semantic
cache keeps its in-process index (:mod:`roadworthy.models.semantic`), which needs nothing
from the server.

The ``cache_vectors`` table is created here, not by a migration: its column type exists
only where the extension does, and a migration must run on every PostgreSQL. Rows hang
off ``cache_entries`` (``ON DELETE CASCADE``), so expiry, eviction and ``cache clear``
remove vectors with their entries. Search is an exact scan of the partition (the
``vector`` column has no fixed width, which an HNSW index would need); at 10k rows per
partition that is a few milliseconds inside the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import sqlalchemy as sa

__all__ = ["PgVectorSearch"]

log = logging.getLogger("roadworthy.cache")

_DDL = (
    "CREATE TABLE IF NOT EXISTS cache_vectors ("
    " key VARCHAR(64) PRIMARY KEY REFERENCES cache_entries(key) ON DELETE CASCADE,"
    " partition VARCHAR(64) NOT NULL,"
    " query TEXT NOT NULL,"
    " embedding vector NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_cache_vectors_partition ON cache_vectors (partition)",
)
_UPSERT = sa.text(
    "INSERT INTO cache_vectors (key, partition, query, embedding)"
    " VALUES (:key, :partition, :query, CAST(:embedding AS vector))"
    " ON CONFLICT (key) DO UPDATE SET partition = EXCLUDED.partition,"
    " query = EXCLUDED.query, embedding = EXCLUDED.embedding"
)
_NEAREST = sa.text(
    "SELECT v.key, v.query, 1 - (v.embedding <=> CAST(:embedding AS vector)) AS similarity"
    " FROM cache_vectors v JOIN cache_entries e ON e.key = v.key"
    " WHERE v.partition = :partition AND (e.expires_at IS NULL OR e.expires_at > :now)"
    " ORDER BY v.embedding <=> CAST(:embedding AS vector) LIMIT :k"
)

_lock = threading.Lock()
_decided: dict[str, str | None] = {}  # engine URL -> None (available) or why not


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PgVectorSearch:
    """Nearest stored queries of a partition, ranked by PostgreSQL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def unavailable_reason(cls, engine: sa.Engine) -> str | None:
        """None when pgvector is usable on ``engine``, else why not (decided once)."""
        url = engine.url.render_as_string(hide_password=True)
        with _lock:
            if url in _decided:
                return _decided[url]
            why: str | None = None
            if engine.dialect.name != "postgresql":
                why = f"the store is {engine.dialect.name}, not PostgreSQL"
            else:
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                        for statement in _DDL:
                            conn.execute(sa.text(statement))
                except sa.exc.DBAPIError as exc:
                    why = str(exc.orig).strip().splitlines()[0]
                if why is not None:
                    log.warning(
                        "pgvector is not available on %s (%s); the semantic cache uses its "
                        "in-process index",
                        url,
                        why,
                    )
            _decided[url] = why
            return why

    @classmethod
    def open(cls, engine: sa.Engine) -> PgVectorSearch | None:
        """A searcher for ``engine``, or None (said once in the log) without pgvector."""
        return cls(engine) if cls.unavailable_reason(engine) is None else None

    def add(self, partition: str, key: str, query: str, vector: Sequence[float]) -> None:
        """Store a vector; its ``cache_entries`` row must exist already (foreign key)."""
        params = {"key": key, "partition": partition, "query": query}
        with self.engine.begin() as conn:
            conn.execute(_UPSERT, {**params, "embedding": _literal(vector)})

    def nearest(
        self, partition: str, vector: Sequence[float], k: int, now: float
    ) -> list[tuple[str, str, float]]:
        """Up to ``k`` live (key, query, cosine similarity), most similar first."""
        params = {"partition": partition, "embedding": _literal(vector), "now": now, "k": k}
        with self.engine.connect() as conn:
            rows = conn.execute(_NEAREST, params)
            return [(str(key), str(query), float(sim)) for key, query, sim in rows]

    def remove(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM cache_vectors WHERE key = :key"), {"key": key})
