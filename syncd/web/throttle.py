"""Failed sign-ins, counted per client address and for the admin account as a whole.

A client address that failed ``daemon.login_failures_per_address`` times within
``daemon.login_window`` seconds, or the account after ``daemon.login_failures_total``
failures from anywhere (there is one account: the admin token), is answered 429 with
Retry-After until its oldest failure leaves the window. Attempts refused that way are not
counted, so a waiting client gets back in on time. Counted in this process (each instance
throttles what it sees); the limits are small enough that a cluster of a few instances
still allows only a few dozen guesses per window against a token of 20+ characters.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

ACCOUNT = "admin"  # the one identity the page signs in


@dataclass
class LoginThrottle:
    """Sliding windows of failure times, per key (an address, or the account)."""

    per_address: int
    total: int
    window: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds to wait before `address` may try again; None when it may now."""
        waits = [
            self._wait(key, limit, now)
            for key, limit in ((f"addr:{address}", self.per_address), (ACCOUNT, self.total))
        ]
        longest = max((w for w in waits if w is not None), default=None)
        return None if longest is None else max(1, math.ceil(longest))

    def failed(self, address: str, now: float) -> None:
        """Count one failed sign-in from `address`."""
        for key in (f"addr:{address}", ACCOUNT):
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # addresses that stopped trying
            for key in [k for k in self._failures if self._wait(k, 1, now) is None]:
                del self._failures[key]

    def succeeded(self, address: str) -> None:
        """A right token from `address` clears its own failures (not the account's)."""
        self._failures.pop(f"addr:{address}", None)

    def _wait(self, key: str, limit: int, now: float) -> float | None:
        times = self._failures.get(key)
        if not times:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < limit:
            return None
        # Blocked until enough failures have left the window to be under the limit again.
        return times[len(times) - limit] + self.window - now
