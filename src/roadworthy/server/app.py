"""The HTTP service: the native pipeline API and the OpenAI-compatible endpoint.

``create_app(workspace, settings)`` returns an ASGI app (FastAPI) that ``roadworthy
serve`` hands to uvicorn and tests drive through httpx's ASGI transport. Routes:

* ``POST /v1/pipelines/{name}/run``: one item through a pipeline, answered with its
  result (done, degraded, escalated with the review ticket, deferred, rejected, failed);
* ``POST /v1/chat/completions``: OpenAI-compatible, streaming and JSON mode included;
* ``POST /v1/pipelines/{name}/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/batches/{id}``:
  the async path; items go to the job queue and ``roadworthy worker`` runs them;
* ``GET /healthz`` (the process answers) and ``GET /readyz`` (the store answers and its
  schema is at the newest migration).

Every error body is in OpenAI's format (see :mod:`.errors`). The OpenAPI document of this
app is committed at ``docs/openapi.json``; a test fails when the two drift apart.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config.server import ServerConfig
from ..errors import ConfigError
from ..jobs import EmbeddedQueue, JobSpec
from ..models import context as stack_context
from ..models.ratelimit import RateLimiter, RateLimitPolicy
from ..pipeline import Pipeline, Workspace
from ..store.budgets import BudgetLimit
from ..store.keys import ApiKey, KeyStore
from .auth import DEV_KEY, Authenticator
from .chat import (
    ChatRequest,
    EventStreamResponse,
    completion_body,
    open_stream,
    run_chat,
    sse_stream,
    stream_chunks,
)
from .errors import ApiError, body_too_large
from .fast_chat import (
    DEADLINE_HEADER as DEADLINE_HEADER,
)
from .fast_chat import (
    MIN_DEADLINE_S,
    OVERHEAD_HEADER,
    TRACE_HEADER,
    App,
    LeanChat,
)

__all__ = ["API_VERSION", "JobItem", "JobsRequest", "RunRequest", "build_app", "create_app"]

API_VERSION = "1"

# Item status -> HTTP status. The item is recorded whatever happens, so the body is always
# the item's result; the status tells a client without parsing it whether to act.
RUN_STATUS = {
    "done": 200,
    "degraded": 200,
    "escalated": 200,
    "deferred": 202,
    "rejected": 422,
    "failed": 502,
}


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="the item, shaped as the pipeline's input declares")
    deadline_s: float | None = Field(
        None,
        ge=MIN_DEADLINE_S,
        description="answer within this many seconds (default: server setting)",
    )


class JobItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="the item, shaped as the pipeline's input declares")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the same key again returns the job it first made, not a new one",
    )


class JobsRequest(BaseModel):
    """One item (``input``) or many (``inputs``), queued as one batch."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(None, description="one item (give this or inputs)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    inputs: list[JobItem] | None = Field(
        None, min_length=1, max_length=10000, description="many items, one job each"
    )
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first")


class _BodyTooLarge(HTTPException):
    """Raised while a chunked body streams in; an ``HTTPException`` so that FastAPI's body
    parsing passes it on instead of turning it into "error parsing the body" (400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, body_too_large(max_bytes).message)
        self.max_bytes = max_bytes


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are read, and stamp arrival time.

    A pure ASGI wrapper: the arrival time feeds the added-latency header, and a declared
    oversize body costs nothing; a chunked body is counted as it streams in.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["rw_started"] = time.perf_counter()
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _too_large(self, send: Send) -> None:
        await body_too_large(self.max_bytes).response()({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Gateway:
    """What the routes share: the workspace, the settings and the authenticator."""

    def __init__(self, workspace: Workspace, settings: ServerConfig) -> None:
        self.workspace = workspace
        self.settings = settings
        self.auth = Authenticator(KeyStore(workspace.store.engine), settings)
        self._pipelines: dict[str, Pipeline] = {}
        self._key_limiters: dict[tuple[str, int], RateLimiter] = {}
        self.jobs = EmbeddedQueue(workspace.store)

    def key_policy(self, key: ApiKey) -> stack_context.KeyPolicy | None:
        """What the model stack enforces and records for calls made with ``key``.

        The budget is a ledger budget named ``key:<id>``, so its spend is reserved and
        settled atomically in the store like any configured budget; the RPM limiter is
        kept per key (and per limit) in this process, like every rate limiter.
        """
        if key is DEV_KEY:
            return None
        budget = None
        if key.budget_usd is not None:
            budget = BudgetLimit(
                name=f"key:{key.id}",
                limit_usd=key.budget_usd,
                period=key.budget_period,
                soft=(),
            )
        limiter = None
        if key.rpm is not None:
            slot = (key.id, key.rpm)
            limiter = self._key_limiters.get(slot)
            if limiter is None:
                limiter = RateLimiter(
                    f"key:{key.id}", RateLimitPolicy(rpm=key.rpm), self.workspace.stack.clock
                )
                self._key_limiters[slot] = limiter
        return stack_context.KeyPolicy(id=key.id, budget=budget, limiter=limiter)

    def pipeline(self, name: str) -> Pipeline:
        if name not in self._pipelines:
            if name not in self.workspace.project.config.pipelines:
                known = ", ".join(sorted(self.workspace.project.config.pipelines)) or "none"
                raise ApiError(
                    404,
                    f"no pipeline {name!r} (known: {known})",
                    code="pipeline_not_found",
                    param="name",
                )
            self._pipelines[name] = self.workspace.pipeline(name)
        return self._pipelines[name]

    def deadline_s(self, asked: float | None) -> float:
        if asked is None:
            return self.settings.default_deadline_s
        return min(asked, self.settings.max_deadline_s)

    def deadline(self, seconds: float) -> float:
        """The absolute deadline on the model stack's clock."""
        return self.workspace.stack.clock.now() + seconds


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _retry_after(
    status: str, error_code: str | None, policy: stack_context.KeyPolicy | None
) -> float | None:
    """Seconds to wait when a failed item failed on a rate or budget limit, else None."""
    if status != "failed":
        return None
    if error_code == "BudgetExceeded":
        return 60.0
    if error_code == "RateLimited":
        limiter = policy.limiter if policy is not None else None
        return limiter.wait_s() if limiter is not None else 1.0
    return None


def _deadline_header() -> Any:
    """The deadline header, typed in the OpenAPI document so clients (and fuzzers) know it."""
    return Header(None, ge=MIN_DEADLINE_S, description="answer within this many seconds")


def _overhead(request: Request, upstream_ms: float) -> str:
    started = request.scope.get("rw_started")
    if not isinstance(started, float):
        return "0.000"
    total = (time.perf_counter() - started) * 1000
    return f"{max(0.0, total - upstream_ms):.3f}"


def build_app() -> App:
    """The routes without a workspace: what the OpenAPI document is generated from."""
    app = App(
        title="roadworthy",
        version=API_VERSION,
        description="Run LLM pipelines in production; OpenAI-compatible chat endpoint.",
    )
    _errors(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """The store answers and its schema is at the newest migration; 503 otherwise."""
        store = _gateway(request).workspace.store
        try:
            current = store.current_revision()
        except Exception as exc:
            reason = f"store unreachable: {type(exc).__name__}"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        head = store.head_revision()
        if current != head:
            reason = f"store at migration {current}, code expects {head} (run roadworthy migrate)"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "revision": current})

    @app.post("/v1/pipelines/{name}/run", tags=["pipelines"])
    async def run_pipeline(
        name: str,
        body: RunRequest,
        request: Request,
        x_roadworthy_deadline_s: float | None = _deadline_header(),
    ) -> JSONResponse:
        """Run one item through pipeline ``name`` and return its recorded result.

        200: done, degraded (with the reason) or escalated (with the review ticket);
        202: deferred (with when it runs again); 422: rejected input; 502: failed;
        429 (with Retry-After): failed on a budget or rate limit (the API key's included).
        """
        gateway = _gateway(request)
        key = gateway.auth.check(request, "run")
        pipeline = gateway.pipeline(name)
        asked = body.deadline_s or x_roadworthy_deadline_s
        seconds = gateway.deadline_s(asked)
        policy = gateway.key_policy(key)
        started = time.perf_counter()
        with (
            stack_context.bind(stack_context.deadline, gateway.deadline(seconds)),
            stack_context.bind(stack_context.api_key, policy),
        ):
            result = await pipeline.run(body.input)
        upstream_ms = (time.perf_counter() - started) * 1000
        payload = result.to_json()
        payload["trace_id"] = result.trace_id
        payload["deadline_s"] = seconds
        headers = {OVERHEAD_HEADER: _overhead(request, upstream_ms)}
        if result.trace_id:
            headers[TRACE_HEADER] = result.trace_id
        status = RUN_STATUS.get(result.status, 500)
        retry_after = _retry_after(result.status, result.error_code, policy)
        if retry_after is not None:
            # Failed on a limit that waiting cures (the key's budget or RPM, an upstream
            # rate limit): 429 as on the chat endpoint, so clients back off, not give up.
            status = 429
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return JSONResponse(payload, status_code=status, headers=headers)

    @app.post("/v1/pipelines/{name}/jobs", tags=["jobs"], status_code=202)
    async def enqueue_jobs(name: str, body: JobsRequest, request: Request) -> JSONResponse:
        """Queue one item (``input``) or many (``inputs``) for ``roadworthy worker``.

        202 with the batch id and one job id per item, in order. An idempotency key seen
        before returns the job it first made (which may belong to an earlier batch).
        """
        gateway = _gateway(request)
        gateway.auth.check(request, "run")
        gateway.pipeline(name)  # 404 for an unknown pipeline, before anything is queued
        if (body.inputs is None) == ("input" not in body.model_fields_set):
            raise ApiError(400, "give either input (one item) or inputs (many)", param="input")
        if body.inputs is not None:
            specs = [
                JobSpec(i.input, idempotency_key=i.idempotency_key, priority=body.priority)
                for i in body.inputs
            ]
        else:
            specs = [JobSpec(body.input, body.idempotency_key, body.priority)]
        batch_id, ids = gateway.jobs.enqueue_many(name, specs)
        return JSONResponse(
            {"batch_id": batch_id, "jobs": [{"id": job_id} for job_id in ids]},
            status_code=202,
        )

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        """A job's status, attempts and last error; once done, its item's result too."""
        gateway = _gateway(request)
        gateway.auth.check(request, "run")
        job = gateway.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}", code="job_not_found", param="job_id")
        payload = job.to_json()
        if job.item_id is not None:
            item = gateway.workspace.store.get_item(job.item_id)
            if item is not None:
                payload["result"] = {
                    "status": item["status"],
                    "output": item["output"],
                    "reason": item["reason"],
                    "error_code": item["error_code"],
                    "trace_id": item["trace_id"],
                }
        return JSONResponse(payload)

    @app.get("/v1/batches/{batch_id}", tags=["jobs"])
    async def get_batch(batch_id: str, request: Request) -> JSONResponse:
        """How many of a batch's jobs are queued, running, done and dead."""
        gateway = _gateway(request)
        gateway.auth.check(request, "run")
        counts = gateway.jobs.batch_counts(batch_id)
        total = sum(counts.values())
        if not total:
            raise ApiError(404, f"no batch {batch_id!r}", code="batch_not_found", param="batch_id")
        finished = counts["queued"] == 0 and counts["running"] == 0
        return JSONResponse(
            {"id": batch_id, "total": total, "counts": counts, "finished": finished}
        )

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(
        body: ChatRequest,
        request: Request,
        x_roadworthy_prompt: str | None = Header(None),
        x_roadworthy_deadline_s: float | None = _deadline_header(),
    ) -> Response:
        """OpenAI-compatible chat completion through a route's model stack.

        ``model`` names a route or a model of roadworthy.yaml. Every call is recorded in
        the ledger; the gateway's own added time is in ``x-roadworthy-overhead-ms``.
        """
        gateway = _gateway(request)
        key = gateway.auth.check(request, "run")
        seconds = gateway.deadline_s(x_roadworthy_deadline_s)
        if body.stream:
            stream = await open_stream(
                gateway.workspace,
                body,
                prompt_header=x_roadworthy_prompt,
                deadline=gateway.deadline(seconds),
                api_key=gateway.key_policy(key),
            )
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStreamResponse(
                sse_stream(stream_chunks(stream, body.model, include_usage)),
                stream,
                headers={
                    OVERHEAD_HEADER: _overhead(request, stream.upstream_ms),
                    TRACE_HEADER: stream.trace_id,
                },
            )
        result = await run_chat(
            gateway.workspace,
            body,
            prompt_header=x_roadworthy_prompt,
            deadline=gateway.deadline(seconds),
            api_key=gateway.key_policy(key),
        )
        headers = {
            OVERHEAD_HEADER: _overhead(request, result.upstream_ms),
            TRACE_HEADER: result.trace_id,
        }
        return JSONResponse(completion_body(result, body.model), headers=headers)

    return app


def _errors(app: FastAPI) -> None:
    """Every error in OpenAI's format, whatever raised it."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in ctype:
            return ApiError(
                415,
                f"send application/json, not {ctype or 'no content type'}",
                code="unsupported_media_type",
            ).response()
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "json_invalid":
            return ApiError(400, "request body is not valid JSON", code="invalid_json").response()
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return ApiError(400, message, param=where or None, code="invalid_request").response()

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc, _BodyTooLarge):
            return body_too_large(exc.max_bytes).response()
        kind = "not_found" if exc.status_code == 404 else "invalid_request"
        return ApiError(exc.status_code, str(exc.detail), code=kind).response()

    async def internal(_: Request, exc: Exception) -> Response:
        status = 500
        message = "internal error"
        if isinstance(exc, ConfigError):
            message = "server configuration error"
        return ApiError(status, message, "server_error", "internal_error").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def create_app(workspace: Workspace, settings: ServerConfig | None = None) -> App:
    """The service for ``workspace``; settings default to its ``server:`` section.

    Plain chat completions take the lean path (:mod:`.fast_chat`) in front of FastAPI;
    everything else, and every error of theirs, goes through the routes above.
    """
    settings = settings or workspace.project.config.server
    app = build_app()
    gateway = Gateway(workspace, settings)
    app.state.gateway = gateway
    app.lean = LeanChat(gateway)
    # call rows in group commits (store/writer.py); an answer waits until its row is
    # durable: committed, or appended to the call journal (store/journal.py)
    workspace.calls.group_commit = True
    workspace.calls.journal = settings.call_journal
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        # Everything loaded so far (FastAPI, pydantic, SQLAlchemy, the workspace) lives as
        # long as the process: out of the collector's sight, a full collection scans only
        # what requests allocate instead of pausing the loop for milliseconds (the p99).
        gc.collect()
        gc.freeze()
        yield
        # the upstream clients belong to the server's loop: close them before it ends
        await workspace.close_clients()
        workspace.calls.close_journal()

    app.router.lifespan_context = lifespan
    return app
