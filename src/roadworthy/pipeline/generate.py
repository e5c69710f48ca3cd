"""The ``generate`` step: render a prompt, call a model, check the output.

Every call, successful or not, becomes one ledger row before the step returns or raises,
so the ledger is complete even when an item fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from ..config.model import GenerateStep, ModelConfig
from ..errors import ConfigError, OutputInvalid, RoadworthyError
from ..prompts import PromptRegistry, ResolvedPrompt, render_messages
from ..providers.base import Completion, CompletionRequest, Provider, ResponseFormat
from ..providers.pricing import Price, call_cost
from ..secrets import redact
from ..store import CallRecord, Store

__all__ = [
    "BoundModel",
    "GenerateContext",
    "GenerateRunner",
    "PreparedCall",
    "parse_json_output",
]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class BoundModel:
    """A configured model joined to its live provider and price."""

    name: str
    config: ModelConfig
    provider: Provider
    price: Price | None


@dataclass
class GenerateContext:
    trace_id: str
    item_id: str | None
    run_id: str | None
    pipeline: str


def parse_json_output(text: str, schema: dict[str, Any] | None) -> Any:
    """Decode the model's JSON and check it against ``schema``.

    Small models sometimes wrap JSON in a Markdown fence; that is removed. Anything else
    that is not valid JSON, or does not match the schema, is :class:`OutputInvalid`.
    """
    candidate = text.strip()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    try:
        value = json.loads(candidate, strict=False)  # raw tabs/newlines inside strings
    except json.JSONDecodeError as exc:
        raise OutputInvalid(
            f"output is not valid JSON ({exc.msg} at char {exc.pos})", raw_text=text
        ) from None
    if schema is not None:
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise OutputInvalid(
                f"output fails the schema at {where}: {error.message}", raw_text=text
            )
    return value


@dataclass(frozen=True)
class PreparedCall:
    """Everything one call needs, resolved at call time (labels move while we run)."""

    request: CompletionRequest
    model: BoundModel
    prompt: ResolvedPrompt
    schema: dict[str, Any] | None
    wants_json: bool


class GenerateRunner:
    def __init__(
        self,
        *,
        step: GenerateStep,
        step_name: str,
        registry: PromptRegistry,
        models: Callable[[str], BoundModel],
        schema: dict[str, Any] | None,
        store: Store,
    ) -> None:
        self.step = step
        self.step_name = step_name
        self.registry = registry
        self.models = models
        self.schema = schema
        self.store = store

    def max_concurrency(self) -> int | None:
        """The provider's own limit for the model this step uses by default."""
        name = self.step.model
        if name is None:
            source = self.registry.files.get(self.step.prompt.partition("@")[0])
            name = source.doc.settings.model if source else None
        if name is None:
            return None
        return self.models(name).provider.capabilities.max_concurrency

    def prepare(self, variables: dict[str, Any]) -> PreparedCall:
        resolved = self.registry.resolve(self.step.prompt)
        model_name = self.step.model or resolved.doc.settings.model
        if model_name is None:
            raise ConfigError(
                f"step {self.step_name!r}: no model (set generate.model, or settings.model in "
                f"prompt {resolved.doc.id!r})"
            )
        model = self.models(model_name)
        doc = resolved.doc.for_model(model_name)
        settings = doc.settings
        schema = self.schema if self.schema is not None else doc.schema_
        temperature = self.step.temperature
        if temperature is None:
            temperature = settings.temperature if settings.temperature is not None else 0.0
        wants_json = schema is not None or settings.response_format == "json"
        request = CompletionRequest(
            messages=render_messages(doc, variables),
            model=model.config.id,
            temperature=temperature,
            max_tokens=self.step.max_tokens or settings.max_tokens,
            stop=tuple(settings.stop),
            response_format=ResponseFormat(schema=schema) if wants_json else None,
            timeout_s=self.step.timeout_s,
        )
        return PreparedCall(request, model, resolved, schema, wants_json)

    async def run(self, variables: dict[str, Any], ctx: GenerateContext) -> Any:
        """Return the parsed output (JSON value or text); raise a RoadworthyError on failure."""
        call = self.prepare(variables)
        started = time.perf_counter()
        completion: Completion | None = None
        error: RoadworthyError | None = None
        try:
            completion = await call.model.provider.complete(call.request)
        except RoadworthyError as exc:
            error = exc
        latency_ms = (time.perf_counter() - started) * 1000
        self._record(ctx, call, completion, error, latency_ms)
        if error is not None:
            raise error
        assert completion is not None
        if not call.wants_json:
            return completion.text
        if completion.parsed is not None:
            return parse_json_output(json.dumps(completion.parsed), call.schema)
        return parse_json_output(completion.text, call.schema)

    def _record(
        self,
        ctx: GenerateContext,
        call: PreparedCall,
        completion: Completion | None,
        error: RoadworthyError | None,
        latency_ms: float,
    ) -> None:
        model = call.model
        record = CallRecord(
            trace_id=ctx.trace_id,
            item_id=ctx.item_id,
            run_id=ctx.run_id,
            pipeline=ctx.pipeline,
            step=self.step_name,
            provider=model.provider.name,
            model=model.config.id,
            model_name=model.name,
            tier=model.config.tier,
            prompt_id=call.prompt.doc.id,
            prompt_version=call.prompt.version,
            prompt_label=call.prompt.label,
            latency_ms=latency_ms,
            status="ok" if error is None else "error",
        )
        if completion is not None:
            usage = completion.usage
            cost = call_cost(usage, model.price)
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.cached_read_tokens = usage.cached_read_tokens
            record.cache_write_tokens = usage.cache_write_tokens
            record.cost_usd = cost
            record.finish_reason = completion.finish_reason
            record.request_id = completion.request_id
        if error is not None:
            record.error_class = error.error_class
            record.error_message = redact(str(error))[:2000]
        self.store.record_call(record)
