"""Two independent upstream reads of one request at once: the bot waits for the slower
of the two, not for their sum (RetailCRM answers each in tens of milliseconds)."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")

# One request hands at most one call to the pool; a worker serves GUNICORN_THREADS
# requests at once, and a full pool only makes the second call wait its turn.
_POOL_THREADS = 16
_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None
_on_pool = threading.local()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        # A pool made before a fork has no threads in the child: each process its own.
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(_POOL_THREADS,
                                                     thread_name_prefix="parallel-read",
                                                     initializer=_mark_pool_thread))
        return _pool[1]


def _mark_pool_thread() -> None:
    _on_pool.active = True


def both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``first()`` here and ``second()`` on a pool thread, at once, in this request's
    context (deadline, CRM slots, request id); their results. An error of either is
    raised once both have ended, so nothing of the request runs after it answered."""
    if getattr(_on_pool, "active", False):  # nested: a pool thread never waits on the pool
        return first(), second()
    future = _executor().submit(contextvars.copy_context().run, second)
    try:
        result = first()
    except BaseException:
        wait([future])
        raise
    return result, future.result()
