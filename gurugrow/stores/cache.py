"""The JSON cache in Redis, with single-flight: one caller loads a missing value
while the others wait for it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from gurugrow import metrics
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import WriteBatch, redis_guard, registered_script
from gurugrow.stores.scripts import load_script


def cached_json(client: redis.Redis, key: str, ttl: int, load: Callable[[], Any],
                cache: str | None = None, *, wait_seconds: float = 5.0,
                poll: float = 0.05) -> Any:
    """``load()``'s value, kept in Redis as JSON for ``ttl`` seconds (0: no cache)."""
    # Lookups of a named ``cache`` count in gurugrow_cache_lookups_total.
    #
    # One caller loads a missing value while the others wait up to ``wait_seconds`` for it: a
    # broadcast's first wave asks RetailCRM once, not once per caller.
    if ttl <= 0:
        return load()
    with redis_guard():
        raw = client.get(key)
    if cache is not None:
        metrics.CACHE_LOOKUPS.labels(cache, "miss" if raw is None else "hit").inc()
    if raw is not None:
        return json.loads(raw)
    marker, owner = redis_keys.loading_marker(key), uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        with redis_guard():  # the claim and a second look, in one round trip
            pipe = client.pipeline(transaction=False)
            pipe.set(marker, owner, nx=True, ex=max(int(wait_seconds), 1))
            pipe.get(key)
            claimed, raw = pipe.execute()
        if raw is not None:  # stored between our first look and the claim
            if claimed:
                with redis_guard():
                    registered_script(client, _RELEASE_SCRIPT)(keys=[marker], args=[owner])
            return json.loads(raw)
        if claimed or time.monotonic() >= deadline:
            break
        time.sleep(poll)
        with redis_guard():
            raw = client.get(key)
        if raw is not None:
            return json.loads(raw)
    stored = False
    try:
        value = load()
        text = json.dumps(value, ensure_ascii=False)
        # The value and (when ours) the marker's release in one round trip.
        batch = WriteBatch(client)
        batch.commands(lambda pipe: pipe.set(key, text, ex=ttl))
        if claimed:
            batch.script(registered_script(client, _RELEASE_SCRIPT), [marker], [owner])
        batch.send()
        stored = True
    finally:
        if claimed and not stored:  # a failed load frees the marker for the next one
            with redis_guard():
                registered_script(client, _RELEASE_SCRIPT)(keys=[marker], args=[owner])
    return value


# Deletes a marker (KEYS[1]) only while it is still the caller's (ARGV[1]).
_RELEASE_SCRIPT = load_script("release_if_holder")
