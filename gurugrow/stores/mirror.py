"""The RetailCRM mirror in Redis: what `/auth/status` and `/orders` read, kept current
by the mirror poller (``flows/mirror_sync.py``) and by this service's own writes.

- a binding per messenger account: a hash, customer id → ``{"maskedPhone", "interacted"}``
  for every customer holding the account id (one: bound; two or more: the conflict case);
- a record per bound customer: its messenger accounts, so a change can drop the old ones;
- a bound customer's newest orders: one value, the list of the order fields the order
  view reads (``flows/mirror_orders.py``: it converts like a live one), compact JSON
  compressed; present means complete;
- the sync state: history positions (``sinceId`` per kind), the last sync's time, counts;
  and the poller's lease. Both carry the ``{mirror}`` tag: one script checks the lease and
  writes the state.

Reads answer None unless the last sync is within ``max_lag_seconds``: the caller then
takes the live path. Absence is not an answer: a binding hash or order list missing from
Redis (evicted, deleted, never seen) also answers None, and schedules the entity's re-read
by the poller (``mirror:{mirror}:recheck``). "Known not bound" is a binding hash holding
only the field ``_`` (written when an account's last customer leaves it, or when the
poller found nobody holding it). Every key has a TTL (``ENTRY_TTL_SECONDS``); a write
that changes nothing does not refresh it, only RetailCRM confirming the entity does (the
rolling reconcile re-reads every bound customer within MIRROR_RECONCILE_SECONDS).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import redis_guard
from gurugrow.stores.once import RENEW_LEASE_SCRIPT
from gurugrow.stores.scripts import load_script

# An entry RetailCRM has not confirmed for this long goes (the reconcile confirms every
# bound customer within MIRROR_RECONCILE_SECONDS, a day by default).
ENTRY_TTL_SECONDS = 3 * 86400
_NOBODY = "_"  # the field of a binding hash that says: known, bound to nobody
# The bound index's own member (score +inf): the index exists, even with nobody bound,
# until Redis loses it (then what the mirror holds is unknown: a full load).
_INDEX_MARK = "_"
CUSTOMERS, ORDERS = "customers", "orders"
_STATE_SCRIPT = load_script("mirror_state")
Identity = tuple[str, str]  # (channel, messenger account id)


def _pack(orders: list[dict[str, Any]]) -> bytes:
    """A customer's order list as kept: compact JSON, compressed (orders of one shop
    repeat their field names and goods: a list of 5 takes a fraction of its JSON)."""
    return zlib.compress(json.dumps(orders, ensure_ascii=False, separators=(",", ":"))
                         .encode(), 6)


def _unpack(raw: bytes) -> list[dict[str, Any]]:
    """A kept order list (ValueError/TypeError when it is not one: the live path)."""
    try:
        orders = json.loads(zlib.decompress(raw))
    except zlib.error as e:
        raise ValueError("not a mirrored order list") from e
    if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
        raise TypeError("not a list of orders")
    return orders


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
        if not entries:  # not in the mirror (evicted, or never seen): not an answer
            self.schedule(f"a:{channel}:{account_id}")
            return None
        return {_text(k): json.loads(v) for k, v in entries.items()
                if k != _NOBODY.encode()}

    def orders(self, customer_id: str) -> list[dict[str, Any]] | None:
        """The customer's mirrored orders (as the view reads them, any order); None while
        the mirror is not current or does not hold the customer's list (then a re-read is
        asked for)."""
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self.state_key, "synced_at")
            pipe.get(redis_keys.mirror_orders(self._prefix, customer_id))
            synced_at, raw = pipe.execute()
        if not self._current(synced_at):
            return None
        if raw is None:  # missing while loaded: read live, and re-read it
            self.schedule(f"c:{customer_id}")
            return None
        return _unpack(raw)

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
                     masked_phone: str | None, interacted: bool, *,
                     confirmed: bool = False) -> bool:
        """File the customer under exactly ``identities`` (none: unbound, its keys go)."""
        customer_id = str(customer_id)
        wanted = sorted({(str(c), str(a)) for c, a in identities})
        old = self.customer(customer_id)
        previous = {(c, a) for c, a in (old or {}).get("identities", [])}
        record = {"identities": [list(i) for i in wanted], "maskedPhone": masked_phone,
                  "interacted": bool(interacted)}
        entry = json.dumps({"maskedPhone": masked_phone, "interacted": bool(interacted)},
                           ensure_ascii=False)
        ttl = ENTRY_TTL_SECONDS
        record_key = redis_keys.mirror_customer(self._prefix, customer_id)
        orders_key = redis_keys.mirror_orders(self._prefix, customer_id)
        index = redis_keys.mirror_bound_index(self._prefix)
        # A write that changes nothing writes nothing, unless ``confirmed`` (RetailCRM was
        # just asked: the reconcile, a load): then only the keys' expiry and the index's
        # time move.
        unchanged = old == record or (old is None and not wanted)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            if unchanged and not confirmed:
                pass  # nothing changes: the expiry is not refreshed either
            elif unchanged:  # confirmed as it is: its keys are (re)written, none lost
                for channel, account in wanted:
                    key = redis_keys.mirror_binding(self._prefix, channel, account)
                    pipe.hset(key, customer_id, entry)
                    pipe.expire(key, ttl)
                if wanted:
                    pipe.expire(record_key, ttl)
                    pipe.expire(orders_key, ttl)
                    pipe.zadd(index, {customer_id: self._clock()})
                    pipe.expire(index, ttl)
            else:
                for channel, account in previous - set(wanted):
                    key = redis_keys.mirror_binding(self._prefix, channel, account)
                    pipe.hdel(key, customer_id)
                    # Known: bound to nobody now (unless another customer still is).
                    pipe.hset(key, _NOBODY, "1")
                    pipe.expire(key, ttl)
                for channel, account in wanted:
                    key = redis_keys.mirror_binding(self._prefix, channel, account)
                    pipe.hset(key, customer_id, entry)
                    pipe.expire(key, ttl)
                if wanted:
                    pipe.set(record_key, json.dumps(record, ensure_ascii=False), ex=ttl)
                    pipe.zadd(index, {customer_id: self._clock()})
                    pipe.expire(index, ttl)
                else:
                    pipe.delete(record_key, orders_key)
                    pipe.zrem(index, customer_id)
            if wanted:
                pipe.exists(orders_key)
            answers = pipe.execute()
        return bool(wanted) and not answers[-1]  # bound, and its orders not mirrored yet

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
        """The customer is gone from RetailCRM (deleted or merged): its bindings, orders
        and index entry too (whatever of them is left)."""
        customer_id = str(customer_id)
        self.put_customer(customer_id, [], None, False)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(redis_keys.mirror_customer(self._prefix, customer_id),
                        redis_keys.mirror_orders(self._prefix, customer_id))
            pipe.zrem(redis_keys.mirror_bound_index(self._prefix), customer_id)
            pipe.execute()

    def put_orders(self, customer_id: str, orders: list[dict[str, Any]]) -> None:
        """Replace the customer's mirrored orders with ``orders`` (complete)."""
        key = redis_keys.mirror_orders(self._prefix, str(customer_id))
        owners = redis_keys.mirror_order_owners(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.set(key, _pack(orders), ex=ENTRY_TTL_SECONDS)
            if orders:
                pipe.hset(owners, mapping={str(o["id"]): str(customer_id) for o in orders})
                pipe.expire(owners, ENTRY_TTL_SECONDS)
            pipe.execute()

    def _orders_of(self, customer_id: str) -> list[dict[str, Any]] | None:
        with redis_guard():
            raw = self._client.get(redis_keys.mirror_orders(self._prefix, customer_id))
        return None if raw is None else _unpack(raw)

    def put_order(self, order: dict[str, Any], keep: int) -> str:
        """File one re-read order under its customer; answers what became of it."""
        # File one re-read order under its customer (and no longer under another), keeping the
        # customer's ``keep`` newest. Answers ``"filed"``, ``"not_bound"`` (its customer is not
        # mirrored: nothing kept) or ``"incomplete"`` (bound, but its list is not mirrored: the
        # caller loads it whole). Only the poller writes lists, so the read-modify-write of one list
        # is its own; an order written unchanged writes nothing (the expiry is not refreshed).
        order_id = str(order["id"])
        owner = str((order.get("customer") or {}).get("id") or "")
        self._unfile(order_id, except_owner=owner)
        if not owner or self.customer(owner) is None:
            return "not_bound"
        kept = self._orders_of(owner)
        if kept is None:
            return "incomplete"
        others = [o for o in kept if str(o.get("id")) != order_id]
        if len(others) == len(kept) - 1 and order in kept:
            return "filed"  # already so
        newest = sorted([*others, order], key=lambda o: str(o.get("createdAt") or ""),
                        reverse=True)
        extra = [str(o["id"]) for o in newest[keep:]]
        owners = redis_keys.mirror_order_owners(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.set(redis_keys.mirror_orders(self._prefix, owner), _pack(newest[:keep]),
                     ex=ENTRY_TTL_SECONDS)
            pipe.hset(owners, order_id, owner)
            pipe.expire(owners, ENTRY_TTL_SECONDS)
            if extra:
                pipe.hdel(owners, *extra)
            pipe.execute()
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
        kept = self._orders_of(_text(was))
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            if kept is not None:
                pipe.set(redis_keys.mirror_orders(self._prefix, _text(was)),
                         _pack([o for o in kept if str(o.get("id")) != order_id]),
                         keepttl=True)
            pipe.hdel(owners, order_id)
            pipe.execute()

    def forget_orders(self, customer_id: str) -> None:
        """This service created an order for the customer (write-through): its list is no
        longer complete, so reads go live (and ask for a re-read) until the poller has it."""
        with redis_guard():
            self._client.delete(redis_keys.mirror_orders(self._prefix, str(customer_id)))

    def known_unbound(self, channel: str, account_id: str) -> None:
        """The poller asked RetailCRM: nobody holds the account (a read says so now)."""
        key = redis_keys.mirror_binding(self._prefix, channel, account_id)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(key, _NOBODY, "1")
            pipe.expire(key, ENTRY_TTL_SECONDS)
            pipe.execute()

    # -- what the poller must look at again -------------------------------------------
    def schedule(self, what: str, delay: float = 0.0) -> None:
        """Ask the poller to re-read ``what`` (``c:<id>``, ``o:<id>``, ``a:<channel>:<id>``)
        after ``delay`` s; an earlier request for it stands (NX)."""
        key = redis_keys.mirror_recheck(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(key, {what: self._clock() + delay}, nx=True)
            pipe.expire(key, ENTRY_TTL_SECONDS)
            pipe.execute()

    def due_rechecks(self, limit: int) -> list[str]:
        """At most ``limit`` re-reads due now, the oldest first."""
        with redis_guard():
            found = self._client.zrangebyscore(redis_keys.mirror_recheck(self._prefix),
                                               "-inf", self._clock(), start=0, num=limit)
        return [_text(m) for m in found]

    def rechecked(self, done: list[str]) -> None:
        if done:
            with redis_guard():
                self._client.zrem(redis_keys.mirror_recheck(self._prefix), *done)

    def pending_rechecks(self) -> int:
        with redis_guard():
            return int(self._client.zcard(redis_keys.mirror_recheck(self._prefix)))

    # -- the bound index: the reconcile's and the eviction check's list ----------------
    def bound_count(self) -> int:
        with redis_guard():
            count = int(self._client.zcard(redis_keys.mirror_bound_index(self._prefix)))
        return max(count - 1, 0)  # less the index's own member

    def index_exists(self) -> bool:
        with redis_guard():
            return self._client.zscore(redis_keys.mirror_bound_index(self._prefix),
                                       _INDEX_MARK) is not None

    def touch_index(self) -> None:
        """Keep the index's own member (the load writes it, the reconcile keeps it)."""
        key = redis_keys.mirror_bound_index(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(key, {_INDEX_MARK: "+inf"})
            pipe.expire(key, ENTRY_TTL_SECONDS)
            pipe.execute()

    def least_recently_confirmed(self, count: int) -> list[str]:
        with redis_guard():
            found = self._client.zrange(redis_keys.mirror_bound_index(self._prefix), 0,
                                        count - 1)
        return [_text(m) for m in found if _text(m) != _INDEX_MARK]

    def confirmed_before(self, moment: float, count: int = 1000) -> list[str]:
        """Bound customers RetailCRM has not confirmed since ``moment`` (a load that did
        not find them bound: they go)."""
        with redis_guard():
            found = self._client.zrangebyscore(redis_keys.mirror_bound_index(self._prefix),
                                               "-inf", f"({moment}", start=0, num=count)
        return [_text(m) for m in found]

    def bound_page(self, start: int, count: int) -> list[str]:
        with redis_guard():
            found = self._client.zrange(redis_keys.mirror_bound_index(self._prefix), start,
                                        start + count - 1)
        return [_text(m) for m in found if _text(m) != _INDEX_MARK]

    def incomplete(self, customer_ids: list[str]) -> list[str]:
        """Of these bound customers, those with a key missing (record, orders, binding):
        what an eviction took."""
        if not customer_ids:
            return []
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            for cid in customer_ids:
                pipe.get(redis_keys.mirror_customer(self._prefix, cid))
                pipe.exists(redis_keys.mirror_orders(self._prefix, cid))
            answers = pipe.execute()
        missing, records = [], []
        for i, cid in enumerate(customer_ids):
            raw, orders = answers[2 * i], answers[2 * i + 1]
            if not raw or not orders:
                missing.append(cid)
            else:
                records.append((cid, json.loads(raw)))
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            checked = []
            for cid, record in records:
                for channel, account in record.get("identities", []):
                    pipe.hexists(redis_keys.mirror_binding(self._prefix, channel, account), cid)
                    checked.append(cid)
            answers = pipe.execute() if checked else []
        missing += sorted({cid for cid, there in zip(checked, answers, strict=True)
                           if not there}, key=int)
        return missing

    # -- chatbot_interacted marks, written by the poller in the quota's spare slots -----
    def enqueue_mark(self, customer_id: str) -> None:
        """Keep the customer's mark until the poller has written it (a request never
        waits for RetailCRM for it; kept in Redis, so a crash loses none)."""
        key = redis_keys.mirror_marks(self._prefix)
        with redis_guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(key, {str(customer_id): self._clock()}, nx=True)
            pipe.expire(key, ENTRY_TTL_SECONDS)
            pipe.execute()

    def due_marks(self, limit: int) -> list[str]:
        with redis_guard():
            found = self._client.zrangebyscore(redis_keys.mirror_marks(self._prefix), "-inf",
                                               self._clock(), start=0, num=limit)
        return [_text(m) for m in found]

    def postpone_mark(self, customer_id: str, seconds: float) -> None:
        """Try the mark again in ``seconds`` (set before the write: a poller dying during
        it leaves the mark to be tried again then)."""
        with redis_guard():
            self._client.zadd(redis_keys.mirror_marks(self._prefix),
                              {str(customer_id): self._clock() + seconds}, xx=True)

    def mark_written(self, customer_id: str) -> None:
        with redis_guard():
            self._client.zrem(redis_keys.mirror_marks(self._prefix), str(customer_id))
        self.set_interacted(str(customer_id))

    def drop_mark(self, customer_id: str) -> None:
        """The customer is gone: its mark with it."""
        with redis_guard():
            self._client.zrem(redis_keys.mirror_marks(self._prefix), str(customer_id))

    def pending_marks(self) -> int:
        with redis_guard():
            return int(self._client.zcard(redis_keys.mirror_marks(self._prefix)))
