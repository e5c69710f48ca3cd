"""OpenAI's Batch API: a JSONL file of chat requests, uploaded, run within 24 hours.

Each line is ``{custom_id, method: "POST", url: "/v1/chat/completions", body}`` where
``body`` is exactly what :class:`~roadworthy.providers.OpenAIProvider` sends in real time,
so a prompt behaves the same on both paths. Results come back in two files: the output
file (lines whose request got an HTTP answer, 200 or not) and the error file (failed
lines and, for an expired or cancelled batch, the requests that never ran, with
``error.code`` ``batch_expired``/``batch_cancelled``). Documented limits: 50,000
requests and 200 MB per input file, one model per file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadRequest, MalformedResponse, ProviderError
from ..providers.base import CompletionRequest
from ..providers.openai import OpenAIProvider
from .batch import (
    BatchCanceled,
    BatchExpired,
    BatchLimits,
    BatchPoll,
    BatchSubmission,
    HttpBatchBackend,
    Outcome,
)

__all__ = ["OPENAI_LIMITS", "OpenAIBatch"]

log = logging.getLogger(__name__)

# Decimal megabytes: the headroom to 200 MiB covers the multipart envelope of the upload.
OPENAI_LIMITS = BatchLimits(max_requests=50_000, max_bytes=200 * 1000 * 1000)
_ENDPOINT = "/v1/chat/completions"
_TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
# The metadata key that carries a batch's token (BatchSubmission.token), and how many
# pages of the newest batches are searched for a token.
TOKEN_KEY = "roadworthy_submission"
FIND_PAGES = 5


class OpenAIBatch(HttpBatchBackend):
    """Batches through an OpenAI-compatible provider's ``/files`` and ``/batches``."""

    limits = OPENAI_LIMITS
    one_model_per_batch = True

    def __init__(
        self,
        provider: OpenAIProvider,
        *,
        limits: BatchLimits | None = None,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(provider, limits=limits)
        self.completion_window = completion_window
        self.metadata = metadata

    def encode(self, custom_id: str, request: CompletionRequest) -> bytes:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": _ENDPOINT,
            "body": self.provider._payload(request),
        }
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def submit(
        self, entries: Sequence[tuple[str, bytes]], *, round: int, token: str | None = None
    ) -> BatchSubmission:
        data = b"".join(line for _, line in entries)
        uploaded = await self.send_json(
            "POST",
            "/files",
            files={"file": ("batch.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
        )
        file_id = uploaded.get("id")
        if not isinstance(file_id, str):
            raise MalformedResponse(f"{self.name} file upload returned no id", provider=self.name)
        body: dict[str, Any] = {
            "input_file_id": file_id,
            "endpoint": _ENDPOINT,
            "completion_window": self.completion_window,
        }
        metadata = dict(self.metadata or {})
        if token is not None:
            metadata[TOKEN_KEY] = token
        if metadata:
            body["metadata"] = metadata
        custom_ids = tuple(cid for cid, _ in entries)
        try:
            created = await self.send_json("POST", "/batches", json=body)
        except ProviderError as exc:
            # A timeout or a 5xx can come after the batch was created (and will be billed):
            # look for it before the caller sends these requests again. A refusal (4xx)
            # created nothing.
            if token is None or not exc.retryable:
                raise
            try:
                found = await self.find(token, custom_ids, round)
            except ProviderError:
                raise exc from None
            if found is None:
                raise
            log.warning("%s: batch create failed (%s) but batch %s exists; adopted it",
                        self.name, exc, found.batch_id)  # fmt: skip
            return found
        return BatchSubmission.from_created(self.name, created, custom_ids, round, file_id, token)

    async def find(
        self, token: str, custom_ids: tuple[str, ...], round: int
    ) -> BatchSubmission | None:
        """The batch whose metadata carries ``token``, among the newest ones.

        The list is newest first, and a batch looked for was created minutes ago at
        most, so a few pages are enough.
        """
        after: str | None = None
        for _ in range(FIND_PAGES):
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self.send_json("GET", "/batches", params=params)
            data = page.get("data")
            batches = [b for b in data if isinstance(b, dict)] if isinstance(data, list) else []
            for batch in batches:
                metadata = batch.get("metadata")
                if isinstance(metadata, dict) and metadata.get(TOKEN_KEY) == token:
                    file_id = batch.get("input_file_id")
                    return BatchSubmission.from_created(
                        self.name, batch, custom_ids, round,
                        file_id if isinstance(file_id, str) else None, token,
                    )  # fmt: skip
            if not page.get("has_more") or not batches:
                return None
            after = str(batches[-1].get("id"))
        return None

    async def poll(self, submission: BatchSubmission) -> BatchPoll:
        data = await self.send_json("GET", f"/batches/{submission.batch_id}")
        return BatchPoll.from_status(data, "status", _TERMINAL)

    async def cancel(self, submission: BatchSubmission) -> None:
        await self.send("POST", f"/batches/{submission.batch_id}/cancel")

    async def fetch(
        self,
        submission: BatchSubmission,
        poll: BatchPoll,
        requests: Mapping[str, CompletionRequest],
    ) -> dict[str, Outcome]:
        if poll.status == "failed":
            errors = poll.raw.get("errors") or {}
            detail = json.dumps(errors.get("data") if isinstance(errors, dict) else errors)
            error = BadRequest(
                f"{self.name} batch {submission.batch_id} failed validation: {detail[:500]}",
                provider=self.name,
            )
            return dict.fromkeys(submission.custom_ids, error)
        outcomes: dict[str, Outcome] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = poll.raw.get(key)
            if not isinstance(file_id, str) or not file_id:
                continue
            content = await self.send("GET", f"/files/{file_id}/content")
            for raw_line in content.text.splitlines():
                if not raw_line.strip():
                    continue
                try:
                    record = json.loads(raw_line)
                except ValueError:
                    continue  # a torn line: its custom id ends as "no result" upstream
                cid = record.get("custom_id") if isinstance(record, dict) else None
                if isinstance(cid, str) and cid in requests:
                    outcomes[cid] = self._outcome(record, requests[cid], submission)
        if poll.status in ("expired", "cancelled"):
            for cid in submission.custom_ids:
                outcomes.setdefault(cid, self._unrun(poll.status, submission, requests[cid]))
        return outcomes

    def _unrun(
        self, status: str, submission: BatchSubmission, request: CompletionRequest
    ) -> Outcome:
        cls = BatchExpired if status == "expired" else BatchCanceled
        return cls(
            f"{self.name} batch {submission.batch_id} {status} before this request ran",
            provider=self.name,
            model=request.model,
        )

    def _outcome(
        self, record: dict[str, Any], request: CompletionRequest, submission: BatchSubmission
    ) -> Outcome:
        response = record.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            status = int(response["status_code"])
            body = response.get("body")
            if status < 400 and isinstance(body, dict):
                return self.parse(body, request)
            return self.http_error(status, body, request.model)
        error = record.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            if code == "batch_expired":
                return self._unrun("expired", submission, request)
            if code == "batch_cancelled":
                return self._unrun("cancelled", submission, request)
            message = str(error.get("message") or code or "unknown error")
            return self.http_error(400, {"error": {"message": message}}, request.model)
        failure: ProviderError = MalformedResponse(
            f"{self.name} batch line for {record.get('custom_id')!r} has neither response nor error",
            provider=self.name,
            model=request.model,
        )
        return failure
