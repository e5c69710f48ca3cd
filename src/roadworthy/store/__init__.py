"""Persistent state: runs, items and the call ledger, on SQLite or PostgreSQL."""

from .store import CallRecord, RunSummary, Store, input_hash, new_trace_id
from .tables import ITEM_STATUSES, TERMINAL_STATUSES

__all__ = [
    "ITEM_STATUSES",
    "TERMINAL_STATUSES",
    "CallRecord",
    "RunSummary",
    "Store",
    "input_hash",
    "new_trace_id",
]
