"""Cheap upper-bound estimates of a request's tokens and cost, made before the call.

Budgets and rate limits reserve capacity *before* a call, when nobody knows the real usage
yet. The estimate must be cheap (it runs on every call) and should not undershoot, or
concurrent workers overspend: input is counted at one token per 3 characters (real BPE
tokenizers average nearer 4 on English) plus a few per message, and output at the request's
``max_tokens`` (or ``default_output_tokens`` when unset). Both are corrected from the
provider's reported usage afterwards.
"""

from __future__ import annotations

from decimal import Decimal

from ..providers.base import CompletionRequest, Usage
from ..providers.pricing import Price, call_cost

__all__ = ["DEFAULT_OUTPUT_TOKENS", "estimate_cost", "estimate_input_tokens", "estimate_tokens"]

DEFAULT_OUTPUT_TOKENS = 512
_CHARS_PER_TOKEN = 3
_PER_MESSAGE = 4


def estimate_input_tokens(request: CompletionRequest) -> int:
    chars = sum(len(m.content) for m in request.messages)
    return chars // _CHARS_PER_TOKEN + _PER_MESSAGE * len(request.messages) + 1


def _output_tokens(request: CompletionRequest, default_output_tokens: int) -> int:
    return request.max_tokens if request.max_tokens is not None else default_output_tokens


def estimate_tokens(
    request: CompletionRequest, default_output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> int:
    """Input plus maximum output tokens: what a TPM limiter reserves."""
    return estimate_input_tokens(request) + _output_tokens(request, default_output_tokens)


def estimate_cost(
    request: CompletionRequest,
    price: Price | None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    *,
    batch: bool = False,
) -> Decimal | None:
    """The most this call should cost (at the batch price with ``batch``), or None when
    the price is unknown."""
    usage = Usage(
        input_tokens=estimate_input_tokens(request),
        output_tokens=_output_tokens(request, default_output_tokens),
    )
    return call_cost(usage, price, batch=batch)
