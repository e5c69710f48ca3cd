"""API keys with limits, and key budgets in the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from roadworthy.errors import ConfigError
from roadworthy.store import Store
from roadworthy.store.budgets import BudgetLedger, BudgetLimit, OverBudget
from roadworthy.store.keys import KeyStore


def test_key_limits_round_trip(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        keys = KeyStore(store.engine)
        key, token = keys.create("team", budget_usd="12.5", period="month", rpm=30)
        plain, _ = keys.create("plain")
        verified = keys.verify(token)
        assert verified is not None
        assert verified.budget_usd == Decimal("12.5") and verified.budget_period == "month"
        assert verified.rpm == 30 and verified.id == key.id
        listed = {k.id: k for k in keys.list()}
        assert listed[plain.id].budget_usd is None and listed[plain.id].rpm is None
        with pytest.raises(ConfigError):
            keys.create("bad", budget_usd="0")
        with pytest.raises(ConfigError):
            keys.create("bad", rpm=0)
    finally:
        store.close()


def test_key_budget_is_a_ledger_budget(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        limit = BudgetLimit(name="key:abc", limit_usd=Decimal("0.05"), soft=())
        ledger = BudgetLedger(store.engine)
        first = ledger.reserve([limit], Decimal("0.03"))
        ledger.settle(first, Decimal("0.04"))
        with pytest.raises(OverBudget) as refused:
            ledger.reserve([limit], Decimal("0.015"))
        assert refused.value.budget == "key:abc" and not refused.value.downgrade
        (status,) = ledger.status([limit])
        assert status.spent_usd == Decimal("0.04") and status.reserved_usd == 0
    finally:
        store.close()
