"""The ``server:`` section of ``roadworthy.yaml``: how ``roadworthy serve`` behaves.

Authentication is on unless the project says otherwise, in so many words: a service that
quietly accepts anonymous calls because a key was never configured is how budgets get
spent by strangers. ``auth: none`` is the explicit dev mode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServerConfig"]


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Literal["keys", "none"] = Field(
        "keys", description="keys: every /v1 call needs an API key; none: dev mode, no keys"
    )
    call_journal: bool = Field(
        True,
        description="on a SQLite store, answer once a call's row is appended to a journal "
        "file and copy rows into the calls table in bulk (within 50 ms); false: answer "
        "after the row's own commit",
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="larger request bodies are refused with 413"
    )
    default_deadline_s: float = Field(
        60.0, gt=0, description="deadline of a request that does not set its own"
    )
    max_deadline_s: float = Field(600.0, gt=0, description="the most a request may ask for")
    key_cache_s: float = Field(
        5.0, ge=0, description="how long a verified API key is trusted before a re-check"
    )
