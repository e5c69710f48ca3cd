"""Build each route's model stack from configuration.

One hop of a route is ``Retrying(Breaker(Budgeted(Throttled(Recorded(provider)))))``:

* ``Recorded`` (innermost) binds the model id and the prompt's variant and writes one
  ledger row per attempt;
* ``Throttled`` waits for RPM/TPM/concurrency capacity of the model and of its API key;
* ``Budgeted`` reserves the attempt's estimated cost in the shared store;
* ``Breaker`` refuses at once while the model's circuit is open;
* ``Retrying`` is the hop's single retry loop;
* ``Cached`` (outermost, on routes with a ``cache`` section) answers repeats without
  any of the above, so a hit costs no retry, budget or rate-limit capacity.

Breakers and rate limiters belong to the *model* (and API key), not the route, so they
are created once per builder and shared by every route that uses the model. A step that
names a bare ``model`` gets a one-model route with a single attempt and no breaker,
which is how steps behaved before routes existed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from decimal import Decimal

from ..config.model import ProjectConfig
from ..config.routes import (
    BreakerConfig,
    EmbeddingsConfig,
    FallbackHopConfig,
    LimitsConfig,
    RouteConfig,
    SemanticCacheConfig,
)
from ..errors import ConfigError
from ..providers.base import Provider
from ..providers.embeddings import EmbedFn
from ..providers.pricing import Price
from ..store.budgets import BudgetLimit
from ..store.cache import CacheBackend, MemoryCache, RedisCache, StoreCache
from ..store.pgvector import PgVectorSearch
from .breaker import Breaker, BreakerPolicy, CircuitBreaker
from .budget import Budgeted, Ledger
from .cache import AnswerJudge, Cached, CachePolicy
from .clock import Clock, SystemClock
from .fallback import DEFAULT_TRIGGERS, Hop
from .ratelimit import RateLimiter, RateLimitPolicy, Throttled
from .recording import Recorded, Recorder
from .retry import Retrying, RetryPolicy
from .router import DrillRecorder, Router, TierRule
from .semantic import SemanticIndex

__all__ = ["StackBuilder", "budget_limits"]


def budget_limits(config: ProjectConfig) -> dict[str, BudgetLimit]:
    return {
        name: BudgetLimit(
            name=name,
            limit_usd=Decimal(str(b.limit_usd)),
            period=b.period,
            soft=tuple(b.soft),
            on_exceed=b.on_exceed,
        )
        for name, b in config.budgets.items()
    }


class StackBuilder:
    def __init__(
        self,
        config: ProjectConfig,
        *,
        provider: Callable[[str], Provider],
        price: Callable[[str], Price | None],
        recorder: Recorder | None = None,
        ledger: Ledger | None = None,
        drill_recorder: DrillRecorder | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        cache: CacheBackend | None = None,
        embedder: Callable[[], EmbedFn] | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.embedder = embedder
        self._redis: dict[str, CacheBackend] = {}
        self._semantic: dict[tuple[EmbeddingsConfig, int, float], SemanticIndex] = {}
        self._judges: dict[str, AnswerJudge] = {}
        self.provider = provider
        self.price = price
        self.recorder = recorder
        self.ledger = ledger
        self.drill_recorder = drill_recorder
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.limits = budget_limits(config)
        self.breakers: dict[str, CircuitBreaker] = {}
        self.limiters: dict[str, RateLimiter] = {}
        self._routes: dict[str, Router] = {}
        self._limit_configs = self._collect_limits()

    def _collect_limits(self) -> dict[str, LimitsConfig]:
        out: dict[str, LimitsConfig] = {}
        for rname, route in self.config.routes.items():
            for key, limits in route.limits.items():
                if key in out and out[key] != limits:
                    raise ConfigError(
                        f"routes.{rname}.limits.{key}: differs from another route's limits for "
                        f"the same {key!r} (hint: a model's limits are shared; set them once)"
                    )
                out[key] = limits
        return out

    def _limiter(self, key: str) -> RateLimiter | None:
        cfg = self._limit_configs.get(key)
        if cfg is None:
            return None
        if key not in self.limiters:
            self.limiters[key] = RateLimiter(
                key,
                RateLimitPolicy(rpm=cfg.rpm, tpm=cfg.tpm, max_concurrency=cfg.max_concurrency),
                self.clock,
            )
        return self.limiters[key]

    def _breaker(self, model: str, cfg: BreakerConfig) -> CircuitBreaker:
        if model not in self.breakers:
            self.breakers[model] = CircuitBreaker(
                model,
                BreakerPolicy(
                    failure_rate=cfg.failure_rate,
                    min_calls=cfg.min_calls,
                    window_s=cfg.window_s,
                    open_s=cfg.open_s,
                    probes=cfg.probes,
                ),
                self.clock,
            )
        return self.breakers[model]

    def limits_for(
        self, model: str, route_budget: str | None
    ) -> Callable[[str | None], Sequence[BudgetLimit]]:
        """The budgets a call of ``model`` counts against, given the pipeline it runs for."""
        static: list[BudgetLimit] = []
        by_pipeline: dict[str, list[BudgetLimit]] = {}
        for name, budget in self.config.budgets.items():
            lim = self.limits[name]
            kind, _, target = budget.scope.partition(":")
            if (
                (budget.scope == "route" and name == route_budget)
                or budget.scope == "global"
                or (kind == "model" and target == model)
            ):
                static.append(lim)
            elif kind == "pipeline":
                by_pipeline.setdefault(target, []).append(lim)
        if not by_pipeline:
            return lambda _pipeline: static
        return lambda pipeline: static + by_pipeline.get(pipeline or "", [])

    def hop(
        self, model: str, route: RouteConfig | None, on: frozenset[str], route_name: str = ""
    ) -> Hop:
        cfg = self.config.models[model]
        price = self.price(model)
        where = f"route {route_name!r}" if route is not None else f"model {model!r}"
        leaf: Provider = Recorded(
            self.provider(cfg.provider),
            model_name=model,
            model_id=cfg.id,
            tier=cfg.tier,
            price=price,
            context_window=cfg.context_window,
            recorder=self.recorder,
        )
        limiters = [
            lim
            for lim in (self._limiter(model), self._limiter(f"provider:{cfg.provider}"))
            if lim is not None
        ]
        stack: Provider = Throttled(leaf, limiters) if limiters else leaf
        if self.ledger is not None:
            limits_for = self.limits_for(model, route.budget if route else None)
            applies = limits_for(None) or any(
                b.scope.startswith("pipeline:") for b in self.config.budgets.values()
            )
            if applies and price is None:
                raise ConfigError(
                    f"{where}: model {model!r} has no price, so no budget can be kept for "
                    f"it (hint: add models.{model}.price)"
                )
            # Always in the stack: an API key's own budget arrives with the request (in
            # context), whether or not any configured budget applies to this model.
            stack = Budgeted(stack, ledger=self.ledger, price=price, limits_for=limits_for)
        if route is not None:
            stack = Breaker(stack, self._breaker(model, route.breaker))
            retry = route.retry
            policy = RetryPolicy(
                max_attempts=retry.max_attempts,
                base_delay_s=retry.base_delay_s,
                max_delay_s=retry.max_delay_s,
                deadline_s=None,  # the route's deadline is propagated in context
                attempt_timeout_s=retry.attempt_timeout_s,
            )
        else:
            policy = RetryPolicy(max_attempts=1, deadline_s=None)
        stack = Retrying(stack, policy, clock=self.clock, rng=self.rng)
        if route is not None and route.cache is not None:
            stack = self._cached(stack, route_name, route, model, price)
        return Hop(
            provider=stack,
            model_name=model,
            context_window=cfg.context_window,
            price=price,
            tier=cfg.tier,
            on=on,
        )

    def cache_backend(self) -> CacheBackend:
        """The store's cache (a process-local one when the builder has no store)."""
        if self.cache is None:
            self.cache = MemoryCache()
        return self.cache

    def semantic_index(self, cfg: SemanticCacheConfig | None = None) -> SemanticIndex:
        """One index per embedder and index settings, shared by the routes that agree."""
        cfg = cfg or SemanticCacheConfig()
        emb = cfg.embeddings
        slot = (emb, cfg.ann_above, cfg.refresh_s)
        if slot not in self._semantic:
            if self.embedder is not None:  # tests and benchmarks bring their own
                embed, name = self.embedder(), "injected"
            elif emb.type == "openai":
                from ..providers.embeddings import OpenAIEmbedder

                assert emb.model is not None  # the config validator requires it
                remote = OpenAIEmbedder(
                    base_url=emb.base_url,
                    model=emb.model,
                    api_key_env=emb.api_key_env,
                    timeout_s=emb.timeout_s,
                    batch_size=emb.batch_size,
                    dimensions=emb.dimensions,
                )
                embed, name = remote, remote.name
            else:
                from ..providers.embeddings import local_embedder

                embed, name = local_embedder(emb.model), f"local:{emb.model or 'minilm-l6-v2'}"
            backend = self.cache_backend()
            pgvector = None
            if isinstance(backend, StoreCache) and backend.engine.dialect.name == "postgresql":
                pgvector = PgVectorSearch.open(backend.engine)  # None (logged once) without it
            self._semantic[slot] = SemanticIndex(
                embed,
                backend,
                ann_above=cfg.ann_above,
                refresh_s=cfg.refresh_s,
                name=name,
                pgvector=pgvector,
            )
        return self._semantic[slot]

    def audit_judge(self, model: str, where: str) -> AnswerJudge:
        """The free-text audit judge: the named model's own one-attempt stack."""
        if model not in self.config.models:
            raise ConfigError(
                f"{where}.cache.semantic.judge: no model {model!r} "
                f"(hint: name one of models: {', '.join(sorted(self.config.models)) or 'none'})"
            )
        if model not in self._judges:
            from .audit import rubric_answer_judge

            self._judges[model] = rubric_answer_judge(
                self.model_route(model), self.config.models[model].id
            )
        return self._judges[model]

    def _cached(
        self, stack: Provider, route_name: str, route: RouteConfig, model: str, price: Price | None
    ) -> Provider:
        cfg = route.cache
        assert cfg is not None
        backend = self.cache_backend()
        if cfg.redis_url is not None:
            if cfg.redis_url not in self._redis:
                self._redis[cfg.redis_url] = RedisCache(cfg.redis_url)
            backend = self._redis[cfg.redis_url]
        model_cfg = self.config.models[model]
        return Cached(
            stack,
            CachePolicy(
                route=route_name,
                exact=cfg.exact,
                ttl_s=cfg.ttl_s,
                max_entries=cfg.max_entries,
                nondeterministic=cfg.nondeterministic,
                threshold=cfg.semantic.threshold if cfg.semantic else None,
                audit_rate=cfg.semantic.audit_rate if cfg.semantic else 0.0,
            ),
            backend,
            model_name=model,
            model_id=model_cfg.id,
            provider_name=model_cfg.provider,
            tier=model_cfg.tier,
            price=price,
            recorder=self.recorder,
            semantic=self.semantic_index(cfg.semantic) if cfg.semantic else None,
            semantic_backend=self.cache_backend(),
            judge=(
                self.audit_judge(cfg.semantic.judge, f"routes.{route_name}")
                if cfg.semantic and cfg.semantic.judge
                else None
            ),
            rng=self.rng,
        )

    def route(self, name: str) -> Router:
        if name not in self._routes:
            self._routes[name] = self._build_route(name, self.config.routes[name])
        return self._routes[name]

    def model_route(self, model: str) -> Router:
        """A bare ``model:`` step: one model, one attempt, still recorded and budgeted."""
        key = f"model:{model}"
        if key not in self._routes:
            self._routes[key] = Router(
                model,
                fallbacks=[self.hop(model, None, DEFAULT_TRIGGERS)],
                clock=self.clock,
            )
        return self._routes[key]

    def _build_route(self, name: str, cfg: RouteConfig) -> Router:
        by_tier: dict[str, list[str]] = {}
        for mname, model in self.config.models.items():
            by_tier.setdefault(model.tier, []).append(mname)
        tier_hops = {
            tier: [self.hop(m, cfg, DEFAULT_TRIGGERS, name) for m in by_tier.get(tier, [])]
            for tier in cfg.tiers
        }
        fallbacks = []
        for entry in cfg.fallbacks:
            if isinstance(entry, FallbackHopConfig):
                on = frozenset(entry.on_errors) if entry.on_errors is not None else DEFAULT_TRIGGERS
                fallbacks.append(self.hop(entry.model, cfg, on, name))
            else:
                fallbacks.append(self.hop(entry, cfg, DEFAULT_TRIGGERS, name))
        models_used = {h.model_name for hops in tier_hops.values() for h in hops} | {
            h.model_name for h in fallbacks
        }
        return Router(
            name,
            tiers=cfg.tiers,
            tier_hops=tier_hops,
            fallbacks=fallbacks,
            breakers={m: b for m, b in self.breakers.items() if m in models_used},
            rules=[
                TierRule(
                    tier=r.tier,
                    input_class=tuple(r.input_class) if r.input_class is not None else None,
                    min_tokens=r.min_tokens,
                    max_tokens=r.max_tokens,
                    min_complexity=r.min_complexity,
                    max_complexity=r.max_complexity,
                )
                for r in cfg.rules
            ],
            use_prompt_tier=cfg.use_prompt_tier,
            cascade=cfg.cascade,
            escalate_on=cfg.escalate_on,
            confidence_field=cfg.confidence_field,
            min_confidence=cfg.min_confidence,
            deadline_s=cfg.deadline_s,
            drill_share=cfg.drill_share,
            drill_recorder=self.drill_recorder,
            clock=self.clock,
            rng=self.rng,
        )
