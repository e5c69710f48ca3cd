"""Keep API keys out of logs, ledger rows and error messages.

Keys are read from the environment at the last moment and registered here; every string
that leaves roadworthy for a log, a record or a terminal passes through :func:`redact`.
Registering values (not patterns) catches keys whatever their format, including keys
echoed back inside an upstream error body.
"""

from __future__ import annotations

import os
import threading

__all__ = ["read_secret", "redact", "register_secret"]

_lock = threading.Lock()
_secrets: set[str] = set()
_MASK = "[REDACTED]"


def register_secret(value: str) -> None:
    """Remember ``value`` so later :func:`redact` calls hide it."""
    if len(value) >= 6:  # shorter values would mask ordinary words
        with _lock:
            _secrets.add(value)


def read_secret(env_var: str) -> str | None:
    """Read a secret from the environment and register it for redaction."""
    value = os.environ.get(env_var)
    if value:
        register_secret(value)
    return value or None


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by a mask."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text
