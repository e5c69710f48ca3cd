"""Who is calling: the API key in ``Authorization: Bearer ...`` and what it may do.

Verified keys are remembered for a few seconds (``server.key_cache_s``), by a hash of the
token, so a hot client costs one database read per interval instead of one per request;
a revoked key stops working within that interval.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from starlette.requests import Request

from ..config.server import ServerConfig
from ..store.keys import ApiKey, KeyStore
from .errors import ApiError

__all__ = ["DEV_KEY", "Authenticator"]

DEV_KEY = ApiKey(
    id="dev",
    prefix="dev",
    name="dev mode (server.auth: none)",
    scopes=("admin",),
    created_at=datetime(2000, 1, 1, tzinfo=UTC),
)


class Authenticator:
    def __init__(self, keys: KeyStore, settings: ServerConfig) -> None:
        self.keys = keys
        self.settings = settings
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    @staticmethod
    def token(authorization: str | None, x_api_key: str | None) -> str | None:
        """The key a request carries: ``Authorization: Bearer``, else ``X-Api-Key``."""
        if authorization is None:
            return x_api_key
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def check(self, request: Request, scope: str) -> ApiKey:
        """The caller's key, or an :class:`ApiError` 401 (no/bad key) or 403 (scope)."""
        if self.settings.auth == "none":
            return DEV_KEY
        headers = request.headers
        return self.check_token(
            self.token(headers.get("authorization"), headers.get("x-api-key")), scope
        )

    def check_token(self, token: str | None, scope: str) -> ApiKey:
        """:meth:`check` on a token already taken from the headers (the lean chat path)."""
        if self.settings.auth == "none":
            return DEV_KEY
        if token is None:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' "
                "(create one with `roadworthy keys create --name ...`)",
                "authentication_error",
                "missing_api_key",
            )
        key = self._verify(token)
        if key is None:
            raise ApiError(401, "invalid API key", "authentication_error", "invalid_api_key")
        if not key.allows(scope):
            raise ApiError(
                403, f"this key lacks the {scope!r} scope", "permission_error", "insufficient_scope"
            )
        return key

    def _verify(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        clock = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and clock < cached[1]:
            return cached[0]
        key = self.keys.verify(token)
        if key is not None and self.settings.key_cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (key, clock + self.settings.key_cache_s)
        return key
