"""Budget spend kept in the shared store, reserved atomically before each call.

Per-process counters let N workers spend N times a cap (a gateway bug users keep
hitting). Here every worker, in any process, reserves the call's estimated cost with one
conditional ``UPDATE ... WHERE spent + reserved + :amount <= :limit``; the database
serialises those updates on the counter row (SQLite's write lock, PostgreSQL's row lock),
so the sum of reservations can never pass the limit. After the call the reservation is
settled: the estimate leaves ``reserved`` and the real cost joins ``spent``. Overspend is
therefore bounded by how far one call's real cost exceeds its estimate.

Amounts are integer nano-USD, so the arithmetic is exact on both backends. Counters are
keyed by budget name and period (``2025-01-07`` for a day, ``2025-01`` for a month, UTC).
A reservation left by a process that died stays reserved until its period ends: the
budget errs towards spending less, never more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import BudgetExceeded
from .tables import budget_alerts, budget_counters, drill_results

__all__ = [
    "BudgetLedger",
    "BudgetLimit",
    "BudgetStatus",
    "DrillLog",
    "OverBudget",
    "Reservation",
    "period_key",
    "to_nano",
]

log = logging.getLogger("roadworthy.budget")

Period = Literal["day", "month"]
_NANO = Decimal(1_000_000_000)


def to_nano(usd: Decimal) -> int:
    """USD to integer nano-USD, rounding up so reservations never undershoot."""
    scaled = usd * _NANO
    whole = int(scaled)
    return whole + (1 if scaled > whole else 0)


def from_nano(value: int) -> Decimal:
    return Decimal(value) / _NANO


def period_key(period: Period, when: datetime) -> str:
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d") if period == "day" else when.strftime("%Y-%m")


@dataclass(frozen=True)
class BudgetLimit:
    """One configured budget: a hard limit per period and soft alert thresholds (shares)."""

    name: str
    limit_usd: Decimal
    period: Period = "day"
    soft: tuple[float, ...] = (0.8,)
    on_exceed: Literal["refuse", "downgrade"] = "refuse"


class OverBudget(BudgetExceeded):
    """A call refused because it would take a budget past its hard limit.

    ``downgrade`` says the budget prefers a cheaper model to a refusal; the router reads
    it. The ledger still records the stable class name ``BudgetExceeded``.
    """

    def __init__(self, message: str, *, budget: str, downgrade: bool) -> None:
        self.budget = budget
        self.downgrade = downgrade
        super().__init__(message)

    @property
    def error_class(self) -> str:
        return "BudgetExceeded"


@dataclass(frozen=True)
class Reservation:
    parts: tuple[tuple[str, str, int], ...] = ()  # (budget, period, nano-USD)

    @property
    def amount_nusd(self) -> int:
        return max((p[2] for p in self.parts), default=0)


@dataclass
class BudgetStatus:
    name: str
    period: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    on_exceed: str
    alerts: list[float] = field(default_factory=list)

    @property
    def used_share(self) -> float:
        if self.limit_usd <= 0:
            return 1.0
        return float((self.spent_usd + self.reserved_usd) / self.limit_usd)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class BudgetLedger:
    """Reserve, settle and report budget spend in the store's database."""

    def __init__(
        self, engine: sa.Engine, *, utcnow: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self.utcnow = utcnow

    def reserve(self, limits: Sequence[BudgetLimit], amount: Decimal) -> Reservation:
        """Reserve ``amount`` against every budget in ``limits`` at once, or none of them.

        Raises :class:`OverBudget` naming the first budget that cannot take it. A zero
        amount (a free model) reserves nothing and always passes, which is what lets a
        budget downgrade to the in-process model once it is spent.
        """
        nano = to_nano(amount)
        if nano <= 0 or not limits:
            return Reservation()
        stamp = self.utcnow()
        parts: list[tuple[str, str, int]] = []
        crossed: list[tuple[BudgetLimit, str, float, int, int]] = []
        with self.engine.begin() as conn:
            insert = _insert(conn.dialect.name)
            for lim in sorted(limits, key=lambda b: b.name):  # one lock order: no deadlocks
                period = period_key(lim.period, stamp)
                limit_nano = to_nano(lim.limit_usd)
                conn.execute(
                    insert(budget_counters)
                    .values(
                        budget=lim.name,
                        period=period,
                        spent_nusd=0,
                        reserved_nusd=0,
                        updated_at=stamp,
                    )
                    .on_conflict_do_nothing()
                )
                c = budget_counters.c
                row = conn.execute(
                    budget_counters.update()
                    .where(
                        c.budget == lim.name,
                        c.period == period,
                        c.spent_nusd + c.reserved_nusd + nano <= limit_nano,
                    )
                    .values(reserved_nusd=c.reserved_nusd + nano, updated_at=stamp)
                    .returning(c.spent_nusd, c.reserved_nusd)
                ).first()
                if row is None:
                    raise OverBudget(
                        f"budget {lim.name!r} ({lim.period}) cannot take this call's "
                        f"estimated ${amount:.6f}: limit ${lim.limit_usd}",
                        budget=lim.name,
                        downgrade=lim.on_exceed == "downgrade",
                    )
                used = int(row[0]) + int(row[1])
                parts.append((lim.name, period, nano))
                for threshold in lim.soft:
                    if used >= threshold * limit_nano:
                        inserted = conn.execute(
                            insert(budget_alerts)
                            .values(
                                budget=lim.name,
                                period=period,
                                threshold=threshold,
                                used_nusd=used,
                                limit_nusd=limit_nano,
                                created_at=stamp,
                            )
                            .on_conflict_do_nothing()
                        )
                        if inserted.rowcount:
                            crossed.append((lim, period, threshold, used, limit_nano))
        for lim, period, threshold, used, _limit in crossed:
            log.warning(
                "budget %r passed %.0f%% of its %s limit for %s: $%s of $%s",
                lim.name,
                threshold * 100,
                lim.period,
                period,
                from_nano(used),
                lim.limit_usd,
            )
        return Reservation(tuple(parts))

    def unreserved(self, limits: Sequence[BudgetLimit]) -> Reservation:
        """A reservation of nothing against ``limits``: settling it only counts the cost.

        For a call that was already made when its reservation was lost (a batch request
        submitted by a process that died): too late to refuse, not too late to count.
        """
        stamp = self.utcnow()
        return Reservation(tuple((lim.name, period_key(lim.period, stamp), 0) for lim in limits))

    def settle(self, reservation: Reservation, actual: Decimal | None) -> None:
        """Replace the reservation by the real cost; unknown cost keeps the estimate."""
        if not reservation.parts:
            return
        stamp = self.utcnow()
        c = budget_counters.c
        with self.engine.begin() as conn:
            for name, period, nano in sorted(reservation.parts):
                spent = nano if actual is None else to_nano(actual)
                conn.execute(
                    budget_counters.update()
                    .where(c.budget == name, c.period == period)
                    .values(
                        reserved_nusd=c.reserved_nusd - nano,
                        spent_nusd=c.spent_nusd + spent,
                        updated_at=stamp,
                    )
                )

    def status(self, limits: Sequence[BudgetLimit]) -> list[BudgetStatus]:
        stamp = self.utcnow()
        out: list[BudgetStatus] = []
        c = budget_counters.c
        with self.engine.connect() as conn:
            for lim in limits:
                period = period_key(lim.period, stamp)
                row = conn.execute(
                    sa.select(c.spent_nusd, c.reserved_nusd).where(
                        c.budget == lim.name, c.period == period
                    )
                ).first()
                alerts = [
                    float(t)
                    for (t,) in conn.execute(
                        sa.select(budget_alerts.c.threshold)
                        .where(budget_alerts.c.budget == lim.name, budget_alerts.c.period == period)
                        .order_by(budget_alerts.c.threshold)
                    )
                ]
                out.append(
                    BudgetStatus(
                        name=lim.name,
                        period=period,
                        limit_usd=lim.limit_usd,
                        spent_usd=from_nano(int(row[0])) if row else Decimal(0),
                        reserved_usd=from_nano(int(row[1])) if row else Decimal(0),
                        on_exceed=lim.on_exceed,
                        alerts=alerts,
                    )
                )
        return out

    def alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                budget_alerts.select().order_by(budget_alerts.c.created_at.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]


class DrillLog:
    """Fallback-drill results: one row per hop run, the latest per hop is its status."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(
        self,
        *,
        route: str,
        hop: int,
        model_name: str,
        ok: bool,
        error_class: str | None,
        detail: str | None,
        inputs: int,
        source: str,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                drill_results.insert().values(
                    route=route,
                    hop=hop,
                    model_name=model_name,
                    status="ok" if ok else "failed",
                    error_class=error_class,
                    detail=detail,
                    inputs=inputs,
                    source=source,
                    ran_at=datetime.now(UTC),
                )
            )

    def latest(self, route: str | None = None) -> list[dict[str, Any]]:
        """The last result per (route, hop), ordered by route and hop."""
        d = drill_results.c
        newest = (
            sa.select(d.route, d.hop, sa.func.max(d.id).label("id"))
            .group_by(d.route, d.hop)
            .subquery()
        )
        query = drill_results.select().join(newest, d.id == newest.c.id).order_by(d.route, d.hop)
        if route is not None:
            query = query.where(d.route == route)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
