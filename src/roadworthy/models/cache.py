"""The cache wrapper: answer a request from a stored answer instead of calling the model.

It sits on top of one hop (``Cached(Retrying(...))``), so a hit skips retries, the
breaker, the budget reservation and the rate limiter: the cheapest call is the one not
made. It knows the hop's model, so the key holds the model id the answer came from.

**Exact.** The key is a SHA-256 of the canonical request: model id, prompt id and version
(or pipeline and step when the call has no registered prompt), the settings that change
the output (temperature, max_tokens, stop, response format, seed) and the messages,
each NFC-normalised with trailing spaces and runs of blanks collapsed. JSON is dumped
with sorted keys, so a schema's key order does not matter. A new prompt version is a new
key: it never reads an old version's entries. Calls with temperature > 0 are only cached
when the route opts in (``nondeterministic``): they vary by design.

**Semantic** (optional): on an exact miss, the last user message is embedded and
compared with the stored ones of the same *partition* (the key without that message),
see :mod:`roadworthy.models.semantic`.

Every hit is a ledger row: ``cache_outcome`` exact or semantic, cost 0, ``saved_usd`` the
cost of the call it replaced, ``cache_similarity`` for semantic hits. A share of semantic
hits (``audit_rate``) is also sent to the model and the two answers compared: structured
outputs (a JSON schema, or JSON text) by value, free text by an LLM judge when the route
names one (:mod:`roadworthy.models.audit`), else after normalisation. The hit row's
``hop_reason`` says ``audit:match``, ``audit:mismatch`` or ``audit:unjudged`` (the judge
gave no verdict: the cached answer is served and kept); a mismatch serves the fresh answer
and drops the entry.

A broken cache backend never fails a call: it is logged and the call goes on. Nor does a
failing embedder (an embeddings endpoint down or slow): the lookup is a miss, the model
answers, and the miss row's ``hop_reason`` says ``cache:embed_failed:<error class>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import re
import time
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from .. import errors
from ..providers.base import Capabilities, Completion, CompletionRequest, Provider, Usage
from ..providers.pricing import Price, call_cost
from ..secrets import redact
from ..store import CallRecord
from ..store.cache import CacheBackend, CacheEntry
from . import context as ctx
from .recording import Recorder
from .semantic import SemanticIndex

__all__ = [
    "AnswerJudge",
    "CachePolicy",
    "Cached",
    "cache_key",
    "canonical_request",
    "normalise_text",
    "partition_key",
]

log = logging.getLogger("roadworthy.cache")

_BLANKS = re.compile(r"[ \t\u00a0]+")
_VERSION = 1  # bump when the canonical form changes, so old keys simply stop matching


def normalise_text(text: str) -> str:
    """NFC, blanks collapsed, trailing spaces and surrounding blank lines dropped."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")
    lines = [_BLANKS.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def canonical_request(request: CompletionRequest, call: ctx.CallContext | None) -> dict[str, Any]:
    """Everything that decides the answer, and nothing else (no timeout, no metadata)."""
    if call is not None and call.prompt_id is not None:
        scope: list[Any] = ["prompt", call.prompt_id, call.prompt_version]
    else:
        scope = ["step", call.pipeline if call else None, call.step if call else None]
    fmt = request.response_format
    return {
        "v": _VERSION,
        "model": request.model,
        "scope": scope,
        "settings": {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "response_format": None if fmt is None else {"name": fmt.name, "schema": fmt.schema},
            "seed": request.seed,
        },
        "messages": [[m.role, normalise_text(m.content)] for m in request.messages],
    }


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(canonical: dict[str, Any]) -> str:
    return _digest(canonical)


def _query_index(canonical: dict[str, Any]) -> int | None:
    messages = canonical["messages"]
    for i in range(len(messages) - 1, -1, -1):
        if messages[i][0] == "user":
            return i
    return None


def partition_key(canonical: dict[str, Any], space: str | None = None) -> str | None:
    """The key without the last user message: what a semantic neighbour must share.

    ``space`` names the embedder: vectors of two models are not comparable, so they never
    share a partition.
    """
    i = _query_index(canonical)
    if i is None:
        return None
    messages = [m if j != i else [m[0], None] for j, m in enumerate(canonical["messages"])]
    scoped = {**canonical, "messages": messages}
    if space is not None:
        scoped["space"] = space
    return _digest(scoped)


class AnswerJudge(Protocol):
    """Says whether two free-text answers to ``question`` agree: True, False, or None
    (no verdict: the judge failed or its reply did not parse)."""

    async def __call__(self, question: str, cached: str, fresh: str) -> bool | None: ...


@dataclass(frozen=True)
class CachePolicy:
    route: str
    exact: bool = True
    ttl_s: float | None = 86400.0
    max_entries: int = 10_000
    nondeterministic: bool = False
    threshold: float | None = None  # None: no semantic cache
    audit_rate: float = 0.0


def _serialise(completion: Completion) -> dict[str, Any] | None:
    data = {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "model": completion.model,
        "provider": completion.provider,
        "parsed": completion.parsed,
        "usage": dataclasses.asdict(completion.usage),
    }
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return None  # an answer we cannot store faithfully is not cached
    return data


def _structured(request: CompletionRequest, a: Completion, b: Completion) -> bool:
    """Answers that are values (a schema, or JSON text), so equality is the right test."""
    if request.response_format is not None or a.parsed is not None or b.parsed is not None:
        return True
    try:
        json.loads(a.text)
        json.loads(b.text)
    except ValueError:
        return False
    return True


def _same_answer(a: Completion, b: Completion) -> bool:
    """Structured outputs compare as values; free text after normalisation."""
    if a.parsed is not None or b.parsed is not None:
        return bool(a.parsed == b.parsed)
    try:
        return bool(json.loads(a.text) == json.loads(b.text))
    except ValueError:
        return normalise_text(a.text) == normalise_text(b.text)


def _last_user(request: CompletionRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


class Cached:
    """A hop's cache: exact first, then semantic, else the model (and store its answer)."""

    def __init__(
        self,
        inner: Provider,
        policy: CachePolicy,
        backend: CacheBackend,
        *,
        model_name: str,
        model_id: str,
        provider_name: str,
        tier: str | None = None,
        price: Price | None = None,
        recorder: Recorder | None = None,
        semantic: SemanticIndex | None = None,
        semantic_backend: CacheBackend | None = None,
        judge: AnswerJudge | None = None,
        wall: Any = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.name = f"cached:{model_name}"
        self.policy = policy
        self.backend = backend
        self.semantic_backend = semantic_backend or backend
        self.model_name = model_name
        self.model_id = model_id
        self.provider_name = provider_name
        self.tier = tier
        self.price = price
        self.recorder = recorder
        self.semantic = semantic if policy.threshold is not None else None
        self.judge = judge
        self.wall = wall
        self.rng = rng or random.Random()

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def bind_request(self, request: CompletionRequest) -> CompletionRequest:
        """The request this hop's model will get (its prompt variant, its model id)."""
        return ctx.bind_to_model(request, self.model_name, self.model_id)

    def cacheable(self, request: CompletionRequest) -> bool:
        return self.policy.nondeterministic or not (request.temperature or 0) > 0

    async def complete(self, request: CompletionRequest) -> Completion:
        bound = self.bind_request(request)
        if not self.cacheable(bound) or ctx.forced_failures.get():
            return await self.inner.complete(request)
        call = ctx.call_context.get()
        canonical = canonical_request(bound, call)
        key = cache_key(canonical)
        started = time.perf_counter()
        now = self.wall()
        if self.policy.exact:
            entry = self._safe_get(key, now)
            if entry is not None:
                self._record(entry, "exact", started)
                return self._completion(entry, "exact")
        partition = query = vector = None
        degraded: str | None = None
        if self.semantic is not None and self.policy.threshold is not None:
            partition = partition_key(canonical, self.semantic.name)
            index = _query_index(canonical)
            if partition is not None and index is not None:
                query = canonical["messages"][index][1]
                found = None
                try:
                    vector = await self.semantic.aencode(query)
                except Exception as exc:  # a broken embedder must not fail the call
                    degraded = self._embed_failed(exc)
                if vector is not None:
                    try:
                        found = self._semantic_lookup(partition, query, vector, now)
                    except Exception:
                        log.exception("semantic cache lookup failed; calling the model")
                if found is not None:
                    entry, similarity = found
                    served, fresh = await self._semantic_hit(
                        bound, request, entry, similarity, started
                    )
                    if fresh:  # an audit caught a wrong hit: keep the right answer instead
                        self._store(key, canonical, call, served, partition, query, vector, now)
                    return served
        if degraded is not None and ctx.hop_reason.get() is None:
            with ctx.bind(ctx.hop_reason, f"cache:embed_failed:{degraded}"):
                completion = await self.inner.complete(request)
        else:
            completion = await self.inner.complete(request)
        self._store(key, canonical, call, completion, partition, query, vector, now)
        return completion

    def _embed_failed(self, exc: Exception) -> str:
        """Count and log an embedder failure once per call; the caller serves a miss."""
        name = exc.error_class if isinstance(exc, errors.RoadworthyError) else type(exc).__name__
        assert self.semantic is not None
        self.semantic.failures[name] = self.semantic.failures.get(name, 0) + 1
        log.warning(
            "semantic cache: the embedder failed (%s: %s); served as a miss",
            name,
            redact(str(exc))[:200],
        )
        return name

    # -- lookups ---------------------------------------------------------------------

    def _safe_get(self, key: str, now: float) -> CacheEntry | None:
        try:
            return self.backend.get(key, now)
        except Exception:
            log.exception("cache backend failed on get; calling the model")
            return None

    def _semantic_lookup(
        self, partition: str, query: str, vector: Any, now: float
    ) -> tuple[CacheEntry, float] | None:
        assert self.semantic is not None and self.policy.threshold is not None
        for candidate in self.semantic.search(partition, query, vector, self.policy.threshold, now):
            entry = self.semantic.entry(partition, candidate, now)
            if entry is not None:
                return entry, candidate.similarity
        return None

    async def _semantic_hit(
        self,
        bound: CompletionRequest,
        request: CompletionRequest,
        entry: CacheEntry,
        similarity: float,
        started: float,
    ) -> tuple[Completion, bool]:
        """The answer to serve, and whether it is a fresh one (an audit found a wrong hit)."""
        cached = self._completion(entry, "semantic", similarity)
        if not (self.policy.audit_rate and self.rng.random() < self.policy.audit_rate):
            self._record(entry, "semantic", started, similarity)
            return cached, False
        fresh = await self.inner.complete(request)
        verdict = await self._compare(bound, cached, fresh)
        self._record(entry, "semantic", started, similarity, audit=verdict)
        if verdict != "mismatch":
            return cached, False
        log.warning("semantic cache audit: wrong hit at similarity %.3f", similarity)
        try:
            self.semantic_backend.delete(entry.key)
            self.backend.delete(entry.key)
        except Exception:
            log.exception("cache backend failed to drop a wrong entry")
        if self.semantic is not None and entry.partition is not None:
            self.semantic.remove(entry.partition, entry.key)
        return fresh, True

    async def _compare(
        self, bound: CompletionRequest, cached: Completion, fresh: Completion
    ) -> str:
        """``match``, ``mismatch``, or ``unjudged`` when the judge gave no verdict."""
        if self.judge is None or _structured(bound, cached, fresh):
            return "match" if _same_answer(cached, fresh) else "mismatch"
        if normalise_text(cached.text) == normalise_text(fresh.text):
            return "match"  # identical text needs no judge
        try:
            # The judge is its own call: not this step's prompt variant, output check or
            # cascade, and its ledger rows say what they were for.
            with (
                ctx.bind(ctx.request_for_model, None),
                ctx.bind(ctx.output_check, None),
                ctx.bind(ctx.hop_reason, "judge:cache-audit"),
            ):
                same = await self.judge(_last_user(bound), cached.text, fresh.text)
        except Exception:
            log.exception("semantic cache audit: the judge failed; the hit stands")
            return "unjudged"
        if same is None:
            return "unjudged"
        return "match" if same else "mismatch"

    # -- writes ----------------------------------------------------------------------

    def _store(
        self,
        key: str,
        canonical: dict[str, Any],
        call: ctx.CallContext | None,
        completion: Completion,
        partition: str | None,
        query: str | None,
        vector: Any,
        now: float,
    ) -> None:
        data = _serialise(completion)
        if data is None or not self._passes_check(completion):
            return
        entry = CacheEntry(
            key=key,
            route=self.policy.route,
            model=self.model_id,
            completion=data,
            prompt_id=call.prompt_id if call else None,
            prompt_version=call.prompt_version if call else None,
            cost_usd=call_cost(completion.usage, self.price),
            partition=partition,
            query=query,
            embedding=vector.tobytes() if vector is not None else None,
        )
        policy = self.policy
        try:
            if vector is not None and self.semantic_backend is not self.backend:
                self.semantic_backend.put(
                    entry, now=now, ttl_s=policy.ttl_s, max_entries=policy.max_entries
                )
                entry = dataclasses.replace(entry, embedding=None)
            self.backend.put(entry, now=now, ttl_s=policy.ttl_s, max_entries=policy.max_entries)
        except Exception:
            log.exception("cache backend failed on put; the answer is not cached")
            return
        if (
            self.semantic is not None
            and partition is not None
            and query is not None
            and vector is not None
        ):
            try:
                self.semantic.add(partition, key, query, vector, now)
            except Exception:
                log.exception("semantic index failed on add; the entry is exact-only here")

    @staticmethod
    def _passes_check(completion: Completion) -> bool:
        """Never cache an answer the step would reject: it would fail again, for free."""
        check = ctx.output_check.get()
        if check is None:
            return True
        try:
            check(completion)
        except errors.RoadworthyError:
            return False
        except Exception:
            return False
        return True

    def _completion(
        self, entry: CacheEntry, outcome: str, similarity: float | None = None
    ) -> Completion:
        data = entry.completion
        raw: dict[str, Any] = {"cache": outcome, "key": entry.key}
        if similarity is not None:
            raw["similarity"] = similarity
        return Completion(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            usage=Usage(input_tokens=0, output_tokens=0),  # nothing was billed for this one
            model=data.get("model", entry.model),
            provider=data.get("provider", self.provider_name),
            parsed=data.get("parsed"),
            raw=raw,
        )

    def _record(
        self,
        entry: CacheEntry,
        outcome: str,
        started: float,
        similarity: float | None = None,
        audit: str | None = None,
    ) -> None:
        if self.recorder is None:
            return
        call = ctx.call_context.get() or ctx.CallContext(trace_id="untraced")
        self.recorder(
            CallRecord(
                trace_id=call.trace_id,
                item_id=call.item_id,
                run_id=call.run_id,
                pipeline=call.pipeline,
                step=call.step,
                provider=self.provider_name,
                model=self.model_id,
                model_name=self.model_name,
                tier=self.tier,
                prompt_id=call.prompt_id,
                prompt_version=call.prompt_version,
                prompt_label=call.prompt_label,
                latency_ms=(time.perf_counter() - started) * 1000,
                status="ok",
                input_tokens=0,
                output_tokens=0,
                cost_usd=Decimal(0),
                saved_usd=entry.cost_usd,
                cache_outcome=outcome,
                cache_similarity=similarity,
                attempt=1,
                fallback_depth=ctx.fallback_depth.get(),
                route=ctx.route_name.get(),
                hop_reason=f"audit:{audit}" if audit else ctx.hop_reason.get(),
            )
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
