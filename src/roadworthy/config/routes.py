"""The typed shape of ``routes`` and ``budgets`` in ``roadworthy.yaml``.

A route says how a generate step reaches a model: which tiers it may use and by what
rules, which models to fall back to and on which failures, how to retry, when a breaker
opens, what rate limits apply and which budget pays::

    routes:
      triage:
        tiers: [small, medium]          # cheapest first
        rules: [{min_tokens: 1500, tier: medium}]
        cascade: true                   # try small, escalate when the output fails its checks
        fallbacks: [smol, gpt]          # or [{model: gpt, on: [Timeout, RateLimited]}]
        budget: daily-triage
        cache: {ttl_s: 3600, semantic: {threshold: 0.9}}   # answer repeats for free
    budgets:
      daily-triage: {limit_usd: 5, period: day, on_exceed: downgrade}

A step that names a ``model`` instead of a ``route`` gets a one-model route that makes a
single attempt, as before routes existed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "FALLBACK_ERRORS",
    "BreakerConfig",
    "BudgetConfig",
    "CacheConfig",
    "EmbeddingsConfig",
    "FallbackHopConfig",
    "LimitsConfig",
    "RetryConfig",
    "RouteConfig",
    "SemanticCacheConfig",
    "TierRuleConfig",
]

ErrorName = Literal[
    "Timeout",
    "RateLimited",
    "ProviderUnavailable",
    "MalformedResponse",
    "ContextTooLong",
    "ContentFiltered",
    "CircuitOpen",
    "BudgetExceeded",
]
FALLBACK_ERRORS: tuple[str, ...] = ErrorName.__args__  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Strict):
    max_attempts: int = Field(3, ge=1, le=20)
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(20.0, ge=0)
    attempt_timeout_s: float | None = Field(None, gt=0, description="per attempt")


class BreakerConfig(_Strict):
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_calls: int = Field(10, ge=1)
    window_s: float = Field(60.0, gt=0)
    open_s: float = Field(30.0, gt=0)
    probes: int = Field(1, ge=1)


class LimitsConfig(_Strict):
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute (input + output)")
    max_concurrency: int | None = Field(None, ge=1)


class TierRuleConfig(_Strict):
    """The first rule whose conditions all hold picks the tier."""

    tier: str
    input_class: list[str] | None = None
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    min_complexity: float | None = Field(None, ge=0, le=1)
    max_complexity: float | None = Field(None, ge=0, le=1)


class FallbackHopConfig(_Strict):
    model: str
    on_errors: list[ErrorName] | None = Field(
        None,
        description="error classes that move the chain to this hop (default: all but BudgetExceeded)",
    )


class EmbeddingsConfig(_Strict):
    """How the semantic cache embeds inputs: the bundled MiniLM, or an embeddings API."""

    type: Literal["local", "openai"] = "local"
    model: str | None = Field(
        None, description="local: sentence-transformers path (default bundled); openai: model id"
    )
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key")
    timeout_s: float = Field(5.0, gt=0, description="connect and each read of one request")
    batch_size: int = Field(64, ge=1, description="texts per embeddings request")
    dimensions: int | None = Field(None, ge=1, description="ask the API for shorter vectors")

    @model_validator(mode="after")
    def _needs_model(self) -> EmbeddingsConfig:
        if self.type == "openai" and not self.model:
            raise ValueError(
                "embeddings of type openai need a model id (e.g. model: text-embedding-3-small)"
            )
        return self


class SemanticCacheConfig(_Strict):
    """Serve a stored answer to a *similar* input (same prompt version and settings)."""

    threshold: float = Field(0.92, gt=0, le=1, description="cosine similarity a hit needs")
    audit_rate: float = Field(
        0.0, ge=0, le=1, description="share of semantic hits also sent to the model and compared"
    )
    judge: str | None = Field(
        None, description="model name that compares free-text audit pairs (default: exact match)"
    )
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    ann_above: int = Field(
        10_000, ge=1, description="entries per partition searched exactly; past it: usearch"
    )
    refresh_s: float = Field(
        1.0, ge=0, description="how often a lookup checks the store for other processes' entries"
    )


class CacheConfig(_Strict):
    """Answer repeated inputs from the cache: ``routes.NAME.cache``."""

    exact: bool = True
    ttl_s: float | None = Field(86400.0, gt=0, description="entry lifetime; null: no expiry")
    max_entries: int = Field(10_000, ge=1, description="per route; least recently used go first")
    nondeterministic: bool = Field(
        False, description="also cache calls with temperature > 0 (opt-in: they vary by design)"
    )
    semantic: SemanticCacheConfig | None = None
    redis_url: str | None = Field(None, description="keep exact entries in Redis, not the store")


class RouteConfig(_Strict):
    tiers: list[str] = Field([], description="tiers this route may use, cheapest first")
    rules: list[TierRuleConfig] = []
    use_prompt_tier: bool = Field(True, description="start at the prompt's settings.tier")
    cascade: bool = False
    escalate_on: list[Literal["output_invalid", "low_confidence"]] = [
        "output_invalid",
        "low_confidence",
    ]
    confidence_field: str = "confidence"
    min_confidence: float | None = Field(None, ge=0, le=1)
    fallbacks: list[str | FallbackHopConfig] = []
    budget: str | None = None
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    deadline_s: float | None = Field(120.0, gt=0, description="total per request, all hops")
    limits: dict[str, LimitsConfig] = Field(
        {}, description="rate limits per model name, or per provider (API key) as provider:NAME"
    )
    drill_share: float = Field(0.0, ge=0, le=1, description="share of live calls run as drills")
    cache: CacheConfig | None = None

    def hop_names(self) -> list[str]:
        return [h if isinstance(h, str) else h.model for h in self.fallbacks]


class BudgetConfig(_Strict):
    limit_usd: float = Field(gt=0)
    period: Literal["day", "month"] = "day"
    on_exceed: Literal["refuse", "downgrade"] = "refuse"
    soft: list[float] = Field([0.8], description="shares of the limit that raise an alert")
    scope: str = Field(
        "route",
        description="route (calls of routes naming it), global, pipeline:NAME or model:NAME",
    )
