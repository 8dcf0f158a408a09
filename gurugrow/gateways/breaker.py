"""A circuit breaker for RetailCRM: a hanging or failing CRM fails fast.

After ``failures`` consecutive timeouts, connection errors or 5xx answers (other than
503, which is RetailCRM's over-quota answer and slows the shared bucket instead), calls
fail at once for ``cooloff_seconds``; then one probe goes through, and its outcome
closes or re-opens the breaker.

Per process, deliberately: the check is a lock and a comparison, with no Redis round
trip on every call; each process learns of a dead CRM after ``failures`` calls of its
own, so a dead CRM costs each worker at most that many parked threads per cool-off.
A shared breaker would save those few calls but put Redis in front of every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gurugrow import metrics

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Closed → open (after consecutive failures) → one probe → closed or open again."""

    def __init__(self, *, failures: int, cooloff_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooloff_seconds = cooloff_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return CLOSED
            if self._monotonic() - self._opened_at >= self.cooloff_seconds:
                return HALF_OPEN
            return OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only the one probe may."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._monotonic() - self._opened_at < self.cooloff_seconds:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        """The CRM answered (any answer that is not a failure)."""
        with self._lock:
            was_open = self._opened_at is not None
            self._failures, self._opened_at, self._probing = 0, None, False
        if was_open:
            metrics.CRM_BREAKER_OPEN.set(0)

    def failed(self) -> None:
        """A timeout, connection error or 5xx."""
        with self._lock:
            self._failures += 1
            opens = self._probing or (
                self._opened_at is None and self._failures >= self.threshold)
            if opens:
                self._opened_at, self._probing = self._monotonic(), False
        if opens:
            metrics.CRM_BREAKER_OPEN.set(1)

    def abandoned(self) -> None:
        """An allowed call did not go out after all (e.g. no slot): free the probe."""
        with self._lock:
            self._probing = False
