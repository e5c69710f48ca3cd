"""The exceptions roadworthy raises, in one tree.

Every provider translates its own failures into this taxonomy at one boundary, so that
everything above the providers (retries, fallbacks, breakers, the ledger) reasons about
*what kind* of failure happened, never about HTTP codes or SDK classes::

    RoadworthyError
    ├── ConfigError              a developer mistake: bad roadworthy.yaml, missing extra
    ├── InputRejected            an input failed validation (code, field)
    ├── OutputInvalid            the model answered, but not in the declared shape
    ├── Refused                  roadworthy itself declined to make the call
    │   ├── BudgetExceeded
    │   └── CircuitOpen
    └── ProviderError            the upstream model failed
        ├── RateLimited          429; carries retry_after seconds when the upstream said
        ├── Timeout              connect, first byte or total deadline passed
        ├── ProviderUnavailable  5xx, connection refused or reset
        ├── ContextTooLong       the request does not fit the model's window
        ├── ContentFiltered      the provider's safety system blocked the request/answer
        ├── AuthFailed           401/403
        ├── BadRequest           other 4xx; never worth retrying
        │   └── NotFound         404: unknown model or endpoint
        └── MalformedResponse    the body was not what the API promises

``retryable`` says whether trying the same request again can help; the model stack's
single retry loop reads it instead of keeping its own list.
"""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "BadRequest",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "ContentFiltered",
    "ContextTooLong",
    "InputRejected",
    "MalformedResponse",
    "NotFound",
    "OutputInvalid",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "Refused",
    "RoadworthyError",
    "Timeout",
]


class RoadworthyError(Exception):
    """Base of every exception roadworthy raises on purpose."""

    retryable: bool = False

    @property
    def error_class(self) -> str:
        """The stable name stored in the ledger's ``error_class`` column."""
        return type(self).__name__


class ConfigError(RoadworthyError):
    """A developer mistake, reported with where it is and how to fix it.

    ``problems`` holds one line per problem so the CLI can print them all at once
    instead of making users fix one error per run.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class InputRejected(RoadworthyError):
    """An input that cannot be processed; it is stored as a rejection, never dropped."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.field = field
        self.message = message
        super().__init__(f"{code}: {message}" + (f" (field {field!r})" if field else ""))


class OutputInvalid(RoadworthyError):
    """The model produced text that fails the pipeline's declared output contract."""

    def __init__(self, message: str, raw_text: str | None = None) -> None:
        self.raw_text = raw_text
        super().__init__(message)


class Refused(RoadworthyError):
    """roadworthy declined to call the model (budget, breaker)."""


class BudgetExceeded(Refused):
    """A hard budget limit would be crossed by this call's estimated cost."""


class CircuitOpen(Refused):
    """The model's breaker is open: recent calls failed, so it is skipped, not awaited."""


class ProviderError(RoadworthyError):
    """A failure of the upstream model, already classified."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status_code = status_code
        super().__init__(message)


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class Timeout(ProviderError):
    retryable = True


class ProviderUnavailable(ProviderError):
    retryable = True


class ContextTooLong(ProviderError):
    """The request does not fit the model's context window; only a larger model helps."""


class ContentFiltered(ProviderError):
    """The provider's safety system blocked it; retrying the same text will not help."""


class AuthFailed(ProviderError):
    """401/403: a key or permission problem, never worth a retry."""


class BadRequest(ProviderError):
    """Another 4xx: the request itself is wrong, so retrying cannot help."""


class NotFound(BadRequest):
    """404: an unknown model or endpoint, usually a typo in config."""


class MalformedResponse(ProviderError):
    retryable = True
