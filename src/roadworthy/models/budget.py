"""Reserve a call's estimated cost before it runs, settle the real cost after.

``Budgeted`` sits inside the retry loop, so every attempt reserves its own estimate and a
failure that was not billed gives its reservation back. The reservation itself is made
by a :class:`~roadworthy.store.budgets.BudgetLedger` in the shared store, which is what
keeps separate processes from overspending together. The budgets that apply are the
configured ones for the model, route and pipeline, plus the budget of the API key the
request came in with (``context.api_key``), kept as counter ``key:<key id>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider
from ..providers.pricing import Price, call_cost
from ..store.budgets import BudgetLimit, Reservation
from . import context as ctx
from .estimate import DEFAULT_OUTPUT_TOKENS, estimate_cost
from .recording import billed_error_cost

__all__ = ["Budgeted", "Ledger", "LimitsFor"]


class Ledger(Protocol):
    def reserve(self, limits: Sequence[BudgetLimit], amount: Decimal) -> Reservation: ...

    def settle(self, reservation: Reservation, actual: Decimal | None) -> None: ...


# The budgets that apply to a call of this model, given the pipeline it runs for.
LimitsFor = Callable[[str | None], Sequence[BudgetLimit]]


class Budgeted:
    def __init__(
        self,
        inner: Provider,
        *,
        ledger: Ledger,
        price: Price | None,
        limits_for: LimitsFor,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.ledger = ledger
        self.price = price
        self.limits_for = limits_for
        self.default_output_tokens = default_output_tokens

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def complete(self, request: CompletionRequest) -> Completion:
        call = ctx.call_context.get()
        limits = self.limits_for(call.pipeline if call else None)
        key = ctx.api_key.get()
        if key is not None and key.budget is not None:
            # The API key's own budget is reserved together with the configured ones, in
            # the same atomic step, so a key cannot overspend through concurrent requests.
            limits = [*limits, key.budget]
        if not limits:
            return await self.inner.complete(request)
        estimate = estimate_cost(request, self.price, self.default_output_tokens)
        # An unpriced model under a budget is refused when the route is built; here a
        # None estimate can only mean a free model.
        reservation = self.ledger.reserve(limits, estimate or Decimal(0))
        try:
            completion = await self.inner.complete(request)
        except errors.RoadworthyError as exc:
            self.ledger.settle(reservation, billed_error_cost(exc))
            raise
        except BaseException:
            self.ledger.settle(reservation, None)  # cancelled mid-call: maybe billed
            raise
        self.ledger.settle(reservation, call_cost(completion.usage, self.price))
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
