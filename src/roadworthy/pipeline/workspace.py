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
from pathlib import Path
from types import TracebackType
from typing import Any

from ..config import Project, load_project
from ..errors import ConfigError
from ..providers.base import Provider
from ..providers.factory import build_provider, resolve_price
from ..store import Store
from .generate import BoundModel, GenerateRunner
from .runner import ItemResult, Pipeline

__all__ = ["Workspace", "open_workspace"]

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

    def pipeline(self, name: str) -> Pipeline:
        pipelines = self.project.config.pipelines
        if name not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            raise ConfigError(
                f"no pipeline {name!r} in {self.project.config_path} (known: {known})"
            )
        config = pipelines[name]
        steps = []
        for index, step in enumerate(config.steps):
            gen = step.generate
            steps.append(
                GenerateRunner(
                    step=gen,
                    step_name=gen.name or f"generate{index + 1 if index else ''}",
                    prompt=self.project.prompts[gen.prompt],
                    model=self.model(gen.model),
                    schema=self.project.schema_for(gen),
                    store=self.store,
                )
            )
        return Pipeline(name, config, steps, self.store)

    def run_sync(self, pipeline: str, data: Any) -> ItemResult:
        """Run one item from synchronous code (scripts, notebooks without a loop)."""
        return asyncio.run(self.pipeline(pipeline).run(data))

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
