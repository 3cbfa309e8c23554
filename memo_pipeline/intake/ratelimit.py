"""Per-org rate limits: a token bucket per org, in the memory of one service process.

Each replica of the service limits on its own, so N replicas admit up to N times the rate; put a
shared limiter in front (a gateway) when that matters.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: int
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; returns 0 when admitted, else seconds until it would be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return math.inf
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """Buckets by org; ``policy(org)`` gives (rate, burst) and is asked again after a change."""

    def __init__(
        self, policy: Callable[[str], tuple[float, int]], clock: Callable[[], float] | None = None
    ) -> None:
        self._policy = policy
        self._clock = clock or time.monotonic
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, org: str, cost: float = 1.0) -> float:
        """0 when the request may go ahead, else the seconds to wait (Retry-After)."""
        rate, burst = self._policy(org)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(org)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = TokenBucket(rate, burst, float(burst), now)
                self._buckets[org] = bucket
            return bucket.take(now, cost)
