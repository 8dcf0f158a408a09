"""Redis helpers besides OTP: the error guard, a JSON cache, and run-once results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

# A cluster client also raises RedisClusterException, which is not a RedisError.
REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


class StorageUnavailable(Exception):
    """Redis cannot be reached or answered with an error."""


class redis_guard:  # noqa: N801 - used as a context manager, reads like a statement
    """Turns redis-py errors into ``StorageUnavailable`` (``raise ... from``)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, REDIS_ERRORS):
            raise StorageUnavailable(type(exc).__name__) from exc
        return False


def cached_json(client: redis.Redis, key: str, ttl: int, load: Callable[[], Any]) -> Any:
    """``load()``'s value, kept in Redis as JSON for ``ttl`` seconds (0: no cache)."""
    if ttl <= 0:
        return load()
    with redis_guard():
        raw = client.get(key)
    if raw is not None:
        return json.loads(raw)
    value = load()
    with redis_guard():
        client.set(key, json.dumps(value, ensure_ascii=False), ex=ttl)
    return value


class InProgress(Exception):
    """The same operation is still running in another request."""


def run_once(client: redis.Redis, key: str, window: int, operation: Callable[[], dict],
             *, keep: Callable[[dict], bool] = lambda result: True,
             wait_seconds: float = 10.0, poll: float = 0.1) -> dict:
    """Run ``operation`` once per ``key`` within ``window`` seconds; repeats get its result.

    A concurrent repeat waits up to ``wait_seconds`` for the first one's result, then
    raises InProgress. A result that ``keep`` rejects is not remembered, so the next call
    runs the operation again. If the operation raises, the key is freed.
    """
    with redis_guard():
        claimed = client.set(key, "", nx=True, ex=window)
    if not claimed:
        deadline = time.monotonic() + wait_seconds
        while True:
            with redis_guard():
                raw = client.get(key)
            if raw is None:  # the first attempt gave up: this one may run
                return run_once(client, key, window, operation, keep=keep,
                                wait_seconds=wait_seconds, poll=poll)
            if raw:
                return json.loads(raw)
            if time.monotonic() >= deadline:
                raise InProgress(key)
            time.sleep(poll)
    try:
        result = operation()
    except BaseException:
        with redis_guard():
            client.delete(key)
        raise
    with redis_guard():
        if keep(result):
            client.set(key, json.dumps(result, ensure_ascii=False), ex=window)
        else:
            client.delete(key)
    return result
