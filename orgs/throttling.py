"""Counting failures per client address: failed token authentications and failed sign-ins.

DRF's SimpleRateThrottle does the bookkeeping (rates such as "20/min" from
`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope]`, the cache, the client address honouring
`NUM_PROXIES`), but counts failures only, so a client that authenticates properly is never
slowed down, while a guesser is stopped before its next guess is even looked at.
"""

from __future__ import annotations

from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class FailureThrottle(SimpleRateThrottle):
    # Set by SimpleRateThrottle.__init__ from the rate; declared for the type checker.
    num_requests: int | None
    duration: int

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def get_rate(self) -> str | None:
        # Read at call time (SimpleRateThrottle reads a class attribute set at import), so a
        # changed setting takes effect without a restart.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(str(self.scope))
        return str(rate) if rate is not None else None

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def blocked_for(self, request: Any) -> float | None:
        """Seconds to wait if the client has failed too often lately, else None."""
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        if self.num_requests is not None and len(self.history) >= self.num_requests:
            return self.wait()
        return None

    def record_failure(self) -> None:
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)

    def first_block_in_window(self) -> bool:
        # Audit the throttling once per window, not every refused guess (that would let a
        # guesser flood the audit trail).
        return bool(self.cache.add(f"{self.key}:audited", True, self.duration))
