"""The ``generate`` step: render a prompt, call its route's model stack, check the output.

Every attempt the stack makes, successful or not, becomes one ledger row before the step
returns or raises (the stack's ``Recorded`` wrapper writes it), so the ledger is complete
even when an item fails.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from ..config.model import GenerateStep, ModelConfig
from ..errors import ConfigError, OutputInvalid
from ..models import context as stack_context
from ..models.context import CallContext
from ..models.router import Router
from ..prompts import PromptRegistry, ResolvedPrompt, render_messages
from ..prompts.model import PromptDoc
from ..providers.base import Completion, CompletionRequest, Provider, ResponseFormat
from ..providers.pricing import Price
from ..store import Store

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
    input_class: str | None = None  # from the input layer, for tier rules
    complexity: float | None = None


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
    model: BoundModel | None  # None: the step names a route, which picks per call
    prompt: ResolvedPrompt
    schema: dict[str, Any] | None
    wants_json: bool


class GenerateRunner:
    """Run one generate step through its route's model stack.

    The stack records every attempt as its own ledger row (see
    :mod:`roadworthy.models.recording`); this class only says *who* the call is for, by
    putting a :class:`~roadworthy.models.context.CallContext` in context, and hands the
    stack the prompt's per-model variants and the output check that drives cascades.
    """

    def __init__(
        self,
        *,
        step: GenerateStep,
        step_name: str,
        registry: PromptRegistry,
        models: Callable[[str], BoundModel],
        schema: dict[str, Any] | None,
        store: Store,
        routes: Callable[[str | None, str], Router] | None = None,
    ) -> None:
        self.step = step
        self.step_name = step_name
        self.registry = registry
        self.models = models
        self.schema = schema
        self.store = store
        self.routes = routes

    def _default_model(self) -> str | None:
        name = self.step.model
        if name is None:
            source = self.registry.files.get(self.step.prompt.partition("@")[0])
            name = source.doc.settings.model if source else None
        return name

    def max_concurrency(self) -> int | None:
        """The provider's own limit for the model this step uses by default."""
        if self.step.route is not None and self.routes is not None:
            limits = [
                h.provider.capabilities.max_concurrency
                for h in self.routes(self.step.route, "").all_hops()
            ]
            known = [limit for limit in limits if limit is not None]
            return min(known) if known else None
        name = self._default_model()
        if name is None:
            return None
        return self.models(name).provider.capabilities.max_concurrency

    def prepare(self, variables: dict[str, Any]) -> PreparedCall:
        resolved = self.registry.resolve(self.step.prompt)
        model_name = self.step.model
        if model_name is None and self.step.route is None:
            model_name = resolved.doc.settings.model
        if model_name is None and self.step.route is None:
            raise ConfigError(
                f"step {self.step_name!r}: no model (set generate.model or generate.route, or "
                f"settings.model in prompt {resolved.doc.id!r})"
            )
        model = self.models(model_name) if model_name is not None else None
        doc = resolved.doc.for_model(model_name) if model_name is not None else resolved.doc
        request, schema, wants_json = self._request(doc, variables, model)
        return PreparedCall(request, model, resolved, schema, wants_json)

    def _request(
        self, doc: PromptDoc, variables: dict[str, Any], model: BoundModel | None
    ) -> tuple[CompletionRequest, dict[str, Any] | None, bool]:
        settings = doc.settings
        schema = self.schema if self.schema is not None else doc.schema_
        temperature = self.step.temperature
        if temperature is None:
            temperature = settings.temperature if settings.temperature is not None else 0.0
        wants_json = schema is not None or settings.response_format == "json"
        request = CompletionRequest(
            messages=render_messages(doc, variables),
            model=model.config.id if model is not None else "",
            temperature=temperature,
            max_tokens=self.step.max_tokens or settings.max_tokens,
            stop=tuple(settings.stop),
            response_format=ResponseFormat(schema=schema) if wants_json else None,
            timeout_s=self.step.timeout_s,
        )
        return request, schema, wants_json

    def drill_inputs(
        self, samples: list[dict[str, Any]]
    ) -> tuple[
        list[CompletionRequest],
        list[Callable[[str], CompletionRequest | None] | None],
        Callable[[Completion], Any] | None,
    ]:
        """Requests, per-model variants and the output check, for a fallback drill."""
        requests: list[CompletionRequest] = []
        variants: list[Callable[[str], CompletionRequest | None] | None] = []
        check: Callable[[Completion], Any] | None = None
        for variables in samples:
            call = self.prepare(variables)
            requests.append(call.request)
            variants.append(self._variant_for(call.prompt, variables))
            if call.wants_json:
                check = functools.partial(self._output, call)
        return requests, variants, check

    def _variant_for(
        self, resolved: ResolvedPrompt, variables: dict[str, Any]
    ) -> Callable[[str], CompletionRequest | None]:
        def variant(model_name: str) -> CompletionRequest | None:
            if model_name not in resolved.doc.variants:
                return None
            return self._request(resolved.doc.for_model(model_name), variables, None)[0]

        return variant

    def _router(self, call: PreparedCall) -> Router:
        if self.routes is None:
            raise ConfigError(f"step {self.step_name!r}: no model stack to call (workspace bug)")
        return self.routes(self.step.route, call.model.name if call.model else "")

    async def run(self, variables: dict[str, Any], ctx: GenerateContext) -> Any:
        """Return the parsed output (JSON value or text); raise a RoadworthyError on failure."""
        call = self.prepare(variables)
        router = self._router(call)
        resolved = call.prompt
        variant = self._variant_for(resolved, variables)

        def check(completion: Completion) -> Any:
            return self._output(call, completion)

        context = CallContext(
            trace_id=ctx.trace_id,
            item_id=ctx.item_id,
            run_id=ctx.run_id,
            pipeline=ctx.pipeline,
            step=self.step_name,
            prompt_id=resolved.doc.id,
            prompt_version=resolved.version,
            prompt_label=resolved.label,
            input_class=ctx.input_class,
            complexity=ctx.complexity,
            prompt_tier=resolved.doc.settings.tier,
        )
        with (
            stack_context.bind(stack_context.call_context, context),
            stack_context.bind(stack_context.request_for_model, variant),
            stack_context.bind(stack_context.output_check, check if call.wants_json else None),
        ):
            completion = await router.complete(call.request)
        return self._output(call, completion)

    def _output(self, call: PreparedCall, completion: Completion) -> Any:
        if not call.wants_json:
            return completion.text
        if completion.parsed is not None:
            return parse_json_output(json.dumps(completion.parsed), call.schema)
        return parse_json_output(completion.text, call.schema)
