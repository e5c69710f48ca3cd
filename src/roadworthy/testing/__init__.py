"""Test helpers shipped with roadworthy, for its own tests and for users'.

* :class:`~roadworthy.providers.ScriptedProvider`: a deterministic in-process double.
* :class:`FaultServer`: a real OpenAI/Anthropic-compatible HTTP server on loopback that
  fails on a schedule (429 with Retry-After, 5xx, hangs, resets, malformed bodies).
"""

from .faults import PRESETS, BatchOutcome, Fault, FaultServer, UpstreamLimits, load_schedule

__all__ = ["PRESETS", "BatchOutcome", "Fault", "FaultServer", "UpstreamLimits", "load_schedule"]
