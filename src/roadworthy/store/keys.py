"""API keys of the HTTP service: created once, shown once, stored as a salted hash.

A key reads ``rw_<prefix>_<secret>``. The prefix is public and indexed, so verifying a
key is one row lookup and one constant-time hash comparison, never a scan. The secret has
256 bits of entropy, so a salted SHA-256 is enough: slow hashes (scrypt) defend
low-entropy passwords against guessing, which a random key does not need, and they would
cost milliseconds on every request.

A key may carry its own limits: a budget in USD per day or month and a number of requests
per minute. They are stored here and enforced by the model stack (the budget ledger and
the rate limiter), so a key's spend is counted exactly like a configured budget's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

import sqlalchemy as sa

from ..errors import ConfigError
from .store import now
from .tables import api_keys

__all__ = ["PERIODS", "SCOPES", "ApiKey", "KeyStore", "hash_secret"]

SCOPES = ("run", "admin")
PERIODS = ("day", "month")
Period = Literal["day", "month"]
_PREFIX = "rw_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    prefix: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    budget_usd: Decimal | None = None
    budget_period: Period = "day"
    rpm: int | None = None

    def allows(self, scope: str) -> bool:
        """``admin`` includes ``run``: an operator can do what an application can."""
        return scope in self.scopes or "admin" in self.scopes


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    if not token.startswith(_PREFIX):
        return None
    prefix, sep, secret = token[len(_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


class KeyStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str,
        scopes: tuple[str, ...] = ("run",),
        *,
        budget_usd: Decimal | float | str | None = None,
        period: str = "day",
        rpm: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key and return it with its full token (the only time it is known).

        ``budget_usd`` per ``period`` (day or month, UTC) and ``rpm`` are the key's own
        limits; None means the key has none of its own (the configured budgets still apply).
        """
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ConfigError(f"unknown scope(s) {unknown or scopes!r}; use {', '.join(SCOPES)}")
        if not name.strip():
            raise ConfigError("an API key needs a --name")
        budget = _budget(budget_usd)
        if period not in PERIODS:
            raise ConfigError(f"--period must be day or month, not {period!r}")
        if rpm is not None and rpm < 1:
            raise ConfigError(f"--rpm must be at least 1, not {rpm}")
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        key = ApiKey(
            id=str(uuid.uuid4()),
            prefix=prefix,
            name=name,
            scopes=tuple(dict.fromkeys(scopes)),
            created_at=now(),
            budget_usd=budget,
            budget_period="month" if period == "month" else "day",
            rpm=rpm,
        )
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    prefix=prefix,
                    name=name,
                    salt=salt,
                    key_hash=hash_secret(salt, secret),
                    scopes=list(key.scopes),
                    created_at=key.created_at,
                    budget_usd=budget,
                    budget_period=key.budget_period if budget is not None else None,
                    rpm=rpm,
                )
            )
        return key, f"{_PREFIX}{prefix}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        """The live key ``token`` names, or None (unknown, wrong secret or revoked)."""
        parts = _split(token)
        if parts is None:
            return None
        prefix, secret = parts
        with self.engine.connect() as conn:
            row = conn.execute(api_keys.select().where(api_keys.c.prefix == prefix)).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(hash_secret(row.salt, secret), row.key_hash):
            return None
        return _key(row)

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(api_keys.select().order_by(api_keys.c.created_at)).all()
        return [_key(r) for r in rows]

    def revoke(self, key_id_or_prefix: str) -> bool:
        cond = sa.or_(api_keys.c.id == key_id_or_prefix, api_keys.c.prefix == key_id_or_prefix)
        with self.engine.begin() as conn:
            result = conn.execute(
                api_keys.update()
                .where(cond, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return bool(result.rowcount)


def _budget(value: Decimal | float | str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"--budget must be an amount in USD, not {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ConfigError(f"--budget must be a positive amount in USD, not {value!r}")
    return amount


def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    budget = m["budget_usd"]
    return ApiKey(
        id=str(m["id"]),
        prefix=str(m["prefix"]),
        name=str(m["name"]),
        scopes=tuple(m["scopes"] or ()),
        created_at=_utc(m["created_at"]),
        revoked_at=_utc(m["revoked_at"]) if m["revoked_at"] is not None else None,
        budget_usd=Decimal(str(budget)) if budget is not None else None,
        budget_period="month" if m["budget_period"] == "month" else "day",
        rpm=int(m["rpm"]) if m["rpm"] is not None else None,
    )


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
