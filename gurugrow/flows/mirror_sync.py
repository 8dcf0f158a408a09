"""Loading and syncing the RetailCRM mirror (``mirror_store``): the poller's work.

- **Full load** (no state yet, Redis flushed, or the mirror's own index evicted): note
  each history's newest record id first, then page through every customer and every
  order at 100 a call; bound customers are mirrored, with their newest orders. Changes
  made while it loads are in the history after the noted ids. A bound customer the load
  did not find bound any more goes. There is no daily reload: the reconcile heals.
- **Incremental sync**: both histories from the saved ``sinceId``, 100 records a call,
  paged with ``sinceId`` only, until the answer's own ``pagination`` says it was the last
  page (a short page alone proves nothing). A record only says *which* entity changed
  (its value shapes per field are unsettled); the changed ids are re-read in batches
  (``filter[ids][]``, 100 a call) and their current state is mirrored, so applying a
  change again is harmless. A customer RetailCRM no longer has drops its bindings and
  orders. A merge (``combinedTo``, customer or order) re-reads the surviving entity and
  its orders, and again one poll later: RetailCRM merges asynchronously and writes no
  order records for the orders it moves. The position is saved after each page is
  applied, by the lease holder only; a successor resumes from it, so nothing is lost.
- **Re-reads asked for**: a read that found a key missing, a merge's second look
  (``MirrorStore.schedule``); an eviction seen by the poller (Redis ``evicted_keys``
  grew) walks the bound index and asks for every customer with a key missing.
- **Reconcile**: every bound customer is re-read within MIRROR_RECONCILE_SECONDS, 100 a
  call, the least recently confirmed first; what is no longer bound or there goes.
- **Marks**: queued ``chatbot_interacted`` marks are written in the quota's spare slots
  only (the lowest priority), kept until written.

Priority: history reads and re-reads take the bucket's slots as journey calls (ahead of
the live reads a stale mirror sends, so the calls that end a burst wait behind none of
it); while catching up they space themselves to at most half the quota. The load reads
at read priority (in line with live reads); marks take spare slots only. Failures
propagate to the worker, which tries again at the next poll.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gurugrow.basics.errors import CrmBusy, LeaseLost, NotFound, UpstreamError, UpstreamRejected
from gurugrow.basics.json_types import JsonObject
from gurugrow.config import CHANNELS
from gurugrow.flows.binding import customer_masked_phone
from gurugrow.flows.mirror_orders import slim_order
from gurugrow.gateways.retailcrm import Customer, customers_of, order_customer_id
from gurugrow.governor import JOURNEY, READ, crm_priority
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.mirror import CUSTOMERS, ORDERS, Identity, MirrorStore

PAGE = 100
# At most this many history pages per entity in one pass, so the lag is refreshed and the
# lease renewed between long catch-ups (the next pass goes on from the saved position).
MAX_PAGES_PER_PASS = 20
# Per pass: re-reads asked for, messenger accounts looked up, marks written.
MAX_RECHECKS_PER_PASS = 200
MAX_ACCOUNT_LOOKUPS_PER_PASS = 20
MAX_MARKS_PER_PASS = 20
MARK_RETRY_SECONDS = 60.0
# The bound index is walked this many customers per Redis round trip after an eviction.
EVICTION_WALK = 500
Progress = Callable[[str], None]
T = TypeVar("T")
P = ParamSpec("P")


class _RedisInfo(Protocol):
    def info(self, section: str) -> object: ...


class Sync:
    """One poller's view: the services, its store and its lease token."""

    def __init__(self, svc: Services, store: MirrorStore, token: str,
                 progress: Progress = lambda line: None) -> None:
        self.svc = svc
        self.store = store
        self.token = token
        self.progress = progress
        self.calls: dict[str, int] = {}
        # While catching up the poller spaces its own calls to half the quota at most.
        self.catching_up = False
        self._last_call = 0.0
        self._load: JsonObject = {}
        # Where the histories start for a position of 0 (no record since the load began).
        self.history_from: str | None = None

    # -- helpers ----------------------------------------------------------------------
    def _crm(self, counter: str, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """One RetailCRM call, counted under ``counter``: the load's at read priority, the
        history's and re-reads' as journey calls (ahead of live reads). Each call is its
        own "request" to the bucket: a request's calls share one queue deadline, which a
        load of many pages would outlast."""
        self.calls[counter] = self.calls.get(counter, 0) + 1
        if self.catching_up and counter != "load":
            gap = 2.0 / self.svc.settings.retailcrm_rate_limit  # half the quota at most
            wait = self._last_call + gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_call = time.monotonic()
        with crm_priority(READ if counter == "load" else JOURNEY):
            return call(*args, **kwargs)

    def _write(self, fields: JsonObject, *, add: bool = False) -> None:
        if not self.store.write_state(self.token, fields, add=add):
            raise LeaseLost()

    def identities(self, customer: Customer) -> list[Identity]:
        """The messenger accounts a CRM customer holds (a value that is no text or whole
        number cannot be an account id, as the live lookup compares text)."""
        fields = customer.custom_fields
        found = []
        for channel in CHANNELS:
            value = fields.get(self.svc.settings.channel_field(channel))
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                continue
            found.append((channel, str(value)))
        return found

    def _interacted(self, customer: Customer) -> bool:
        code = self.svc.settings.retailcrm_cf_chatbot_interacted
        return str(customer.custom_fields.get(code, "")).lower() in ("true", "1")

    def mirror_customer(self, customer: Customer, *, confirmed: bool = False) -> bool:
        """Mirror one CRM customer as it is now; True when its orders must be loaded."""
        return self.store.put_customer(customer.id, self.identities(customer),
                                       customer_masked_phone(customer),
                                       self._interacted(customer), confirmed=confirmed)

    def load_orders_of(self, customer_id: str, counter: str = "reread") -> int:
        """Mirror one bound customer's newest orders (all its pages of 100 are read, as
        their order is stated nowhere; one call for most customers); how many were kept."""
        keep = self.svc.settings.orders_max_lookback
        orders = _newest(list(self._pages(ORDERS, counter=counter, customer_id=customer_id)), keep)
        self.store.put_orders(customer_id, orders)
        return len(orders)

    # -- full load --------------------------------------------------------------------
    def needs_load(self, state: dict[str, str]) -> bool:
        """No state (never loaded, flushed), or the mirror's own index is gone (evicted):
        what is missing is unknown, load."""
        return "loaded_at" not in state or not self.store.index_exists()

    def history_start(self) -> str:
        """An hour ago in the account's time (``filter[startDate]``, ``Y-m-d H:i:s``);
        when the zone cannot be read, 15 hours ago in UTC (earlier than an hour ago in
        any zone). An hour covers any sane clock skew between this host and RetailCRM."""
        now = datetime.fromtimestamp(self.svc.clock(), UTC)
        try:
            self.calls["history"] = self.calls.get("history", 0) + 1
            with crm_priority(JOURNEY):
                zone: tzinfo = ZoneInfo(self.svc.crm.account_timezone() or "UTC")
            back = timedelta(hours=1)
        except (NotFound, UpstreamRejected, ZoneInfoNotFoundError, ValueError):
            zone, back = UTC, timedelta(hours=15)
        return (now - back).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def newest_record_id(self, entity: str, start: str) -> int:
        """A history position to follow from after the load, in one call whatever its length."""
        # The highest id among the records since ``start`` (``filter[startDate]``). Any id
        # up to the newest at the load's start is right (what came before is covered by
        # the load; re-applying a record is harmless).
        recent, _ = self._crm("history", self.svc.crm.history, entity, start_date=start)
        # None since ``start``: 0, and the first sync reads from ``start`` by date.
        return max((r["id"] for r in recent), default=0)

    def _pages(self, entity: str, first: tuple[list[JsonObject], int | None] | None = None,
               *, counter: str = "load", customer_id: str | None = None
               ) -> Iterator[JsonObject]:
        """Every ``entity`` (of one customer's, orders) at 100 a call (``first``: page 1,
        already read), page by page, so a large account is never held in memory whole."""
        page, read = 1, 0
        while True:
            items, total = first if page == 1 and first is not None else self._crm(
                counter, self.svc.crm.list_page, entity, page, customer_id)
            read += len(items)
            if customer_id is None:
                self._progress(entity, page, total, read)
            yield from items
            if not items or total is None or page >= total:
                return
            page += 1

    def _progress(self, entity: str, page: int, total: int | None, read: int) -> None:
        """The load's progress: a line, and the state (the metric and the doctor read it)."""
        began = self._load.setdefault("began", time.monotonic())
        elapsed = time.monotonic() - began
        left = (elapsed / page * (total - page)) if total else -1
        self.progress(f"{entity}: page {page} of {total or '?'}, {read} read, "
                      f"{sum(self.calls.values())} calls, {elapsed:.0f} s"
                      + (f", about {left:.0f} s left of {entity}" if left >= 0 else ""))
        self._write({"load_entity": entity, "load_page": page, "load_pages": total or 0,
                     "load_calls": sum(self.calls.values()), "load_elapsed": round(elapsed, 1),
                     "load_left": round(left, 1)})

    def full_load(self, now: float) -> dict[str, int]:
        """Load everything (see the module docstring); the sync state is set last."""
        start = self.history_start()
        self.history_from = start
        since = {entity: self.newest_record_id(entity, start) for entity in (CUSTOMERS, ORDERS)}
        bound: set[str] = set()
        for record in self._pages(CUSTOMERS):
            customer = Customer.parse(record)
            if customer is not None and self.identities(customer):
                self.mirror_customer(customer, confirmed=True)
                bound.add(customer.id)
        # Whatever the index still holds that this load did not find bound goes.
        while stale := [c for c in self.store.confirmed_before(now) if c not in bound]:
            for cid in stale:
                self.store.drop_customer(cid)
        first = self._crm("load", self.svc.crm.list_page, ORDERS, 1)
        if first[1] is not None and len(bound) < first[1] - 1:
            # Fewer bound customers than pages of orders: one call per customer is less.
            orders = sum(self.load_orders_of(cid, "load") for cid in sorted(bound, key=int))
            return self._loaded(since, now, len(bound), orders)
        by_customer: dict[str, list[JsonObject]] = {cid: [] for cid in bound}
        for order in self._pages(ORDERS, first):
            owner = order_customer_id(order) or ""
            if owner in by_customer:
                by_customer[owner].append(order)
        keep = self.svc.settings.orders_max_lookback
        orders = 0
        for cid, found in by_customer.items():
            kept = _newest(found, keep)
            orders += len(kept)
            self.store.put_orders(cid, kept)
        return self._loaded(since, now, len(bound), orders)

    def _loaded(self, since: dict[str, int], now: float, customers: int, orders: int
                ) -> dict[str, int]:
        self.store.touch_index()
        self._write({"customers_since": since[CUSTOMERS], "orders_since": since[ORDERS],
                     "history_from": self.history_from or "", "loaded_at": now,
                     "synced_at": now, "reconciled_at": now,
                     "customers": customers, "orders": orders, "load_entity": "done",
                     **{f"calls_{k}": v for k, v in self.calls.items()}})
        self._write({"full_reloads": 1}, add=True)
        log_event("mirror_loaded", customers=customers, orders=orders,
                  calls=sum(self.calls.values()))
        return {"customers": customers, "orders": orders}

    # -- incremental ------------------------------------------------------------------
    def apply_customers(self, ids: list[str], *, with_orders: frozenset[str] = frozenset(),
                        confirmed: bool = False) -> None:
        """Re-read these customers and mirror them as they are; those in ``with_orders``
        (a merge's survivor, a customer found incomplete) get their orders re-read too."""
        for start in range(0, len(ids), PAGE):
            batch = ids[start:start + PAGE]
            found = {c.id: c for c in customers_of(
                self._crm("reread", self.svc.crm.by_ids, CUSTOMERS, batch))}
            for cid in batch:
                customer = found.get(cid)
                if customer is None:
                    self.store.drop_customer(cid)
                elif self.mirror_customer(customer, confirmed=confirmed or cid in with_orders
                                          ) or (cid in with_orders and self.identities(customer)):
                    self.load_orders_of(cid)

    def apply_orders(self, ids: list[str]) -> None:
        keep = self.svc.settings.orders_max_lookback
        for start in range(0, len(ids), PAGE):
            batch = ids[start:start + PAGE]
            found = {str(o["id"]): o
                     for o in self._crm("reread", self.svc.crm.by_ids, ORDERS, batch)}
            incomplete: set[str] = set()
            for oid in batch:
                order = found.get(oid)
                if order is None:
                    self.store.drop_order(oid)
                elif self.store.put_order(slim_order(order), keep) == "incomplete":
                    incomplete.add(str(order["customer"]["id"]))
            for cid in sorted(incomplete):
                self.load_orders_of(cid)

    def follow(self, entity: str, since: int) -> tuple[bool, int]:
        """Apply ``entity``'s history after ``since``: (reached its end, records applied)."""
        # The end is the answer's own word: a page whose ``pagination`` says it is the last
        # one, or an empty page (no pagination: read on until one). A short page with more
        # pages after it is not the end.
        applied = 0
        for _ in range(MAX_PAGES_PER_PASS):
            if since == 0 and self.history_from:  # no record yet since the load: by date
                records, total = self._crm("history", self.svc.crm.history, entity,
                                           start_date=self.history_from)
            else:
                records, total = self._crm("history", self.svc.crm.history, entity,
                                           since_id=since)
            fresh = [r for r in records if r["id"] > since]  # defensive: ids after since
            if not fresh:
                return True, applied
            self.catching_up = self.catching_up or bool(total and total > 1)
            ids = sorted({i for r in fresh for i in _changed_ids(entity, r)}, key=int)
            merged = sorted({i for r in fresh for i in _merge_targets(r)}, key=int)
            if entity == CUSTOMERS:
                self.apply_customers(ids, with_orders=frozenset(merged))
            else:
                self.apply_orders(ids)
            for i in merged:  # the merge is asynchronous: look again one poll later
                self.store.schedule(f"{entity[0]}:{i}", self.svc.settings.mirror_poll_seconds)
            since = max(r["id"] for r in fresh)
            applied += len(fresh)
            self._write({f"{entity}_since": since})  # the position, saved after each page
            if total is not None and total <= 1:
                return True, applied
        return False, applied

    def recheck(self) -> int:
        """Re-read what was asked for (a missing key, a merge's second look); how many."""
        due = self.store.due_rechecks(MAX_RECHECKS_PER_PASS)
        customers = sorted({m[2:] for m in due if m.startswith("c:") and m[2:].isdigit()},
                           key=int)
        orders = sorted({m[2:] for m in due if m.startswith("o:") and m[2:].isdigit()},
                        key=int)
        accounts = [m for m in due if m.startswith("a:")][:MAX_ACCOUNT_LOOKUPS_PER_PASS]
        if customers:
            self.apply_customers(customers, with_orders=frozenset(customers))
        if orders:
            self.apply_orders(orders)
        for member in accounts:
            self._lookup_account(member)
        done = [m for m in due if not m.startswith("a:") or m in accounts]
        self.store.rechecked(done)
        return len(done)

    def _lookup_account(self, member: str) -> None:
        """Who holds the messenger account (a read found no binding key for it)."""
        _, channel, account = member.split(":", 2)
        if channel not in CHANNELS:
            return
        holders = self._crm("reread", self.svc.crm.find_customers_by_custom_field,
                            self.svc.settings.channel_field(channel), account)
        if not holders:
            self.store.known_unbound(channel, account)
        for customer in holders:
            if self.mirror_customer(customer, confirmed=True):
                self.load_orders_of(customer.id)

    def check_evictions(self, state: dict[str, str]) -> int:
        """Redis evicted keys since the last look: ask for a re-read of every bound
        customer with a key missing; how many. (The docs and the doctor say the mirror's
        Redis must not evict; this only repairs.)"""
        evicted = self.svc.caches.evicted_keys()
        if evicted is None:
            return 0
        seen = int(state.get("evicted_keys") or 0)
        if evicted == seen:
            return 0
        asked = 0
        if evicted > seen:
            start = 0
            while page := self.store.bound_page(start, EVICTION_WALK):
                for cid in self.store.incomplete(page):
                    self.store.schedule(f"c:{cid}")
                    asked += 1
                start += EVICTION_WALK
            log_event("mirror_evictions_seen", logging.WARNING, evicted=evicted - seen,
                      to_reread=asked)
        self._write({"evicted_keys": evicted})
        return asked

    def reconcile(self, state: dict[str, str], now: float) -> int:
        """Re-read the 100 least recently confirmed bound customers when due: every bound
        customer within MIRROR_RECONCILE_SECONDS (at the default one call a minute at
        most, for up to 144,000 bound customers); how many were re-read."""
        period = self.svc.settings.mirror_reconcile_seconds
        batches = max(math.ceil(self.store.bound_count() / PAGE), 1)
        every = max(period / batches, min(60.0, period / 10))
        try:
            last = float(state.get("reconciled_at") or 0)
        except ValueError:
            last = 0.0
        if now - last < every:
            return 0
        batch = self.store.least_recently_confirmed(PAGE)
        if batch:
            self.apply_customers(batch, confirmed=True)
        self.store.touch_index()
        self._write({"reconciled_at": now})
        return len(batch)

    def write_marks(self) -> int:
        """Write queued ``chatbot_interacted`` marks in the quota's spare slots; how many."""
        # Spare slots only (no reader waiting, the bucket free now): the lowest priority.
        code = self.svc.settings.retailcrm_cf_chatbot_interacted
        written = 0
        for cid in self.store.due_marks(MAX_MARKS_PER_PASS):
            with crm_priority(READ):
                rider = self.svc.crm.slot_rider()
                if rider is None or not rider.take_now():
                    break  # no spare slot (or the breaker is open): next pass
                # Postponed before its write, so a poller dying meanwhile leaves it to be
                # tried again.
                self.store.postpone_mark(cid, MARK_RETRY_SECONDS)
                self.calls["marks"] = self.calls.get("marks", 0) + 1
                try:
                    self.svc.crm.edit_customer_custom_fields(cid, {code: "true"})
                except NotFound:  # the customer is gone (deleted, merged): nothing to mark
                    self.store.drop_mark(cid)
                    continue
                except (UpstreamError, CrmBusy) as e:  # a failed one stays queued
                    log_event("mark_interacted_failed", logging.WARNING, customer_id=cid,
                              error=e)
                    break
            self.store.mark_written(cid)
            written += 1
        return written

    def sync_pass(self, now: Callable[[], float]) -> dict[str, int]:
        """Load when needed, else follow both histories (and re-read, reconcile, write marks)."""
        state = self.store.state()
        if self.needs_load(state):
            return self.full_load(now())
        before = dict(self.calls)
        began = now()
        self.history_from = state.get("history_from") or None
        followed = [self.follow(entity, int(state.get(f"{entity}_since") or 0))
                    for entity in (CUSTOMERS, ORDERS)]
        drained = all(done for done, _ in followed)
        # The sync time is saved once both histories are applied, and only when both were
        # followed to their end (``behind`` in the answer otherwise). It is the moment the
        # reads began: what the mirror holds is RetailCRM as of then at least.
        if drained:
            self._write({"synced_at": began})
        changes = sum(n for _, n in followed)
        changes += self.recheck() + self.check_evictions(state)
        changes += self.reconcile(state, now()) if drained else 0
        marks = self.write_marks() if drained else 0
        made = {f"calls_{k}": v - before.get(k, 0) for k, v in self.calls.items()
                if v - before.get(k, 0)}
        if made:
            self._write(made, add=True)
        done = {k.removeprefix("calls_"): v for k, v in made.items()}
        if changes or marks:
            done["changes"] = changes + marks
        if not drained:
            # Still catching up: the mirror is as old as its last complete sync, so the
            # lag keeps growing (and reads go live past MIRROR_MAX_LAG_SECONDS).
            return {**done, "behind": 1}
        return done


def _changed_ids(entity: str, record: JsonObject) -> list[str]:
    """The ids a history record names: its entity's, and a merge target's."""
    found = []
    for part in (record.get("customer" if entity == CUSTOMERS else "order"),
                 record.get("combinedTo")):
        if isinstance(part, dict) and str(part.get("id", "")).isdigit():
            found.append(str(part["id"]))
    return found


def _merge_targets(record: JsonObject) -> list[str]:
    """The surviving entity of a merge record (``combinedTo``), if any."""
    part = record.get("combinedTo")
    if isinstance(part, dict) and str(part.get("id", "")).isdigit():
        return [str(part["id"])]
    return []


def _newest(orders: list[JsonObject], keep: int) -> list[JsonObject]:
    """The ``keep`` newest, as the mirror keeps them (the fields the order view reads)."""
    return [slim_order(o) for o in sorted(orders, key=lambda o: str(o.get("createdAt") or ""),
                                          reverse=True)[:keep]]
