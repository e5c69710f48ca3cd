"""SIMULATION: cost and quality of all-large vs tiered routing with cascade.

This is a simulation, not a measurement of real models. Two scripted models are priced
like a frontier model (gpt-4o: $2.50/$10 per million tokens) and a small one
(gpt-4o-mini: $0.15/$0.60). Each item has a difficulty d in [0, 1]; the small model is
right with probability 0.97 - 0.75 d, the large one with 0.98 - 0.15 d. A wrong answer
from the small model fails the step's checks (schema/criteria) with probability
``CHECK_CATCH`` and reports low confidence when d is high, which is what makes the
cascade escalate. The stack used is the real router (tiers, cascade, recording).

Reported: total cost and accuracy of each strategy, the cost reduction and the quality
change of tiered routing against all-large.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from decimal import Decimal
from typing import Any

from roadworthy import errors
from roadworthy.models import CallContext, Hop, Recorded, Router
from roadworthy.models import context as ctx
from roadworthy.providers.base import Capabilities, Completion, CompletionRequest, Message, Usage
from roadworthy.providers.pricing import Price
from roadworthy.store import CallRecord

LARGE = Price(input=Decimal("2.50"), output=Decimal("10"))
SMALL = Price(input=Decimal("0.15"), output=Decimal("0.60"))
CHECK_CATCH = 0.7
MIN_CONFIDENCE = 0.6


class SimModel:
    """Answers item ``k`` right with a difficulty-dependent probability (seeded)."""

    def __init__(self, name: str, accuracy: Any, seed: int) -> None:
        self.name = name
        self.accuracy = accuracy
        self.rng = random.Random(seed)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(context_window=128_000)

    async def complete(self, request: CompletionRequest) -> Completion:
        item = json.loads(request.messages[-1].content)
        d = item["difficulty"]
        right = self.rng.random() < self.accuracy(d)
        caught = not right and self.rng.random() < CHECK_CATCH
        answer = item["label"] if right else "wrong"
        text = (
            "not json"
            if caught
            else json.dumps(
                {
                    "label": answer,
                    "confidence": round(max(0.0, 1 - d + self.rng.uniform(-0.1, 0.1)), 2),
                }
            )
        )
        return Completion(
            text=text,
            finish_reason="stop",
            usage=Usage(600, 40),
            model=self.name,
            provider=self.name,
        )

    async def aclose(self) -> None:
        return None


def check(completion: Completion) -> Any:
    try:
        return json.loads(completion.text)
    except ValueError:
        raise errors.OutputInvalid("not JSON") from None


async def run(strategy: str, items: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    rows: list[CallRecord] = []
    small = Recorded(
        SimModel("small", lambda d: 0.97 - 0.75 * d, seed),
        model_name="small",
        model_id="small",
        tier="small",
        price=SMALL,
        recorder=rows.append,
    )
    large = Recorded(
        SimModel("large", lambda d: 0.98 - 0.15 * d, seed + 1),
        model_name="large",
        model_id="large",
        tier="large",
        price=LARGE,
        recorder=rows.append,
    )
    hops = {
        "small": [Hop(small, "small", price=SMALL)],
        "large": [Hop(large, "large", price=LARGE)],
    }
    if strategy == "all_large":
        router = Router("all-large", tiers=["large"], tier_hops={"large": hops["large"]})
    else:
        router = Router(
            "tiered",
            tiers=["small", "large"],
            tier_hops=hops,
            cascade=True,
            min_confidence=MIN_CONFIDENCE,
        )
    correct = 0
    for n, item in enumerate(items):
        request = CompletionRequest(messages=(Message("user", json.dumps(item)),), model="")
        with (
            ctx.bind(ctx.call_context, CallContext(trace_id=str(n))),
            ctx.bind(ctx.output_check, check),
        ):
            completion = await router.complete(request)
        with contextlib.suppress(errors.OutputInvalid):
            correct += check(completion).get("label") == item["label"]
    cost = sum((r.cost_usd or Decimal(0)) for r in rows)
    return {
        "cost_usd": float(round(cost, 6)),
        "accuracy": round(correct / len(items), 4),
        "calls": len(rows),
        "escalations": router.escalations,
    }


async def main(n: int = 2000, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    items = [{"difficulty": rng.betavariate(1.2, 2.5), "label": f"c{i % 5}"} for i in range(n)]
    big = await run("all_large", items, seed)
    tiered = await run("tiered", items, seed)
    return {
        "bench": "routing_savings",
        "simulation": True,
        "note": "scripted models with difficulty-dependent accuracy; not real model quality",
        "items": n,
        "difficulty": "Beta(1.2, 2.5)",
        "all_large": big,
        "tiered_cascade": tiered,
        "cost_reduction": round(1 - tiered["cost_usd"] / big["cost_usd"], 4),
        "accuracy_change_points": round((tiered["accuracy"] - big["accuracy"]) * 100, 2),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*(int(a) for a in sys.argv[1:]))), indent=2))
