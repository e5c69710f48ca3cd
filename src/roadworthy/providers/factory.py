"""Build providers and prices from configuration."""

from __future__ import annotations

from decimal import Decimal

from ..config.model import (
    AnthropicProviderConfig,
    LocalProviderConfig,
    ModelConfig,
    OpenAIProviderConfig,
    ProviderConfig,
    ScriptedProviderConfig,
)
from .anthropic import AnthropicProvider
from .base import Provider
from .local import LocalProvider
from .openai import OpenAIProvider
from .pricing import Price, builtin_price
from .scripted import Reply, ScriptedProvider

__all__ = ["build_provider", "resolve_price"]


def build_provider(name: str, cfg: ProviderConfig) -> Provider:
    if isinstance(cfg, OpenAIProviderConfig):
        return OpenAIProvider(
            name=name,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            total_timeout_s=cfg.total_timeout_s,
            json_mode=cfg.json_mode,
        )
    if isinstance(cfg, AnthropicProviderConfig):
        return AnthropicProvider(
            name=name,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            api_version=cfg.api_version,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            total_timeout_s=cfg.total_timeout_s,
        )
    if isinstance(cfg, LocalProviderConfig):
        return LocalProvider(
            name=name,
            model_path=cfg.model_path,
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            timeout_s=cfg.timeout_s,
        )
    if isinstance(cfg, ScriptedProviderConfig):
        return ScriptedProvider(
            [Reply(**r.model_dump()) for r in cfg.replies], name=name, echo=cfg.echo
        )
    raise TypeError(f"unsupported provider config {type(cfg).__name__}")


def resolve_price(model: ModelConfig, provider: ProviderConfig) -> Price | None:
    """The price of a configured model, or None when nobody knows it.

    Order: an explicit ``price`` in config; the bundled table entry named by ``pricing``;
    zero for the in-process local model (it has no per-token bill); the bundled table by
    the model id. Anything else is unknown, and its calls carry a null cost.
    """
    if model.price is not None:
        return Price.from_mapping(model.price.model_dump())
    if model.pricing is not None:
        return builtin_price(model.pricing)
    if isinstance(provider, LocalProviderConfig):
        return Price(input=Decimal(0), output=Decimal(0))
    return builtin_price(model.id)
