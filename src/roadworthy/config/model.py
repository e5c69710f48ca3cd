"""The typed shape of ``roadworthy.yaml`` and of prompt files.

Every model forbids unknown keys: a typo such as ``api_kye`` must fail loudly with a hint,
not be ignored until the provider answers 401 in production.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .ingest import IngestConfig
from .paths import BatchSettings, PathRules
from .queue import QueueConfig
from .routes import BudgetConfig, RouteConfig
from .server import ServerConfig

__all__ = [
    "AnthropicProviderConfig",
    "ChunkStep",
    "DeferPolicy",
    "EscalateWhen",
    "FailurePath",
    "FieldSpec",
    "GenerateStep",
    "InputSpec",
    "KeywordRule",
    "LocalProviderConfig",
    "ModelConfig",
    "OpenAIProviderConfig",
    "PipelineConfig",
    "PriceConfig",
    "ProjectConfig",
    "PromptsConfig",
    "ProviderConfig",
    "RulesFallback",
    "ScriptedProviderConfig",
    "ScriptedReplyConfig",
    "SecondOpinion",
    "StepConfig",
]

DEFAULT_STORAGE = "sqlite:///.roadworthy/state.db"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _HttpProviderConfig(Strict):
    base_url: str
    api_key_env: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    total_timeout_s: float = Field(120.0, gt=0)


class OpenAIProviderConfig(_HttpProviderConfig):
    type: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    json_mode: Literal["json_schema", "json_object_schema", "json_object"] = "json_schema"


class AnthropicProviderConfig(_HttpProviderConfig):
    type: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    api_version: str = "2023-06-01"


class LocalProviderConfig(Strict):
    type: Literal["local"]
    model_path: str | None = None
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = Field(None, ge=1)
    timeout_s: float = Field(120.0, gt=0)


class ScriptedReplyConfig(Strict):
    text: Any = ""
    when: str | None = None
    error: str | None = None
    error_message: str = "scripted failure"
    retry_after: float | None = None
    latency_s: float = Field(0.0, ge=0)
    times: int | None = Field(None, ge=1)
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)


class ScriptedProviderConfig(Strict):
    type: Literal["scripted"]
    replies: list[ScriptedReplyConfig] = []
    echo: bool = False


ProviderConfig = Annotated[
    OpenAIProviderConfig | AnthropicProviderConfig | LocalProviderConfig | ScriptedProviderConfig,
    Field(discriminator="type"),
]


class PriceConfig(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    input_cached: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    batch_discount: float = Field(0.0, ge=0, le=1)


class ModelConfig(Strict):
    provider: str
    id: str
    tier: str = "default"
    context_window: int | None = Field(None, ge=1)
    price: PriceConfig | None = None
    pricing: str | None = Field(
        None, description="model id in the bundled price table, when `id` is an alias"
    )


class FieldSpec(Strict):
    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = True
    max_bytes: int | None = Field(None, ge=1)
    max_chars: int | None = Field(None, ge=1)
    allow_empty: bool = False
    description: str | None = None


class InputSpec(Strict):
    fields: dict[str, FieldSpec] = {}
    id_field: str | None = Field(
        "id", description="input field that identifies an item across runs (for --resume)"
    )


class GenerateStep(Strict):
    prompt: str = Field(description="prompt id, optionally @label or @version")
    model: str | None = Field(None, description="model name; default: the prompt's settings.model")
    route: str | None = Field(None, description="route name (tiers, fallbacks, budget)")
    output: str | None = Field(None, description="path of a JSON Schema file for the output")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    name: str | None = None
    for_each: str | None = Field(
        None,
        description="run once per element of this list variable (e.g. chunks); the element "
        "is the template variable `chunk`, its position `chunk_index`",
    )


class ChunkStep(Strict):
    """Split a text field into token-bounded chunks (a list for a later for_each step)."""

    field: str = "text"
    max_tokens: int = Field(ge=8)
    overlap: int = Field(0, ge=0)
    kind: Literal["auto", "text", "markdown", "conversation"] = "auto"
    counter: str = Field(
        "auto", description="auto, local, minilm, estimate, or a tokenizer.json path"
    )
    name: str = "chunks"


class StepConfig(Strict):
    """One step: exactly one of ``generate`` or ``chunk``."""

    generate: GenerateStep | None = None
    chunk: ChunkStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StepConfig:
        if (self.generate is None) == (self.chunk is None):
            raise ValueError("a step is exactly one of 'generate' or 'chunk'")
        return self


class KeywordRule(Strict):
    """Set output fields when any keyword appears in the input's text fields."""

    when_any: list[str] = Field(min_length=1)
    set: dict[str, Any]


class RulesFallback(Strict):
    """The rule-based answer used when the model cannot give one (a degraded result)."""

    rules: list[KeywordRule] = []
    defaults: dict[str, Any] = {}
    function: str | None = Field(
        None, description="'module:function' taking the input dict, returning the output or None"
    )


class DeferPolicy(Strict):
    max_attempts: int = Field(5, ge=1)
    backoff_s: float = Field(60.0, gt=0)
    backoff_factor: float = Field(2.0, ge=1)


class SecondOpinion(Strict):
    """Ask a second model and escalate when the two answers disagree."""

    model: str = Field(description="a model name from `models`")
    fields: list[str] = Field([], description="output fields to compare; empty: the whole output")
    rate: float = Field(1.0, gt=0, le=1, description="share of items that get a second opinion")


class EscalateWhen(Strict):
    """Escalate to a human even when the model answered, if any of these hold."""

    output_in: dict[str, list[Any]] = Field(
        {}, description="output field values that need a human (e.g. category: [refund])"
    )
    output_above: dict[str, float] = Field(
        {}, description="numeric output fields over a threshold (e.g. amount: 500)"
    )
    confidence_field: str = "confidence"
    confidence_below: float | None = Field(None, ge=0, le=1)
    audit_rate: float = Field(0.0, ge=0, le=1, description="share of answers sampled for audit")
    second_opinion: SecondOpinion | None = None


FailurePath = Literal["partial", "rules", "defer", "escalate"]


class PipelineConfig(Strict):
    description: str | None = None
    input: InputSpec = InputSpec()
    ingest: IngestConfig | None = Field(
        None, description="validate, normalise, screen and route inputs before the steps"
    )
    steps: list[StepConfig] = Field(min_length=1)
    on_failure: list[FailurePath] = Field(
        [], description="what to do, in order, when the model steps give no valid result"
    )
    fallback_rules: RulesFallback | None = None
    defer: DeferPolicy = DeferPolicy()
    escalate: EscalateWhen = EscalateWhen()
    path: PathRules = Field(
        PathRules(), description="sync, async, batch, or auto (rules by size and priority)"
    )
    batch: BatchSettings = BatchSettings()


class PromptsConfig(Strict):
    label_ttl_s: float = Field(30.0, ge=0, description="how long a label lookup is cached")
    default_label: str = "production"


class ProjectConfig(Strict):
    storage: str = DEFAULT_STORAGE
    prompts: PromptsConfig = PromptsConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    pipelines: dict[str, PipelineConfig] = {}
    routes: dict[str, RouteConfig] = {}
    budgets: dict[str, BudgetConfig] = {}
    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
