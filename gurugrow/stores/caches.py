"""The flows' short-lived Redis state that is not an OTP, a limit or a delivery: cached
RetailCRM answers, a contact binding's token and the run-once records, behind methods so
that no flow builds a key or holds the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.cache import cached_json
from gurugrow.stores.client import (
    PipelineRider,
    Riders,
    WriteBatch,
    redis_guard,
    run_riders,
    written,
)
from gurugrow.stores.once import ClaimAhead, Lease, run_once


class ChannelFieldRead:
    """One GET riding on another step's round trip (``stores.client.PipelineRider``)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.answered = False
        self.value: Any = None

    def queue(self, pipe: Any) -> None:
        pipe.get(self.key)

    def receive(self, answer: Any) -> None:
        if not isinstance(answer, Exception):  # else it is read on its own
            self.answered, self.value = True, answer

    def forget(self) -> None:
        """The answer is out of date: the next look reads the record on its own."""
        self.answered, self.value = False, None


class FlowCaches:
    """Cached RetailCRM answers and the run-once records, by what they are about."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def batch(self) -> WriteBatch:
        """A new write batch on this Redis (its owner sends it)."""
        return WriteBatch(self._client)

    def written(self, batch: WriteBatch | None) -> Any:
        """``batch``, or a batch of one's own sent when the block ends without an error."""
        return written(self._client, batch)

    def binding(self, channel: str, account_id: str) -> bytes | str | None:
        """The cached binding entry's JSON text (None: not cached)."""
        with redis_guard():
            raw: bytes | str | None = self._client.get(
                redis_keys.binding_cache(self._prefix, channel, account_id))
        return raw

    def put_binding(self, channel: str, account_id: str, text: str, ttl: int,
                    batch: WriteBatch, on_failure: Callable[[Any], None]) -> None:
        """Queue the binding entry's JSON ``text`` on ``batch``, kept ``ttl`` seconds."""
        key = redis_keys.binding_cache(self._prefix, channel, account_id)
        batch.commands(lambda pipe: pipe.set(key, text, ex=ttl), on_failure=on_failure)

    def put_contact_token(self, channel: str, account_id: str, token: str, ttl: int,
                          batch: WriteBatch) -> None:
        """Queue the account's contact binding token (for unlink) on ``batch``."""
        key = redis_keys.contact_token(self._prefix, channel, account_id)
        batch.commands(lambda pipe: pipe.set(key, token, ex=ttl))

    def forget_binding(self, channel: str, account_id: str,
                       then: Callable[[str | None], None],
                       batch: WriteBatch | None = None) -> None:
        """Drop the cached binding and take the contact token, in one round trip (with
        ``batch``, when it is sent); ``then`` is handed the token (None: there was none)."""
        cached = redis_keys.binding_cache(self._prefix, channel, account_id)
        token_key = redis_keys.contact_token(self._prefix, channel, account_id)

        def queue(pipe: Any) -> None:
            pipe.delete(cached)
            pipe.getdel(token_key)

        def taken(answers: list[Any]) -> None:
            token = answers[1]
            then(token.decode() if isinstance(token, bytes) else token)

        with written(self._client, batch) as writes:
            writes.commands(queue, then=taken)

    def channel_field_read(self, channel: str, customer_id: str) -> ChannelFieldRead:
        """A read of ``channel_field_written`` to ride on another step's round trip."""
        return ChannelFieldRead(redis_keys.channel_field_written(self._prefix, channel,
                                                                 customer_id))

    def channel_field_written(self, channel: str, customer_id: str,
                              read: ChannelFieldRead | None = None,
                              ride: PipelineRider | None = None
                              ) -> tuple[str, float] | None:
        """The account this service last wrote into the customer's channel field, and when."""
        # ``read``: the record as a ride already read it (read now when it got no answer,
        # with ``ride`` in the same round trip).
        if read is not None and not read.answered and ride is not None:
            run_riders(self._client, Riders(read, ride))
        if read is not None and read.answered:
            raw = read.value
        else:
            with redis_guard():
                raw = self._client.get(redis_keys.channel_field_written(
                    self._prefix, channel, customer_id))
        text = raw.decode() if isinstance(raw, bytes) else raw
        at, _, account = (text or "").partition(" ")
        try:
            return account, float(at)
        except ValueError:  # it wrote none lately, or the record is unreadable
            return None

    def put_channel_field_written(self, channel: str, customer_id: str, account_id: str,
                                  at: float, ttl: int, batch: WriteBatch | None = None,
                                  on_failure: Callable[[Any], None] | None = None) -> None:
        """Record that the customer's channel field was set to ``account_id`` at ``at``."""
        key = redis_keys.channel_field_written(self._prefix, channel, customer_id)
        with written(self._client, batch) as writes:
            writes.commands(lambda pipe: pipe.set(key, f"{at:.3f} {account_id}", ex=ttl),
                            on_failure=on_failure)

    def orders(self, customer_id: str, ttl: int, load: Callable[[], Any]) -> Any:
        """The customer's cached order list, else ``load()``'s (then cached)."""
        return cached_json(self._client, redis_keys.orders_cache(self._prefix, customer_id),
                           ttl, load, "orders")

    def forget_orders(self, customer_id: str, batch: WriteBatch | None = None) -> None:
        """Drop the customer's cached order list (with ``batch``, when it is sent)."""
        key = redis_keys.orders_cache(self._prefix, customer_id)
        with written(self._client, batch) as writes:
            writes.commands(lambda pipe: pipe.delete(key))

    def reference(self, name: str, ttl: int, load: Callable[[], Any],
                  cache: str | None = None) -> Any:
        """A cached RetailCRM reference (statuses, groups), else ``load()``'s."""
        return cached_json(self._client, redis_keys.reference(self._prefix, name), ttl, load,
                           cache=cache)

    def bundle_offer(self, article: str, ttl: int, load: Callable[[], Any]) -> Any:
        """A bundle article's cached catalog entry, else ``load()``'s."""
        return cached_json(self._client, redis_keys.bundle_offer(self._prefix, article), ttl,
                           load)

    def claim_ahead(self, kind: str, token: str, window: int,
                    lease_seconds: float) -> ClaimAhead:
        """The first claim of ``run_once`` on ``kind`` and ``token``, to ride another
        step's round trip (``run_once(..., ahead=)``)."""
        return ClaimAhead(self._client, redis_keys.operation_once(self._prefix, kind, token),
                          redis_keys.operation_lease(self._prefix, kind, token), window,
                          lease_seconds)

    def run_once(self, kind: str, token: str, window: int,
                 operation: Callable[[Lease], dict], **options: Any) -> dict:
        """``stores.once.run_once`` on the record of ``kind`` and ``token``."""
        return run_once(self._client, redis_keys.operation_once(self._prefix, kind, token),
                        redis_keys.operation_lease(self._prefix, kind, token), window,
                        operation, **options)

    def forget_once(self, kind: str, token: str) -> None:
        """Drop the kept answer of ``kind`` and ``token``: the next request runs it again."""
        with redis_guard():
            self._client.delete(redis_keys.operation_once(self._prefix, kind, token))

    def evicted_keys(self) -> int | None:
        """Redis's ``evicted_keys`` (summed over a cluster's nodes); None when unreadable."""
        try:
            info = self._client.info("stats")
        except Exception:  # noqa: BLE001 - best effort: a Redis that will not tell is not checked
            return None
        if isinstance(info, dict) and "evicted_keys" in info:
            return int(info["evicted_keys"])
        if isinstance(info, dict):  # a cluster: node → its stats
            counts = [int(v["evicted_keys"]) for v in info.values()
                      if isinstance(v, dict) and "evicted_keys" in v]
            return sum(counts) if counts else None
        return None
