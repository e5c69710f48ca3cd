"""A route: pick a tier, build the hop chain, cascade up on failed checks, downgrade on budget.

Per call the router

1. picks a starting tier: the first matching rule (input class, input tokens, complexity),
   else the prompt's declared tier, else the cheapest tier;
2. builds the chain: that tier's models, healthy ones first (an open breaker is skipped
   without a call), then cheapest by the request's estimated cost, leaving out models
   whose context window cannot hold the request; then the route's fallbacks in order;
3. runs the chain as a :class:`~roadworthy.models.fallback.Fallback`;
4. with ``cascade``, checks the output (the check the caller put in context: schema,
   criteria; plus the route's confidence floor) and on failure escalates to the next
   tier up; the escalated calls carry ``hop_reason = "escalated:<why>"``;
5. when a budget set to ``downgrade`` refuses, reruns on the route's models that are
   cheaper for this request (``hop_reason = "downgraded:BudgetExceeded"``).

A streamed call (a stream sink bound, see :mod:`roadworthy.providers.streaming`) takes no
live drill, and once its text reached the client it is not escalated: a second answer
cannot replace one the client already holds. The first router to see the sink owns it;
a route called on the way (a cache audit's judge) runs without it.

Each model in a route is already wrapped ``Retrying(Breaker(Budgeted(Throttled(Recorded))))``
by the builder, so a hop retries on its own and the chain only moves on after it gives up.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest
from ..providers.streaming import current_sink, streaming
from ..store.budgets import OverBudget
from . import context as ctx
from .breaker import CircuitBreaker
from .clock import Clock, SystemClock
from .estimate import estimate_cost, estimate_input_tokens
from .fallback import Fallback, Hop

__all__ = ["DrillOutcome", "DrillRecorder", "Router", "TierRule"]

log = logging.getLogger("roadworthy.router")

# Set while a route is answering: a route called on the way (a judge) is not a request.
_in_route: ContextVar[bool] = ContextVar("rw_in_route", default=False)


@dataclass(frozen=True)
class TierRule:
    tier: str
    input_class: tuple[str, ...] | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    min_complexity: float | None = None
    max_complexity: float | None = None

    def matches(self, tokens: int, call: ctx.CallContext | None) -> bool:
        if self.input_class is not None and (
            call is None or call.input_class not in self.input_class
        ):
            return False
        if self.min_tokens is not None and tokens < self.min_tokens:
            return False
        if self.max_tokens is not None and tokens > self.max_tokens:
            return False
        complexity = call.complexity if call is not None else None
        if self.min_complexity is not None and (
            complexity is None or complexity < self.min_complexity
        ):
            return False
        return not (
            self.max_complexity is not None
            and complexity is not None
            and complexity > self.max_complexity
        )


@dataclass(frozen=True)
class DrillOutcome:
    route: str
    hop: int
    model_name: str
    ok: bool
    error_class: str | None = None
    detail: str | None = None


DrillRecorder = Callable[[DrillOutcome, str], None]  # (outcome, source: "cli" | "live")


def _cost_key(hop: Hop, request: CompletionRequest) -> Decimal:
    cost = estimate_cost(request, hop.price)
    return cost if cost is not None else Decimal("Infinity")


def _list_price(hop: Hop) -> Decimal:
    if hop.price is None:
        return Decimal("Infinity")
    return hop.price.input + hop.price.output


class Router:
    def __init__(
        self,
        name: str,
        *,
        tiers: Sequence[str] = (),
        tier_hops: dict[str, list[Hop]] | None = None,
        fallbacks: Sequence[Hop] = (),
        breakers: dict[str, CircuitBreaker] | None = None,
        rules: Sequence[TierRule] = (),
        use_prompt_tier: bool = True,
        cascade: bool = False,
        escalate_on: Sequence[str] = ("output_invalid", "low_confidence"),
        confidence_field: str = "confidence",
        min_confidence: float | None = None,
        deadline_s: float | None = None,
        drill_share: float = 0.0,
        drill_recorder: DrillRecorder | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.tiers = list(tiers)
        self.tier_hops = tier_hops or {}
        self.fallbacks = list(fallbacks)
        self.breakers = breakers or {}
        self.rules = list(rules)
        self.use_prompt_tier = use_prompt_tier
        self.cascade = cascade
        self.escalate_on = set(escalate_on)
        self.confidence_field = confidence_field
        self.min_confidence = min_confidence
        self.deadline_s = deadline_s
        self.drill_share = drill_share
        self.drill_recorder = drill_recorder
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.escalations = 0
        self.downgrades = 0
        if not self.all_hops():
            raise ValueError(f"route {name!r} has no models")

    # -- shape -----------------------------------------------------------------------

    def all_hops(self) -> list[Hop]:
        """Every model of the route once: tiers cheapest first, then fallbacks."""
        seen: dict[str, Hop] = {}
        for tier in self.tiers:
            for hop in sorted(self.tier_hops.get(tier, []), key=_list_price):
                seen.setdefault(hop.model_name, hop)
        for hop in self.fallbacks:
            seen.setdefault(hop.model_name, hop)
        return list(seen.values())

    @property
    def capabilities(self) -> Capabilities:
        return self.all_hops()[0].provider.capabilities

    def pick_tier(self, request: CompletionRequest) -> int:
        if not self.tiers:
            return 0
        call = ctx.call_context.get()
        tokens = estimate_input_tokens(request)
        for rule in self.rules:
            if rule.tier in self.tiers and rule.matches(tokens, call):
                return self.tiers.index(rule.tier)
        if self.use_prompt_tier and call is not None and call.prompt_tier in self.tiers:
            return self.tiers.index(call.prompt_tier)
        return 0

    def _healthy(self, hop: Hop) -> bool:
        breaker = self.breakers.get(hop.model_name)
        return breaker is None or breaker.healthy()

    def chain(self, request: CompletionRequest, tier_index: int) -> list[Hop]:
        hops: list[Hop] = []
        if self.tiers:
            tier = self.tiers[tier_index]
            candidates = [h for h in self.tier_hops.get(tier, []) if h.fits(request)]
            candidates.sort(key=lambda h: (not self._healthy(h), _cost_key(h, request)))
            hops.extend(candidates)
        names = {h.model_name for h in hops}
        hops.extend(h for h in self.fallbacks if h.model_name not in names)
        return hops

    # -- calling ---------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        sink = current_sink()
        if sink is not None:
            if sink.claimed:
                # A model call made on the way to the answer (a cache audit's judge, a
                # second opinion): its text is not the client's, so it does not stream.
                with streaming(None):
                    return await self._complete(request)
            sink.claimed = True
        return await self._complete(request)

    async def _complete(self, request: CompletionRequest) -> Completion:
        if _in_route.get():
            return await self._route(request)  # on the way: the caller's request counted
        self._check_key_rate()
        with ctx.bind(_in_route, True):
            return await self._route(request)

    async def _route(self, request: CompletionRequest) -> Completion:
        deadline = ctx.deadline.get()
        if self.deadline_s is not None:
            mine = self.clock.now() + self.deadline_s
            deadline = mine if deadline is None else min(deadline, mine)
        with ctx.bind(ctx.deadline, deadline), ctx.bind(ctx.route_name, self.name):
            start = self.pick_tier(request)
            if self.drill_share and current_sink() is None and self.rng.random() < self.drill_share:
                drilled = await self._live_drill(request, start)
                if drilled is not None:
                    return drilled
            try:
                return await self._cascade(request, start)
            except OverBudget as exc:
                if not exc.downgrade:
                    raise
                return await self._downgrade(request, start, exc)

    def _check_key_rate(self) -> None:
        """Count this request against its API key's RPM, or refuse it with the wait.

        Checked once per request, here at the top of the stack, so retries and fallback
        hops inside it do not count as more requests of the caller's.
        """
        key = ctx.api_key.get()
        if key is None or key.limiter is None:
            return
        wait = key.limiter.try_acquire()
        if wait > 0:
            raise errors.RateLimited(
                f"API key over its limit of {key.limiter.policy.rpm} requests per minute",
                retry_after=wait,
                provider="roadworthy",
            )

    async def _cascade(self, request: CompletionRequest, start: int) -> Completion:
        check = ctx.output_check.get() if self.cascade else None
        last_tier = max(0, len(self.tiers) - 1)
        index = start
        token = None
        try:
            while True:
                chain = self.chain(request, index)
                completion = await Fallback(chain, name=self.name).complete(request)
                sink = current_sink()
                if check is None or index >= last_tier or (sink is not None and sink.committed):
                    return completion
                why = self._check(check, completion)
                if why is None:
                    return completion
                self.escalations += 1
                log.info(
                    "route %r: escalating from tier %r to %r (%s)",
                    self.name,
                    self.tiers[index],
                    self.tiers[index + 1],
                    why,
                )
                index += 1
                reason = ctx.hop_reason.set(f"escalated:{why}")
                token = token or reason
        finally:
            if token is not None:
                ctx.hop_reason.reset(token)

    def _check(self, check: Callable[[Completion], Any], completion: Completion) -> str | None:
        """Why the output needs a bigger model, or None when it passes."""
        try:
            value = check(completion)
        except errors.OutputInvalid:
            return "OutputInvalid" if "output_invalid" in self.escalate_on else None
        if self.min_confidence is not None and "low_confidence" in self.escalate_on:
            confidence = value.get(self.confidence_field) if isinstance(value, dict) else None
            if isinstance(confidence, int | float) and confidence < self.min_confidence:
                return "LowConfidence"
        return None

    async def _downgrade(
        self, request: CompletionRequest, start: int, refused: OverBudget
    ) -> Completion:
        ceiling = min(_cost_key(h, request) for h in self.chain(request, start))
        cheaper = [
            h for h in self.all_hops() if h.fits(request) and _cost_key(h, request) < ceiling
        ]
        if not cheaper:
            raise refused
        cheaper.sort(key=lambda h: _cost_key(h, request))
        self.downgrades += 1
        log.warning(
            "route %r: budget %r is spent; downgrading to %s",
            self.name,
            refused.budget,
            cheaper[0].model_name,
        )
        with ctx.bind(ctx.hop_reason, "downgraded:BudgetExceeded"):
            return await Fallback(cheaper, name=self.name).complete(request)

    # -- drills ----------------------------------------------------------------------

    def drill_chain(self) -> list[Hop]:
        """The chain a drill walks: every model of the route, in chain order."""
        return self.all_hops()

    async def drill_hop(self, request: CompletionRequest, hop_index: int) -> Completion:
        """Call ``hop_index`` the way a real fallback would reach it.

        The hops before it are forced to fail (without being called) with an error class
        that the drilled hop is configured to take over on, so the drill also proves the
        trigger. Only the drilled hop can answer.
        """
        chain = self.drill_chain()
        target = chain[hop_index]
        forced = frozenset(h.model_name for h in chain[:hop_index])
        trigger = "ProviderUnavailable" if "ProviderUnavailable" in target.on else None
        if trigger is None:
            trigger = next(
                (n for n in sorted(target.on) if n not in ("CircuitOpen", "BudgetExceeded")),
                "ProviderUnavailable",
            )
        with (
            ctx.bind(ctx.forced_failures, forced),
            ctx.bind(ctx.forced_error, trigger),
            ctx.bind(ctx.route_name, self.name),
        ):
            return await Fallback(chain[: hop_index + 1], name=self.name).complete(request)

    async def _live_drill(self, request: CompletionRequest, start: int) -> Completion | None:
        chain = self.drill_chain()
        if len(chain) < 2:
            return None
        hop = self.rng.randrange(1, len(chain))
        try:
            completion = await self.drill_hop(request, hop)
        except errors.RoadworthyError as exc:
            outcome = DrillOutcome(
                self.name, hop, chain[hop].model_name, False, exc.error_class, str(exc)[:500]
            )
            self._report_drill(outcome)
            return None  # the live request still gets the normal chain
        self._report_drill(DrillOutcome(self.name, hop, chain[hop].model_name, True))
        return completion

    def _report_drill(self, outcome: DrillOutcome) -> None:
        if self.drill_recorder is not None:
            self.drill_recorder(outcome, "live")

    async def aclose(self) -> None:
        return None  # providers belong to the workspace that built the route
