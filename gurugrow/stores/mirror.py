"""The RetailCRM mirror in Redis: what `/auth/status` and `/orders` read, kept current
by the mirror poller (``flows/mirror_sync.py``) and by this service's own writes.

- a binding per messenger account: a hash, customer id → ``{"maskedPhone", "interacted"}``
  for every customer holding the account id (one: bound; two or more: the conflict case);
- a record per bound customer: its messenger accounts, so a change can drop the old ones;
- a bound customer's newest orders: a hash, order id → the raw RetailCRM order (the order
  view converts it like a live one); the field ``_`` says the list is complete;
- the sync state: history positions (``sinceId`` per kind), the last sync's time, counts;
  and the poller's lease. Both carry the ``{mirror}`` tag: one script checks the lease and
  writes the state.

Reads answer None unless the last sync is within ``max_lag_seconds``: the caller then
takes the live path. Every key has a TTL (``ENTRY_TTL_SECONDS``) far longer than the sync
period; the poller reloads everything well within it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import redis_guard
from gurugrow.stores.once import RENEW_LEASE_SCRIPT
from gurugrow.stores.scripts import load_script

# The poller reloads everything this often, so no entry outlives its TTL unrewritten.
FULL_RELOAD_SECONDS = 86400
ENTRY_TTL_SECONDS = 3 * FULL_RELOAD_SECONDS
_LOADED = "_"  # the field of an order hash that marks the list complete
CUSTOMERS, ORDERS = "customers", "orders"
_STATE_SCRIPT = load_script("mirror_state")
Identity = tuple[str, str]  # (channel, messenger account id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MirrorStore:
    """The mirror's keys; reads for the flows, writes for the poller and write-through."""

    def __init__(self, client: Any, prefix: str, *, max_lag_seconds: float,
                 clock: Callable[[], float]) -> None:
        self._client = client
        self._prefix = prefix
        self._max_lag = max_lag_seconds
        self._clock = clock
        self._state_script = client.register_script(_STATE_SCRIPT)
        self._renew_script = client.register_script(RENEW_LEASE_SCRIPT)
        self._release_script = client.register_script(load_script("release_if_holder"))
        self.state_key = redis_keys.mirror_state(prefix)
        self.lease_key = redis_keys.mirror_lease(prefix)

    # -- reads ------------------------------------------------------------------------
    def _current(self, synced_at: Any) -> bool:
        if synced_at is None:
            return False
        try:
            age = self._clock() - float(_text(synced_at))
        except ValueError:
            return False
        return age <= self._max_lag

    def _current_hash(self, key: str) -> dict[bytes, bytes] | None:
        """The hash at ``key`` if the mirror is current (the check rides in the same
        round trip), else None."""
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self.state_key, "synced_at")
            pipe.hgetall(key)
            synced_at, entries = pipe.execute()
        return entries if self._current(synced_at) else None

    def binding(self, channel: str, account_id: str) -> dict[str, dict[str, Any]] | None:
        """Customer id → entry for every customer holding the account (empty: bound to
        nobody); None while the mirror is not current."""
        entries = self._current_hash(redis_keys.mirror_binding(self._prefix, channel,
                                                               account_id))
        if entries is None:
            return None
        return {_text(k): json.loads(v) for k, v in entries.items()}

    def orders(self, customer_id: str) -> list[dict[str, Any]] | None:
        """The customer's mirrored orders (raw, any order); None while the mirror is not
        current or does not hold the customer's complete list."""
        entries = self._current_hash(redis_keys.mirror_orders(self._prefix, customer_id))
        if entries is None or _LOADED.encode() not in entries:
            return None
        return [json.loads(v) for k, v in entries.items() if k != _LOADED.encode()]

    def state(self) -> dict[str, str]:
        """The sync state as text (empty: never loaded, or Redis was flushed)."""
        with redis_guard():
            raw = self._client.hgetall(self.state_key)
        return {_text(k): _text(v) for k, v in raw.items()}

    def lag_seconds(self, state: dict[str, str] | None = None) -> float | None:
        """Seconds since the last sync (None: never synced)."""
        state = self.state() if state is None else state
        if "synced_at" not in state:
            return None
        return max(self._clock() - float(state["synced_at"]), 0.0)

    # -- the poller's lease and state --------------------------------------------------
    def take_lease(self, token: str, seconds: float) -> bool:
        """Hold the poller's lease (or keep holding it); False when another holds it."""
        ms = max(int(seconds * 1000), 1)
        with redis_guard():
            if self._client.set(self.lease_key, token, nx=True, px=ms):
                return True
            return bool(self._renew_script(keys=[self.lease_key], args=[token, ms]))

    def release_lease(self, token: str) -> None:
        """Give the lease up if still held (a successor need not wait for it to lapse)."""
        with redis_guard():  # one step: a lease lapsed meanwhile may be a successor's
            self._release_script(keys=[self.lease_key], args=[token])

    def write_state(self, token: str, fields: dict[str, Any], *, add: bool = False) -> bool:
        """Set (or, with ``add``, add to) state fields, only while ``token`` holds the
        lease; False (nothing written) when it does not."""
        args: list[Any] = [token, ENTRY_TTL_SECONDS, "add" if add else "set"]
        for name, value in fields.items():
            args += [name, value]
        with redis_guard():
            return bool(self._state_script(keys=[self.state_key, self.lease_key], args=args))

    # -- entities ---------------------------------------------------------------------
    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """The mirrored record of a bound customer, or None."""
        with redis_guard():
            raw = self._client.get(redis_keys.mirror_customer(self._prefix, customer_id))
        return json.loads(raw) if raw else None

    def put_customer(self, customer_id: str, identities: Iterable[Identity],
                     masked_phone: str | None, interacted: bool) -> bool:
        """File the customer under exactly ``identities`` (none: unbound, its keys go);
        True when it is bound and its orders are not mirrored yet."""
        customer_id = str(customer_id)
        wanted = sorted({(str(c), str(a)) for c, a in identities})
        old = self.customer(customer_id)
        previous = {(c, a) for c, a in (old or {}).get("identities", [])}
        entry = json.dumps({"maskedPhone": masked_phone, "interacted": bool(interacted)},
                           ensure_ascii=False)
        ttl = ENTRY_TTL_SECONDS
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            for channel, account in previous - set(wanted):
                pipe.hdel(redis_keys.mirror_binding(self._prefix, channel, account),
                          customer_id)
            for channel, account in wanted:
                key = redis_keys.mirror_binding(self._prefix, channel, account)
                pipe.hset(key, customer_id, entry)
                pipe.expire(key, ttl)
            record_key = redis_keys.mirror_customer(self._prefix, customer_id)
            orders_key = redis_keys.mirror_orders(self._prefix, customer_id)
            if wanted:
                record = {"identities": wanted, "maskedPhone": masked_phone,
                          "interacted": bool(interacted)}
                pipe.set(record_key, json.dumps(record, ensure_ascii=False), ex=ttl)
                pipe.hexists(orders_key, _LOADED)
            else:
                pipe.delete(record_key, orders_key)
            answers = pipe.execute()
        return bool(wanted) and not answers[-1]

    def add_identity(self, customer_id: str, identity: Identity, masked_phone: str | None,
                     interacted: bool) -> None:
        """This service bound ``identity`` to the customer (write-through): it replaces
        the customer's earlier account on that channel, as the CRM field does."""
        old = self.customer(str(customer_id)) or {}
        kept = [(c, a) for c, a in old.get("identities", []) if c != identity[0]]
        self.put_customer(str(customer_id), [*kept, identity], masked_phone, interacted)

    def remove_identity(self, customer_id: str, identity: Identity) -> None:
        """This service unlinked ``identity`` from the customer (write-through)."""
        old = self.customer(str(customer_id)) or {}
        kept = [(c, a) for c, a in old.get("identities", []) if (c, a) != tuple(identity)]
        with redis_guard():
            self._client.hdel(redis_keys.mirror_binding(self._prefix, *identity),
                              str(customer_id))
        if old:
            self.put_customer(str(customer_id), kept, old.get("maskedPhone"),
                              bool(old.get("interacted")))

    def set_interacted(self, customer_id: str) -> None:
        """The customer's chatbot_interacted flag was just written (write-through)."""
        old = self.customer(str(customer_id))
        if old and old.get("identities"):
            self.put_customer(str(customer_id), [tuple(i) for i in old["identities"]],
                              old.get("maskedPhone"), True)

    def drop_customer(self, customer_id: str) -> None:
        """The customer is gone from RetailCRM (deleted or merged): its bindings too."""
        self.put_customer(str(customer_id), [], None, False)

    def put_orders(self, customer_id: str, orders: list[dict[str, Any]]) -> None:
        """Replace the customer's mirrored orders with ``orders`` (complete)."""
        key = redis_keys.mirror_orders(self._prefix, str(customer_id))
        owners = redis_keys.mirror_order_owners(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(key)
            pipe.hset(key, mapping={_LOADED: "1", **{
                str(o["id"]): json.dumps(o, ensure_ascii=False) for o in orders}})
            pipe.expire(key, ENTRY_TTL_SECONDS)
            if orders:
                pipe.hset(owners, mapping={str(o["id"]): str(customer_id) for o in orders})
                pipe.expire(owners, ENTRY_TTL_SECONDS)
            pipe.execute()

    def put_order(self, order: dict[str, Any], keep: int) -> str:
        """File one re-read order under its customer (and no longer under another),
        keeping the customer's ``keep`` newest. Answers ``"filed"``, ``"not_bound"`` (its
        customer is not mirrored: nothing kept) or ``"incomplete"`` (bound, but its list
        is not complete: the caller loads it whole)."""
        order_id = str(order["id"])
        owner = str((order.get("customer") or {}).get("id") or "")
        self._unfile(order_id, except_owner=owner)
        if not owner or self.customer(owner) is None:
            return "not_bound"
        key = redis_keys.mirror_orders(self._prefix, owner)
        owners = redis_keys.mirror_order_owners(self._prefix)
        with redis_guard():
            if not self._client.hexists(key, _LOADED):
                return "incomplete"
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, order_id, json.dumps(order, ensure_ascii=False))
            pipe.expire(key, ENTRY_TTL_SECONDS)
            pipe.hset(owners, order_id, owner)
            pipe.expire(owners, ENTRY_TTL_SECONDS)
            pipe.hgetall(key)
            entries = pipe.execute()[-1]
        kept = [json.loads(v) for k, v in entries.items() if k != _LOADED.encode()]
        if len(kept) > keep:
            kept.sort(key=lambda o: str(o.get("createdAt") or ""), reverse=True)
            extra = [str(o["id"]) for o in kept[keep:]]
            with redis_guard():
                self._client.hdel(key, *extra)
                self._client.hdel(owners, *extra)
        return "filed"

    def drop_order(self, order_id: str) -> None:
        """The order is gone from RetailCRM (or its customer is not mirrored)."""
        self._unfile(str(order_id), except_owner=None)

    def _unfile(self, order_id: str, except_owner: str | None) -> None:
        owners = redis_keys.mirror_order_owners(self._prefix)
        with redis_guard():
            was = self._client.hget(owners, order_id)
            if was is None or _text(was) == except_owner:
                return
            self._client.hdel(redis_keys.mirror_orders(self._prefix, _text(was)), order_id)
            self._client.hdel(owners, order_id)

    def forget_orders(self, customer_id: str) -> None:
        """This service created an order for the customer (write-through): its list is no
        longer complete, so reads go live until the poller has the new order."""
        with redis_guard():
            self._client.hdel(redis_keys.mirror_orders(self._prefix, str(customer_id)),
                              _LOADED)
