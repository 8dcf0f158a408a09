"""Loading and syncing the RetailCRM mirror (``mirror_store``): the poller's work.

- **Full load** (no state yet, Redis flushed, or the last load is FULL_RELOAD_SECONDS
  old): note each history's newest record id first, then page through every customer and
  every order at 100 a call; bound customers are mirrored, with their newest orders.
  Changes made while it loads are in the history after the noted ids.
- **Incremental sync**: both histories from the saved ``sinceId``, 100 records a call,
  paged with ``sinceId`` only. A record only says *which* entity changed (its value shapes
  per field are unsettled); the changed ids are re-read in batches (``filter[ids][]``, 100
  a call) and their current state is mirrored, so applying a change again is harmless.
  A customer RetailCRM no longer has (deleted, or merged: ``combinedTo`` is re-read too)
  drops its bindings. The position is saved after each page is applied, by the lease
  holder only; a successor resumes from it, so nothing is lost.

Every call goes through the gateway (timeouts, the shared quota bucket at read priority,
the breaker), each on its own queue deadline; failures propagate to the worker, which
tries again at the next poll.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gurugrow.basics.errors import LeaseLost
from gurugrow.config import CHANNELS
from gurugrow.flows.binding import customer_masked_phone
from gurugrow.gateways.retailcrm import custom_fields
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.mirror import CUSTOMERS, FULL_RELOAD_SECONDS, ORDERS, Identity, MirrorStore
from gurugrow.stores.quota import READ, crm_priority

PAGE = 100
# At most this many history pages per kind in one pass, so the lag is refreshed and the
# lease renewed between long catch-ups (the next pass goes on from the saved position).
MAX_PAGES_PER_PASS = 20
Progress = Callable[[str], None]
T = TypeVar("T")


class Sync:
    """One poller's view: the services, its store and its lease token."""

    def __init__(self, svc: Services, store: MirrorStore, token: str,
                 progress: Progress = lambda line: None) -> None:
        self.svc = svc
        self.store = store
        self.token = token
        self.progress = progress
        self.calls: dict[str, int] = {}

    # -- helpers ----------------------------------------------------------------------
    def _crm(self, kind: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One RetailCRM call at read priority, counted by ``kind``. Each call is its own
        "request" to the bucket: a request's calls share one queue deadline, which a load
        of many pages would outlast."""
        self.calls[kind] = self.calls.get(kind, 0) + 1
        with crm_priority(READ):
            return call(*args, **kwargs)

    def _write(self, fields: dict[str, Any], *, add: bool = False) -> None:
        if not self.store.write_state(self.token, fields, add=add):
            raise LeaseLost()

    def identities(self, customer: dict[str, Any]) -> list[Identity]:
        """The messenger accounts a CRM customer holds (a value that is no text or whole
        number cannot be an account id, as the live lookup compares text)."""
        fields = custom_fields(customer)
        found = []
        for channel in CHANNELS:
            value = fields.get(self.svc.settings.channel_field(channel))
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                continue
            found.append((channel, str(value)))
        return found

    def _interacted(self, customer: dict[str, Any]) -> bool:
        code = self.svc.settings.retailcrm_cf_chatbot_interacted
        return str(custom_fields(customer).get(code, "")).lower() in ("true", "1")

    def mirror_customer(self, customer: dict[str, Any]) -> bool:
        """Mirror one CRM customer as it is now; True when its orders must be loaded."""
        return self.store.put_customer(str(customer["id"]), self.identities(customer),
                                       customer_masked_phone(customer),
                                       self._interacted(customer))

    def load_orders_of(self, customer_id: str, kind: str = "reread") -> int:
        """Mirror one bound customer's newest orders (all its pages of 100 are read, as
        their order is stated nowhere; one call for most customers); how many were kept."""
        keep = self.svc.settings.orders_max_lookback
        orders = _newest(list(self._pages(ORDERS, kind=kind, customer_id=customer_id)), keep)
        self.store.put_orders(customer_id, orders)
        return len(orders)

    # -- full load --------------------------------------------------------------------
    def needs_load(self, state: dict[str, str], now: float) -> bool:
        try:
            return now - float(state["loaded_at"]) >= FULL_RELOAD_SECONDS
        except (KeyError, ValueError):
            return True

    def newest_record_id(self, kind: str) -> int:
        """The id of the newest history record, before loading: the first and the last
        page are read (their order is stated nowhere), the highest id of both counts."""
        records, total = self._crm("history", self.svc.crm.history, kind, page=1)
        ids = [r["id"] for r in records]
        if total and total > 1:
            last, _ = self._crm("history", self.svc.crm.history, kind, page=total)
            ids += [r["id"] for r in last]
        return max(ids, default=0)

    def _pages(self, entity: str, first: tuple[list[dict[str, Any]], int | None] | None = None,
               *, kind: str = "load", customer_id: str | None = None
               ) -> Iterator[dict[str, Any]]:
        """Every ``entity`` (of one customer's, orders) at 100 a call (``first``: page 1,
        already read), page by page, so a large account is never held in memory whole."""
        page, read = 1, 0
        while True:
            items, total = first if page == 1 and first is not None else self._crm(
                kind, self.svc.crm.list_page, entity, page, customer_id)
            read += len(items)
            if customer_id is None:
                self.progress(f"{entity}: page {page} of {total or '?'}, {read} read")
            yield from items
            if not items or total is None or page >= total:
                return
            page += 1

    def full_load(self, now: float) -> dict[str, int]:
        """Load everything (see the module docstring); the sync state is set last."""
        since = {kind: self.newest_record_id(kind) for kind in (CUSTOMERS, ORDERS)}
        bound: set[str] = set()
        for customer in self._pages(CUSTOMERS):
            if self.identities(customer):
                self.mirror_customer(customer)
                bound.add(str(customer["id"]))
        first = self._crm("load", self.svc.crm.list_page, ORDERS, 1)
        if first[1] is not None and len(bound) < first[1] - 1:
            # Fewer bound customers than pages of orders: one call per customer is less.
            orders = sum(self.load_orders_of(cid, "load") for cid in sorted(bound, key=int))
            return self._loaded(since, now, len(bound), orders)
        by_customer: dict[str, list[dict[str, Any]]] = {cid: [] for cid in bound}
        for order in self._pages(ORDERS, first):
            owner = str((order.get("customer") or {}).get("id") or "")
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
        self._write({"customers_since": since[CUSTOMERS], "orders_since": since[ORDERS],
                     "loaded_at": now, "synced_at": now, "customers": customers,
                     "orders": orders, **{f"calls_{k}": v for k, v in self.calls.items()}})
        self._write({"full_reloads": 1}, add=True)
        log_event("mirror_loaded", customers=customers, orders=orders,
                  calls=sum(self.calls.values()))
        return {"customers": customers, "orders": orders}

    # -- incremental ------------------------------------------------------------------
    def apply_customers(self, ids: list[str]) -> None:
        for start in range(0, len(ids), PAGE):
            batch = ids[start:start + PAGE]
            found = {str(c["id"]): c
                     for c in self._crm("reread", self.svc.crm.by_ids, CUSTOMERS, batch)}
            for cid in batch:
                customer = found.get(cid)
                if customer is None:
                    self.store.drop_customer(cid)
                elif self.mirror_customer(customer):
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
                elif self.store.put_order(order, keep) == "incomplete":
                    incomplete.add(str(order["customer"]["id"]))
            for cid in sorted(incomplete):
                self.load_orders_of(cid)

    def follow(self, kind: str, since: int) -> bool:
        """Apply the history of ``kind`` after ``since``, saving the position after each
        page; True when it reached the end (False: MAX_PAGES_PER_PASS were applied and
        more may follow)."""
        for _ in range(MAX_PAGES_PER_PASS):
            records, _total = self._crm("history", self.svc.crm.history, kind,
                                        since_id=since)
            fresh = [r for r in records if r["id"] > since]  # defensive: ids after since
            if not fresh:
                return True
            ids = sorted({i for r in fresh for i in _changed_ids(kind, r)}, key=int)
            (self.apply_customers if kind == CUSTOMERS else self.apply_orders)(ids)
            since = max(r["id"] for r in fresh)
            self._write({f"{kind}_since": since})
            if len(records) < PAGE:
                return True
        return False

    def sync_pass(self, now: Callable[[], float]) -> dict[str, int]:
        """Load when needed, else follow both histories; the sync time is saved last, and
    only when both were followed to their end (``behind`` in the answer otherwise)."""
        state = self.store.state()
        if self.needs_load(state, now()):
            return self.full_load(now())
        before = dict(self.calls)
        drained = [self.follow(kind, int(state.get(f"{kind}_since") or 0))
                   for kind in (CUSTOMERS, ORDERS)]
        made = {f"calls_{k}": v - before.get(k, 0) for k, v in self.calls.items()
                if v - before.get(k, 0)}
        if made:
            self._write(made, add=True)
        done = {k.removeprefix("calls_"): v for k, v in made.items()}
        if not all(drained):
            # Still catching up: the mirror is as old as its last complete sync, so the
            # lag keeps growing (and reads go live past MIRROR_MAX_LAG_SECONDS).
            return {**done, "behind": 1}
        self._write({"synced_at": now()})
        return done


def _changed_ids(kind: str, record: dict[str, Any]) -> list[str]:
    """The ids a history record names: its entity's, and a merge target's."""
    found = []
    for part in (record.get("customer" if kind == CUSTOMERS else "order"),
                 record.get("combinedTo")):
        if isinstance(part, dict) and str(part.get("id", "")).isdigit():
            found.append(str(part["id"]))
    return found


def _newest(orders: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    return sorted(orders, key=lambda o: str(o.get("createdAt") or ""), reverse=True)[:keep]
