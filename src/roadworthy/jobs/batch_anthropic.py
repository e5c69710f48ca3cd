"""Anthropic's Message Batches: ``{custom_id, params}`` requests sent inline, one JSON body.

``params`` is exactly what :class:`~roadworthy.providers.AnthropicProvider` sends in real
time. A batch is ``in_progress`` until ``ended``; then ``results_url`` serves JSONL with
one ``result`` per custom id: ``succeeded`` (a Messages response), ``errored`` (an API
error object), ``expired`` or ``canceled``. Documented limits: 100,000 requests and
256 MB per batch; custom ids match ``^[a-zA-Z0-9_-]{1,64}$``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MalformedResponse
from ..providers.anthropic import AnthropicProvider
from ..providers.base import CompletionRequest
from .batch import (
    BatchCanceled,
    BatchExpired,
    BatchLimits,
    BatchPoll,
    BatchSubmission,
    HttpBatchBackend,
    Outcome,
)

__all__ = ["ANTHROPIC_LIMITS", "AnthropicBatch"]

# Decimal megabytes: the headroom to 256 MiB covers the JSON envelope around the entries.
ANTHROPIC_LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1000 * 1000)
_PATH = "/v1/messages/batches"
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# HTTP status for each Anthropic error type, so batch errors classify like real-time ones.
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatch(HttpBatchBackend):
    """Batches through an Anthropic provider's ``/v1/messages/batches``."""

    limits = ANTHROPIC_LIMITS

    def __init__(self, provider: AnthropicProvider, *, limits: BatchLimits | None = None) -> None:
        super().__init__(provider, limits=limits)

    def encode(self, custom_id: str, request: CompletionRequest) -> bytes:
        if not _CUSTOM_ID.match(custom_id):
            raise ValueError(
                f"Anthropic batch custom ids are 1-64 letters, digits, '_' or '-': {custom_id!r}"
            )
        entry = {"custom_id": custom_id, "params": self.provider._payload(request)}
        # The trailing comma stands for the separator in the request body, so sizes add up.
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b","

    async def submit(
        self, entries: Sequence[tuple[str, bytes]], *, round: int, token: str | None = None
    ) -> BatchSubmission:
        body = b'{"requests":[' + b"".join(line for _, line in entries)[:-1] + b"]}"
        created = await self.send_json(
            "POST", _PATH, content=body, headers={"content-type": "application/json"}
        )
        # Message Batches keep no metadata: the token stays ours, and a create whose
        # answer was lost cannot be found again (BatchBackend.find answers None).
        return BatchSubmission.from_created(
            self.name, created, tuple(cid for cid, _ in entries), round, token=token
        )

    async def poll(self, submission: BatchSubmission) -> BatchPoll:
        data = await self.send_json("GET", f"{_PATH}/{submission.batch_id}")
        return BatchPoll.from_status(data, "processing_status", ("ended",))

    async def cancel(self, submission: BatchSubmission) -> None:
        await self.send("POST", f"{_PATH}/{submission.batch_id}/cancel")

    async def fetch(
        self,
        submission: BatchSubmission,
        poll: BatchPoll,
        requests: Mapping[str, CompletionRequest],
    ) -> dict[str, Outcome]:
        url = poll.raw.get("results_url")
        if not isinstance(url, str) or not url:
            url = f"{_PATH}/{submission.batch_id}/results"
        content = await self.send("GET", url)
        outcomes: dict[str, Outcome] = {}
        for raw_line in content.text.splitlines():
            if not raw_line.strip():
                continue
            try:
                record = json.loads(raw_line)
            except ValueError:
                continue  # a torn line: its custom id ends as "no result" upstream
            cid = record.get("custom_id") if isinstance(record, dict) else None
            if isinstance(cid, str) and cid in requests:
                outcomes[cid] = self._outcome(record.get("result"), requests[cid], submission)
        return outcomes

    def _outcome(
        self, result: Any, request: CompletionRequest, submission: BatchSubmission
    ) -> Outcome:
        kind = result.get("type") if isinstance(result, dict) else None
        if kind == "succeeded" and isinstance(result, dict):
            message = result.get("message")
            if isinstance(message, dict):
                return self.parse(message, request)
        elif kind == "errored" and isinstance(result, dict):
            error = result.get("error")
            # Documented shape {"type": "error", "error": {type, message}}; accept it flat too.
            if isinstance(error, dict) and isinstance(error.get("error"), dict):
                error = error["error"]
            if isinstance(error, dict):
                status = _STATUS_BY_TYPE.get(str(error.get("type")), 500)
                return self.http_error(status, {"error": error}, request.model)
        elif kind == "expired":
            return BatchExpired(
                f"{self.name} batch {submission.batch_id} expired before this request ran",
                provider=self.name,
                model=request.model,
            )
        elif kind == "canceled":
            return BatchCanceled(
                f"{self.name} batch {submission.batch_id} was canceled before this request ran",
                provider=self.name,
                model=request.model,
            )
        return MalformedResponse(
            f"{self.name} batch result of unknown shape: {json.dumps(result)[:200]}",
            provider=self.name,
            model=request.model,
        )
