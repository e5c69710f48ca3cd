"""Fallback drills: prove each hop of a route works before an outage needs it.

A fallback that was never exercised is a guess: the key expired, the model was retired,
the prompt variant does not parse on it. A drill walks the route's chain and, for each hop
in turn, forces the hops before it to fail (they are not called; their ledger rows say
``status = "drill"``) with an error the hop is configured to take over on, then sends a
few real requests. A hop passes when every request succeeded on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..providers.base import Completion, CompletionRequest
from . import context as ctx
from .router import DrillOutcome, DrillRecorder, Router

__all__ = ["DrillReport", "run_drill"]


@dataclass
class DrillReport:
    route: str
    outcomes: list[DrillOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "ok": self.ok,
            "hops": [
                {
                    "hop": o.hop,
                    "model": o.model_name,
                    "ok": o.ok,
                    "error_class": o.error_class,
                    "detail": o.detail,
                }
                for o in self.outcomes
            ],
        }


async def run_drill(
    router: Router,
    requests: Sequence[CompletionRequest],
    *,
    recorder: DrillRecorder | None = None,
    check: Callable[[Completion], Any] | None = None,
    variants: Sequence[Callable[[str], CompletionRequest | None] | None] | None = None,
) -> DrillReport:
    """Drill every hop of ``router`` with ``requests``; record one outcome per hop.

    ``check`` (e.g. the step's schema check) makes an answer that fails it a failed hop:
    a fallback whose output the pipeline would reject is no fallback. ``variants`` gives,
    per request, the prompt's per-model re-rendering, so each hop gets its own variant.
    """
    report = DrillReport(router.name)
    for index, hop in enumerate(router.drill_chain()):
        outcome = DrillOutcome(router.name, index, hop.model_name, True)
        for number, request in enumerate(requests):
            variant = variants[number] if variants is not None else None
            try:
                with ctx.bind(ctx.request_for_model, variant):
                    completion = await router.drill_hop(request, index)
                if check is not None:
                    check(completion)
            except errors.RoadworthyError as exc:
                outcome = DrillOutcome(
                    router.name, index, hop.model_name, False, exc.error_class, str(exc)[:500]
                )
                break
        report.outcomes.append(outcome)
        if recorder is not None:
            recorder(outcome, "cli")
    return report
