"""A loaded project made live: its store open, its providers built, its pipelines bound.

This is the object library users hold::

    import roadworthy

    with roadworthy.open_workspace("examples/support-triage") as ws:
        result = ws.pipeline("support-triage").run_sync({"text": "I was charged twice"})

Providers are built lazily, so a project that lists a cloud provider it does not use in
this process does not need its key.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..config import PipelineConfig, Project, load_project
from ..config.load import hint_names
from ..errors import ConfigError
from ..ingest import Ingestor
from ..models import StackBuilder
from ..models.router import DrillOutcome, Router
from ..prompts import PromptRegistry, PromptsFolder, parse_ref
from ..providers._http import HttpProvider
from ..providers.base import Provider
from ..providers.factory import build_provider, resolve_price
from ..store import Store
from ..store.budgets import BudgetLedger, DrillLog
from ..store.cache import StoreCache
from ..store.writer import CallWriter
from .chunk_step import ChunkRunner
from .generate import BoundModel, GenerateRunner
from .runner import ItemResult, Pipeline, Step

__all__ = ["Workspace", "check_prompts", "open_workspace"]

T = TypeVar("T")

log = logging.getLogger("roadworthy")


class Workspace:
    def __init__(
        self,
        project: Project,
        *,
        store: Store | None = None,
        providers: dict[str, Provider] | None = None,
    ) -> None:
        self.project = project
        self.store = store or Store.open(project.storage_url)
        self._providers: dict[str, Provider] = dict(providers or {})
        self.unpriced_models: list[str] = []
        self._bound: dict[str, BoundModel] = {}
        self._stack: StackBuilder | None = None
        # the call ledger's writer: group commits for async callers (the service)
        self.calls = CallWriter(self.store)
        settings = project.config.prompts
        self.prompts = PromptRegistry(
            self.store,
            project.root,
            ttl_s=settings.label_ttl_s,
            default_label=settings.default_label,
        )

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            cfg = self.project.config.providers[name]
            self._providers[name] = build_provider(name, cfg)
        return self._providers[name]

    def model(self, name: str) -> BoundModel:
        cfg = self.project.config.models[name]
        price = resolve_price(cfg, self.project.config.providers[cfg.provider])
        if price is None and name not in self.unpriced_models:
            self.unpriced_models.append(name)
            log.warning(
                "no price known for model %r (id %r): its calls are recorded with cost "
                "unknown; add models.%s.price to roadworthy.yaml",
                name,
                cfg.id,
                name,
            )
        return BoundModel(name=name, config=cfg, provider=self.provider(cfg.provider), price=price)

    @property
    def stack(self) -> StackBuilder:
        """The model stacks of this workspace's routes (breakers, limiters shared)."""
        if self._stack is None:
            drills = DrillLog(self.store.engine)

            def record_drill(outcome: DrillOutcome, source: str) -> None:
                drills.record(
                    route=outcome.route,
                    hop=outcome.hop,
                    model_name=outcome.model_name,
                    ok=outcome.ok,
                    error_class=outcome.error_class,
                    detail=outcome.detail,
                    inputs=1,
                    source=source,
                )

            self._stack = StackBuilder(
                self.project.config,
                provider=self.provider,
                price=lambda name: self._model_cached(name).price,
                recorder=self.calls,
                ledger=BudgetLedger(self.store.engine),
                drill_recorder=record_drill,
                cache=StoreCache(self.store.engine),
            )
        return self._stack

    def route(self, route: str | None, model: str = "") -> Router:
        """The stack for a route, or the one-model stack of a step that names a model."""
        if route is not None:
            return self.stack.route(route)
        return self.stack.model_route(model)

    def pipeline(self, name: str, *, config: PipelineConfig | None = None) -> Pipeline:
        """The named pipeline, or ``config`` under that name (evaluations swap prompts)."""
        pipelines = self.project.config.pipelines
        if config is None and name not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            raise ConfigError(
                f"no pipeline {name!r} in {self.project.config_path} (known: {known})"
            )
        problems = check_prompts(self.project, self.prompts.files)
        if problems:
            raise ConfigError(problems)
        config = config or pipelines[name]
        steps: list[Step] = []
        for index, step in enumerate(config.steps):
            if step.chunk is not None:
                steps.append(ChunkRunner(step.chunk))
                continue
            gen = step.generate
            assert gen is not None
            steps.append(
                GenerateRunner(
                    step=gen,
                    step_name=gen.name or f"generate{index + 1 if index else ''}",
                    registry=self.prompts,
                    models=self._model_cached,
                    schema=self.project.schema_for(gen),
                    store=self.store,
                    routes=self.route,
                )
            )
        ingestor = Ingestor(config.ingest) if config.ingest is not None else None
        second = config.escalate.second_opinion
        last = next((s for s in reversed(steps) if isinstance(s, GenerateRunner)), None)
        second_runner = None
        if second is not None and last is not None:
            second_runner = GenerateRunner(
                step=last.step.model_copy(update={"model": second.model, "route": None}),
                step_name=f"{last.step_name}:second-opinion",
                registry=self.prompts,
                models=self._model_cached,
                schema=last.schema,
                store=self.store,
                routes=self.route,
            )
        return Pipeline(
            name, config, steps, self.store, ingestor=ingestor, second_opinion=second_runner
        )

    def unsynced_prompt_notes(self, pipeline: Pipeline) -> list[str]:
        """Say when a prompt file differs from the version its label serves.

        Editing a file does not change what runs until ``prompts sync`` and ``promote``;
        without this note that is a surprise.
        """
        notes = []
        for step in pipeline.steps:
            if not isinstance(step, GenerateRunner):
                continue
            resolved = self.prompts.resolve(step.step.prompt)
            source = self.prompts.files.get(resolved.doc.id)
            if source is not None and source.doc.content_hash() != resolved.doc.content_hash():
                notes.append(
                    f"{source.path.relative_to(self.project.root)} differs from {resolved.ref}, "
                    "which is what runs; use `roadworthy prompts sync` and `prompts promote` "
                    "to ship the edit"
                )
        return notes

    def _model_cached(self, name: str) -> BoundModel:
        if name not in self._bound:
            self._bound[name] = self.model(name)
        return self._bound[name]

    def run_sync(self, pipeline: str, data: Any) -> ItemResult:
        """Run one item from synchronous code (scripts, notebooks without a loop)."""
        return self.run_async(self.pipeline(pipeline).run(data))

    def run_async(
        self, work: Coroutine[Any, Any, T], *, interrupt_on: tuple[signal.Signals, ...] = ()
    ) -> T:
        """``asyncio.run(work)``, then close the HTTP clients opened in that loop, in it.

        An HTTP client belongs to the event loop it first ran on and can only be closed
        there; once ``asyncio.run`` returns, that loop is gone, and a client left open
        leaks its connections and is reported as an unclosed session when collected.
        In-process models stay loaded (closing them would reload the weights next run).

        ``interrupt_on`` signals stop the work as Ctrl-C does (cancelled, then
        ``KeyboardInterrupt``): SIGTERM is how a container or a scheduler asks a batch to
        stop, and a background job started by a shell has SIGINT ignored.
        """
        received: list[signal.Signals] = []

        async def main() -> T:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            assert task is not None

            def stop(sig: signal.Signals) -> None:
                received.append(sig)
                task.cancel()

            if interrupt_on:  # a blocked mask is inherited; these must get through
                signal.pthread_sigmask(signal.SIG_UNBLOCK, set(interrupt_on))
            for sig in interrupt_on:
                loop.add_signal_handler(sig, stop, sig)
            try:
                return await work
            finally:
                for sig in interrupt_on:
                    loop.remove_signal_handler(sig)
                await self.close_clients()

        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            if received:
                raise KeyboardInterrupt(received[0].name) from None
            raise

    async def close_clients(self) -> None:
        """Close the HTTP providers' clients of the running loop; they reopen when used."""
        for provider in self._providers.values():
            if isinstance(provider, HttpProvider):
                await provider.aclose()

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def close(self) -> None:
        if self._providers:
            try:
                asyncio.run(self.aclose())
            except RuntimeError:  # already inside a running loop; drop references instead
                self._providers.clear()
        self.calls.close()
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_workspace(path: str | Path = ".") -> Workspace:
    return Workspace(load_project(path))


def check_prompts(project: Project, folder: PromptsFolder) -> list[str]:
    """Problems with the prompt files and with the pipelines' references to them."""
    problems = list(folder.problems)
    config = project.config
    for pname, pipeline in config.pipelines.items():
        for index, step in enumerate(pipeline.steps):
            gen = step.generate
            if gen is None:
                continue
            where = f"{project.config_path}: pipelines.{pname}.steps[{index}].generate"
            prompt_id, _, _ = parse_ref(gen.prompt)
            source = folder.get(prompt_id)
            if source is None:
                if any(p.stem == prompt_id for p in folder.refused):
                    continue  # its own problems are listed already
                problems.append(
                    f"{where}.prompt: no prompt with id {prompt_id!r} in prompts/"
                    f"{hint_names(prompt_id, folder.prompts)}"
                )
                continue
            if gen.route is not None:
                continue  # routes are checked when the config loads
            model = gen.model or source.doc.settings.model
            if model is None:
                problems.append(
                    f"{where}.model: missing, and prompt {prompt_id!r} sets no settings.model"
                )
            elif model not in config.models:
                problems.append(
                    f"{source.path}: settings.model: unknown model {model!r}"
                    f"{hint_names(model, config.models)}"
                )
    return problems
