"""Errors on the wire, in OpenAI's format, with the status an SDK expects.

Every error the service returns, native API included, is
``{"error": {"message", "type", "param", "code"}}``, so one client-side handler covers
both APIs. The mapping from the taxonomy is made here once; OpenAI's SDKs decide what to
retry from the status alone (429 and 5xx), so the status must say what the failure is:

* the client's fault (bad body, unknown model, prompt that does not render): 4xx;
* a refusal of ours that waiting cures (rate limit, budget): 429 with ``Retry-After``;
* the upstream model failed: 502; it timed out: 504; our breaker is open: 503.

An upstream 401 is *our* configuration problem, never the caller's, so it is a 502.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from .. import errors

__all__ = ["ApiError", "body_too_large", "from_exception"]


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def body_too_large(max_bytes: int) -> ApiError:
    """The 413 for a body over ``server.max_body_bytes``, declared or counted as it streams."""
    message = f"request body over {max_bytes} bytes (server.max_body_bytes)"
    return ApiError(413, message, code="body_too_large")


def from_exception(exc: errors.RoadworthyError) -> ApiError:
    """The wire error for a failure of the model stack (or of rendering)."""
    msg = str(exc)[:1000]
    if isinstance(exc, errors.RateLimited):
        retry = exc.retry_after if exc.retry_after is not None else 1.0
        return ApiError(429, msg, "rate_limit_error", "rate_limited", retry_after=retry)
    if isinstance(exc, errors.BudgetExceeded):
        return ApiError(429, msg, "insufficient_quota", "budget_exceeded", retry_after=60.0)
    if isinstance(exc, errors.CircuitOpen):
        return ApiError(503, msg, "service_unavailable", "circuit_open", retry_after=5.0)
    if isinstance(exc, errors.Timeout):
        return ApiError(504, msg, "upstream_error", "upstream_timeout")
    if isinstance(exc, errors.ContextTooLong):
        return ApiError(400, msg, code="context_length_exceeded", param="messages")
    if isinstance(exc, errors.ContentFiltered):
        return ApiError(400, msg, code="content_filter")
    if isinstance(exc, errors.AuthFailed | errors.NotFound):
        return ApiError(502, f"upstream refused the call: {msg}", "upstream_error", exc.error_class)
    if isinstance(exc, errors.BadRequest):
        return ApiError(400, msg, code="upstream_bad_request")
    if isinstance(exc, errors.ProviderError):
        return ApiError(502, msg, "upstream_error", exc.error_class)
    if isinstance(exc, errors.InputRejected):
        return ApiError(400, exc.message, code=exc.code, param=exc.field)
    if isinstance(exc, errors.OutputInvalid):
        return ApiError(502, msg, "upstream_error", "output_invalid")
    if isinstance(exc, errors.ConfigError):
        return ApiError(500, "server configuration error", "server_error", "config_error")
    return ApiError(500, msg, "server_error", exc.error_class)
