"""The service's one wall clock (``Services.clock``), shared by the stores and the flows.

Tests move time by ``clock.set(now)`` in one place instead of patching every user.
"""

from __future__ import annotations

import time


class Clock:
    """Seconds since the epoch: ``time.time()``, or the moment set by ``set``."""

    def __init__(self) -> None:
        self._fixed: float | None = None

    def __call__(self) -> float:
        return time.time() if self._fixed is None else self._fixed

    def set(self, now: float | None) -> None:
        """Stop the clock at ``now`` (None: follow real time again)."""
        self._fixed = now
