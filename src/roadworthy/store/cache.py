"""Where cached answers live: the store (default), Redis, or memory (tests and benchmarks).

Every backend keeps the same promises, so the cache wrapper never knows which one it has:

* ``get`` returns a live entry and marks it used (least-recently-used order), or None;
  an expired entry is never returned, whatever the backend's own expiry does;
* ``put`` overwrites by key (two processes writing the same answer is not an error) and
  then trims the route to ``max_entries``, least recently used first;
* ``clear`` removes a prompt's entries (every version) or everything.

Times are epoch seconds passed in by the caller, so TTL tests move a number, not a clock.
Semantic search needs the embedded queries of a partition; only the SQL store (and the
memory backend) keeps them (``semantic_vectors``), so a route that uses Redis for exact
entries keeps its semantic entries in the store. ``since`` makes that read incremental:
the rows written after a time (by any process), which is how an in-process index learns
about entries another worker added without reloading the whole partition.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

from ..errors import ConfigError
from .tables import cache_entries, calls

__all__ = [
    "CacheBackend",
    "CacheEntry",
    "MemoryCache",
    "RedisCache",
    "RouteCacheStats",
    "SemanticRow",
    "StoreCache",
    "cache_stats",
]


@dataclass(frozen=True)
class CacheEntry:
    """One cached answer and what it was an answer to."""

    key: str
    route: str
    model: str
    completion: dict[str, Any]
    prompt_id: str | None = None
    prompt_version: int | None = None
    cost_usd: Decimal | None = None
    partition: str | None = None
    query: str | None = None
    embedding: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SemanticRow:
    """What a semantic index needs of an entry: its key, its query and the query's vector."""

    key: str
    query: str
    embedding: bytes = field(repr=False)


class CacheBackend(Protocol):
    def get(self, key: str, now: float) -> CacheEntry | None: ...

    def put(
        self, entry: CacheEntry, *, now: float, ttl_s: float | None, max_entries: int
    ) -> None: ...

    def delete(self, key: str) -> None: ...

    def clear(self, *, prompt_id: str | None = None) -> int: ...

    def sizes(self) -> dict[str, int]: ...

    def semantic_vectors(
        self, partition: str, now: float, since: float | None = None
    ) -> list[SemanticRow]: ...


class MemoryCache:
    """A process-local backend: an ordered dict per route is the LRU order."""

    def __init__(self, *, wall: Any = time.time) -> None:
        self._routes: dict[str, OrderedDict[str, tuple[CacheEntry, float | None]]] = {}
        self._route_of: dict[str, str] = {}
        self._written: dict[str, float] = {}  # key -> wall time of its last put
        self._wall = wall

    def get(self, key: str, now: float) -> CacheEntry | None:
        route = self._route_of.get(key)
        if route is None:
            return None
        entries = self._routes[route]
        entry, expires = entries[key]
        if expires is not None and expires <= now:
            del entries[key]
            del self._route_of[key]
            self._written.pop(key, None)
            return None
        entries.move_to_end(key)
        return entry

    def put(self, entry: CacheEntry, *, now: float, ttl_s: float | None, max_entries: int) -> None:
        old = self._route_of.get(entry.key)
        if old is not None:
            del self._routes[old][entry.key]
        entries = self._routes.setdefault(entry.route, OrderedDict())
        entries[entry.key] = (entry, now + ttl_s if ttl_s is not None else None)
        self._route_of[entry.key] = entry.route
        self._written[entry.key] = self._wall()
        while len(entries) > max_entries:
            evicted, _ = entries.popitem(last=False)
            del self._route_of[evicted]
            self._written.pop(evicted, None)

    def delete(self, key: str) -> None:
        route = self._route_of.pop(key, None)
        self._written.pop(key, None)
        if route is not None:
            del self._routes[route][key]

    def clear(self, *, prompt_id: str | None = None) -> int:
        removed = 0
        for entries in self._routes.values():
            for key in [k for k, (e, _) in entries.items() if prompt_id in (None, e.prompt_id)]:
                del entries[key]
                del self._route_of[key]
                self._written.pop(key, None)
                removed += 1
        return removed

    def sizes(self) -> dict[str, int]:
        return {route: len(entries) for route, entries in self._routes.items() if entries}

    def semantic_vectors(
        self, partition: str, now: float, since: float | None = None
    ) -> list[SemanticRow]:
        return [
            SemanticRow(e.key, e.query, e.embedding)
            for entries in self._routes.values()
            for e, expires in entries.values()
            if e.partition == partition
            and e.query is not None
            and e.embedding is not None
            and (expires is None or expires > now)
            and (since is None or self._written.get(e.key, 0.0) > since)
        ]


def _to_entry(row: Any) -> CacheEntry:
    cost = row.cost_usd
    return CacheEntry(
        key=row.key,
        route=row.route,
        model=row.model,
        completion=row.completion,
        prompt_id=row.prompt_id,
        prompt_version=row.prompt_version,
        cost_usd=Decimal(str(cost)) if cost is not None else None,
        partition=row.partition,
        query=row.query,
        embedding=row.embedding,
    )


class StoreCache:
    """Entries in the ``cache_entries`` table of the store (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: str, now: float) -> CacheEntry | None:
        t = cache_entries
        with self.engine.begin() as conn:
            row = conn.execute(t.select().where(t.c.key == key)).first()
            if row is None:
                return None
            if row.expires_at is not None and row.expires_at <= now:
                conn.execute(t.delete().where(t.c.key == key))
                return None
            conn.execute(t.update().where(t.c.key == key).values(used_at=now, hits=t.c.hits + 1))
        return _to_entry(row)

    def put(self, entry: CacheEntry, *, now: float, ttl_s: float | None, max_entries: int) -> None:
        t = cache_entries
        values = {
            "key": entry.key,
            "route": entry.route,
            "prompt_id": entry.prompt_id,
            "prompt_version": entry.prompt_version,
            "model": entry.model,
            "completion": entry.completion,
            "cost_usd": entry.cost_usd,
            "partition": entry.partition,
            "query": entry.query,
            "embedding": entry.embedding,
            "hits": 0,
            "created_at": datetime.now(UTC),
            "expires_at": now + ttl_s if ttl_s is not None else None,
            "used_at": now,
        }
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt: Any = pg_insert(t).values(**values)
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                stmt = sqlite_insert(t).values(**values)
            updates = {k: stmt.excluded[k] for k in values if k != "key"}
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=updates))
            count = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.route == entry.route)
            ).scalar_one()
            excess = int(count) - max_entries
            if excess > 0:
                oldest = (
                    sa.select(t.c.key)
                    .where(t.c.route == entry.route)
                    .order_by(t.c.used_at)
                    .limit(excess)
                    .scalar_subquery()
                )
                keys = list(conn.execute(sa.select(t.c.key).where(t.c.key.in_(oldest))).scalars())
                conn.execute(t.delete().where(t.c.key.in_(keys)))

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(cache_entries.delete().where(cache_entries.c.key == key))

    def clear(self, *, prompt_id: str | None = None) -> int:
        stmt = cache_entries.delete()
        if prompt_id is not None:
            stmt = stmt.where(cache_entries.c.prompt_id == prompt_id)
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    def sizes(self) -> dict[str, int]:
        t = cache_entries
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.route, sa.func.count()).group_by(t.c.route))
            return {str(route): int(n) for route, n in rows}

    def semantic_vectors(
        self, partition: str, now: float, since: float | None = None
    ) -> list[SemanticRow]:
        """Only the three columns search needs: a 100k-entry load skips the answers."""
        t = cache_entries
        query = sa.select(t.c.key, t.c.query, t.c.embedding).where(
            t.c.partition == partition,
            t.c.embedding.is_not(None),
            t.c.query.is_not(None),
            sa.or_(t.c.expires_at.is_(None), t.c.expires_at > now),
        )
        if since is not None:
            query = query.where(t.c.created_at > datetime.fromtimestamp(since, UTC))
        with self.engine.connect() as conn:
            return [SemanticRow(k, q, bytes(e)) for k, q, e in conn.execute(query)]


class RedisCache:
    """Exact entries in Redis: one string per entry, a sorted set per route for LRU order.

    Redis expires entries by their TTL itself; the per-route sorted set (score: last use)
    is what ``put`` trims to ``max_entries``, oldest first, in one MULTI/EXEC.
    """

    def __init__(self, url: str, *, namespace: str = "rw:cache") -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError("a Redis cache needs the redis package: pip install redis") from None
        self.client: Any = redis.Redis.from_url(url)
        self.ns = namespace

    def _entry(self, key: str) -> str:
        return f"{self.ns}:e:{key}"

    def _lru(self, route: str) -> str:
        return f"{self.ns}:lru:{route}"

    def get(self, key: str, now: float) -> CacheEntry | None:
        raw = self.client.get(self._entry(key))
        if raw is None:
            return None
        data = json.loads(raw)
        if data["expires_at"] is not None and data["expires_at"] <= now:
            self.client.delete(self._entry(key))
            self.client.zrem(self._lru(data["route"]), key)
            return None
        self.client.zadd(self._lru(data["route"]), {key: now})
        cost = data.pop("cost_usd")
        data.pop("expires_at")
        return CacheEntry(**data, cost_usd=Decimal(cost) if cost is not None else None)

    def put(self, entry: CacheEntry, *, now: float, ttl_s: float | None, max_entries: int) -> None:
        data = {
            "key": entry.key,
            "route": entry.route,
            "model": entry.model,
            "completion": entry.completion,
            "prompt_id": entry.prompt_id,
            "prompt_version": entry.prompt_version,
            "cost_usd": str(entry.cost_usd) if entry.cost_usd is not None else None,
            "partition": entry.partition,
            "query": entry.query,
            "expires_at": now + ttl_s if ttl_s is not None else None,
        }
        lru = self._lru(entry.route)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._entry(entry.key), json.dumps(data), px=int(ttl_s * 1000) if ttl_s else None)
        pipe.zadd(lru, {entry.key: now})
        if entry.prompt_id is not None:
            pipe.sadd(f"{self.ns}:p:{entry.prompt_id}", entry.key)
        pipe.zcard(lru)
        count = int(pipe.execute()[-1])
        if count > max_entries:
            evicted = [k for k, _ in self.client.zpopmin(lru, count - max_entries)]
            if evicted:
                self.client.delete(*[self._entry(k.decode()) for k in evicted])

    def delete(self, key: str) -> None:
        raw = self.client.get(self._entry(key))
        if raw is not None:
            self.client.zrem(self._lru(json.loads(raw)["route"]), key)
        self.client.delete(self._entry(key))

    def clear(self, *, prompt_id: str | None = None) -> int:
        if prompt_id is not None:
            keys = [k.decode() for k in self.client.smembers(f"{self.ns}:p:{prompt_id}")]
            removed = int(self.client.delete(*[self._entry(k) for k in keys])) if keys else 0
            for lru in self.client.scan_iter(f"{self.ns}:lru:*"):
                if keys:
                    self.client.zrem(lru, *keys)
            self.client.delete(f"{self.ns}:p:{prompt_id}")
            return removed
        removed = 0
        for name in list(self.client.scan_iter(f"{self.ns}:e:*")):
            removed += int(self.client.delete(name))
        for name in list(self.client.scan_iter(f"{self.ns}:*")):
            self.client.delete(name)
        return removed

    def sizes(self) -> dict[str, int]:
        prefix = len(f"{self.ns}:lru:")
        return {
            name.decode()[prefix:]: int(self.client.zcard(name))
            for name in self.client.scan_iter(f"{self.ns}:lru:*")
        }

    def semantic_vectors(
        self, partition: str, now: float, since: float | None = None
    ) -> list[SemanticRow]:
        return []  # semantic entries stay in the store


@dataclass(frozen=True)
class RouteCacheStats:
    """What the ledger says the cache did for one route (over the calls it recorded)."""

    route: str
    calls: int
    exact_hits: int
    semantic_hits: int
    saved_usd: Decimal
    audited: int
    audit_mismatches: int
    audit_unjudged: int = 0  # free-text audits whose judge gave no verdict

    @property
    def hit_rate(self) -> float:
        return (self.exact_hits + self.semantic_hits) / self.calls if self.calls else 0.0

    @property
    def wrong_hit_rate(self) -> float | None:
        """Mismatches over judged audits: the measured share of semantic hits that were
        wrong; None before any audit has a verdict (unjudged ones are not counted)."""
        return self.audit_mismatches / self.audited if self.audited else None


def cache_stats(engine: sa.Engine, *, prompt_id: str | None = None) -> list[RouteCacheStats]:
    """Hits, hit rate and savings per route, from the calls ledger.

    Only successful calls count (a failed attempt that was retried is not a request), so
    the hit rate is hits over answered calls.
    """
    c = calls.c
    hit = c.cache_outcome.in_(("exact", "semantic"))
    query = (
        sa.select(
            c.route,
            sa.func.count(),
            sa.func.count().filter(c.cache_outcome == "exact"),
            sa.func.count().filter(c.cache_outcome == "semantic"),
            sa.func.coalesce(sa.func.sum(c.saved_usd).filter(hit), 0),
            sa.func.count().filter(c.hop_reason.in_(("audit:match", "audit:mismatch"))),
            sa.func.count().filter(c.hop_reason == "audit:mismatch"),
            sa.func.count().filter(c.hop_reason == "audit:unjudged"),
        )
        .where(c.status == "ok", c.route.is_not(None))
        .group_by(c.route)
        .order_by(c.route)
    )
    if prompt_id is not None:
        query = query.where(c.prompt_id == prompt_id)
    with engine.connect() as conn:
        return [
            RouteCacheStats(
                route=str(r[0]),
                calls=int(r[1]),
                exact_hits=int(r[2]),
                semantic_hits=int(r[3]),
                saved_usd=Decimal(str(r[4])),
                audited=int(r[5]),
                audit_mismatches=int(r[6]),
                audit_unjudged=int(r[7]),
            )
            for r in conn.execute(query)
        ]
