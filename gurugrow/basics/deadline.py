"""The request's answer deadline (BOT_ANSWER_SECONDS from its arrival): every upstream
call's timeout is the smaller of its setting and what is left of it, so every answer
comes in time even when every upstream is slow. Outside a request (workers, the doctor)
there is none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from gurugrow.basics.request_scope import ANSWER_BY as _ANSWER_BY

# Kept of the budget for what follows the last upstream call (the Redis writes and the
# answer itself).
ANSWER_RESERVE_SECONDS = 0.3


@contextmanager
def answer_deadline(seconds_left: float | None) -> Iterator[None]:
    """Upstream calls inside end within ``seconds_left`` (less the reserve)."""
    token = _ANSWER_BY.set(None if seconds_left is None else
                           time.monotonic() + seconds_left - ANSWER_RESERVE_SECONDS)
    try:
        yield
    finally:
        _ANSWER_BY.reset(token)


def time_left() -> float | None:
    """Seconds an upstream call may still take (None: no deadline)."""
    answer_by = _ANSWER_BY.get()
    return None if answer_by is None else answer_by - time.monotonic()
