"""The human review queue: escalated items, claimed under a lease, resolved by people."""

from .queue import Decision, QueueStats, ReviewItem, ReviewQueue

__all__ = ["Decision", "QueueStats", "ReviewItem", "ReviewQueue"]
