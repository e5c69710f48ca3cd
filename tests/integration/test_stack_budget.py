"""Budget race: two processes with many concurrent tasks each spend against one budget.

The budget is reserved in the shared store before every call, so together they may not
pass the limit by more than one call's estimate, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from roadworthy.errors import BudgetExceeded
from roadworthy.models import Budgeted, Recorded
from roadworthy.models.estimate import estimate_cost
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.providers.pricing import Price
from roadworthy.store import Store
from roadworthy.store.budgets import BudgetLedger, BudgetLimit
from roadworthy.store.tables import budget_alerts, calls

ROOT = Path(__file__).resolve().parents[2]
PRICE = Price(input=Decimal(100), output=Decimal(400))  # USD per million tokens
REQUEST = CompletionRequest(messages=(Message("user", "spend a little"),), model="m", max_tokens=50)
LIMIT = BudgetLimit("race", Decimal("1.5"), "day", soft=(0.5, 0.9))
TASKS = 12


async def spend(url: str, ready: Path | None = None, go: Path | None = None) -> int:
    """Spend until refused from TASKS concurrent tasks; return the calls that went through.

    With ``ready``/``go`` the process says it is set up and waits for the start signal,
    so a slow process start cannot let the other one spend the whole budget alone.
    """
    store = Store.open(url)
    ledger = BudgetLedger(store.engine)
    provider = ScriptedProvider(
        [Reply(text="x " * 40, input_tokens=8, output_tokens=40, latency_s=0.001)], name="up"
    )
    stack = Budgeted(
        Recorded(provider, model_name="m", model_id="m", price=PRICE, recorder=store.record_call),
        ledger=ledger,
        price=PRICE,
        limits_for=lambda _pipeline: [LIMIT],
    )
    done = 0
    if ready is not None and go is not None:
        ready.touch()
        while not go.exists():  # a start barrier, not a timing assumption
            await asyncio.sleep(0.005)

    async def task() -> None:
        nonlocal done
        while True:
            try:
                await stack.complete(REQUEST)
            except BudgetExceeded:
                return
            done += 1

    await asyncio.gather(*(task() for _ in range(TASKS)))
    store.close()
    return done


def worker(url: str, ready: str, go: str) -> None:
    print(json.dumps({"calls": asyncio.run(spend(url, Path(ready), Path(go)))}))


def test_budget_race(store_url: str, tmp_path: Path) -> None:
    """Two processes spend one budget at once: never over it by more than one call."""
    url, tmp = store_url, tmp_path
    Store.open(url).close()  # migrate once, before the racers start
    go = tmp / "go"
    procs, flags = [], []
    for n in range(2):
        ready = tmp / f"ready-{n}"
        flags.append(ready)
        code = (
            "from tests.integration.test_stack_budget import worker; "
            f"worker({url!r}, {str(ready)!r}, {str(go)!r})"
        )
        procs.append(
            subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
        )
    while not all(f.exists() for f in flags):  # both set up: start them together
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    made = [json.loads(o)["calls"] for o in outs]
    assert all(n > 0 for n in made), made  # both processes really competed

    store = Store.open(url)
    (status,) = BudgetLedger(store.engine).status([LIMIT])
    with store.engine.connect() as conn:
        ledger_cost = conn.execute(sa.select(sa.func.sum(calls.c.cost_usd))).scalar()
        thresholds = sorted(t for (t,) in conn.execute(sa.select(budget_alerts.c.threshold)))
    store.close()
    estimate = estimate_cost(REQUEST, PRICE)
    assert estimate is not None
    assert status.reserved_usd == 0
    assert status.spent_usd <= LIMIT.limit_usd + estimate
    assert status.spent_usd >= LIMIT.limit_usd - 2 * estimate  # the budget was used, not idle
    assert Decimal(str(ledger_cost)) == status.spent_usd.quantize(Decimal("1e-10"))
    assert sum(made) * Decimal("0.0168") == status.spent_usd  # 8*100 + 40*400 per million
    assert thresholds == [0.5, 0.9]  # each soft alert once, not once per process


def test_an_unreserved_call_is_counted_not_refused(store_url: str) -> None:
    """A call made before its reservation was lost still counts, even past the limit."""
    store = Store.open(store_url)
    try:
        ledger = BudgetLedger(store.engine)
        cap = BudgetLimit(name="cap", limit_usd=Decimal("1"))
        ledger.settle(ledger.reserve([cap], Decimal("0.75")), Decimal("0.75"))
        ledger.settle(ledger.unreserved([cap]), Decimal("0.5"))
        (status,) = ledger.status([cap])
        assert status.spent_usd == Decimal("1.25") and status.reserved_usd == 0
    finally:
        store.close()
