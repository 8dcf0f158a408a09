"""The Redis server itself, as the app sees it: the doctor's probe and CONFIG reads and
the sandbox's reset. No flow needs it; the flows' Redis state is behind the other stores."""

from __future__ import annotations

from typing import Any

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import delete_matching


class RedisServer:
    """The Redis server the stores share: probe it, read its settings, clear our keys."""

    def __init__(self, client: Any, prefix: str) -> None:
        # Public for the tests (tests/helpers.py redis_of), which look at keys directly.
        self.client = client
        self._prefix = prefix

    def write_probe(self, key: str, value: str, ttl: int) -> bool:
        """PING, then SET ``key`` with a TTL and DEL it; False when the SET was not stored.
        Redis errors pass through: the doctor tells them apart."""
        self.client.ping()
        if not self.client.set(key, value, ex=ttl):
            return False
        self.client.delete(key)
        return True

    def config_get(self, name: str) -> Any:
        """CONFIG GET ``name``, as the client answers it (one answer per node on a cluster)."""
        return self.client.config_get(name)

    def clear_prefix(self) -> int:
        """Delete every key of this service (the sandbox's reset only); the number deleted."""
        return delete_matching(self.client, redis_keys.everything(self._prefix))
