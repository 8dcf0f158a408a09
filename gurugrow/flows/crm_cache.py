"""Short-lived Redis caches of RetailCRM answers, so a "My orders" visit costs few calls.

- Bindings: messenger account → ``{"id", "maskedPhone", "customFields"}`` (only the
  chatbot-interacted flag), ``BINDING_CACHE_SECONDS``; written when this service binds,
  dropped when it unlinks. "Bound to nobody" is kept ``BINDING_NEGATIVE_CACHE_SECONDS``.
  A change made in RetailCRM itself (a manager clearing the field) shows within the TTL.
- Order lists: one customer's latest orders, ``ORDERS_CACHE_SECONDS``; dropped when this
  service creates an order for that customer.

A TTL of 0 switches a cache off. Every lookup counts in gurugrow_cache_lookups_total.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from enum import Enum
from typing import Final

from gurugrow import metrics
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.client import WriteBatch


class BindingMiss(Enum):
    """What a binding lookup found instead of a customer: nothing cached, or "bound to
    nobody" (an enum, so a type checker tells the markers from a customer)."""

    NOT_CACHED = "not_cached"
    NO_BINDING = "no_binding"


NOT_CACHED: Final = BindingMiss.NOT_CACHED
NO_BINDING: Final = BindingMiss.NO_BINDING


def cached_binding(svc: Services, identity: MessengerIdentity) -> JsonObject | BindingMiss:
    """The cached binding entry, ``NO_BINDING``, or ``NOT_CACHED``."""
    if svc.settings.binding_cache_seconds <= 0:
        return NOT_CACHED
    raw = svc.caches.binding(identity.channel, identity.account_id)
    metrics.CACHE_LOOKUPS.labels("binding", "miss" if raw is None else "hit").inc()
    if raw is None:
        return NOT_CACHED
    entry: JsonObject | None = json.loads(raw)
    return NO_BINDING if entry is None else entry


def binding_entry(customer_id: str, masked_phone: str | None, interacted: bool,
                  interacted_field: str) -> JsonObject:
    """The slim customer the flows get for a binding, cached or fresh alike."""
    return {"id": str(customer_id), "maskedPhone": masked_phone,
            "customFields": {interacted_field: "true"} if interacted else {}}


def remember_binding(svc: Services, identity: MessengerIdentity,
                     entry: JsonObject | None, batch: WriteBatch | None = None) -> None:
    """Cache ``entry`` (None: bound to nobody, for the shorter negative TTL)."""
    s = svc.settings
    ttl = s.binding_cache_seconds if entry is not None else s.binding_negative_cache_seconds
    if s.binding_cache_seconds <= 0 or ttl <= 0:
        return
    value = json.dumps(entry, ensure_ascii=False)
    # With ``batch``, written when that is sent. A refused write is only logged (Redis
    # unreachable still raises): the binding itself is in the CRM, and a stale "bound to
    # nobody" entry lasts its short TTL at most.
    with svc.caches.written(batch) as writes:
        svc.caches.put_binding(identity.channel, identity.account_id, value, ttl, writes,
                               on_failure=lambda error: log_event(
                                   "binding_cache_failed", logging.WARNING, error=error))


def forget_binding(svc: Services, identity: MessengerIdentity,
                   then: Callable[[str | None], None], batch: WriteBatch | None = None
                   ) -> None:
    """Drop the cached binding (this service unlinked the account) and take the account's
    contact binding token in the same round trip, handed to ``then`` (None: there was
    none); with ``batch``, when that batch is sent."""
    svc.caches.forget_binding(identity.channel, identity.account_id, then, batch)


def customer_orders(svc: Services, customer_id: str,
                    load: Callable[[], list[JsonObject]]) -> list[JsonObject]:
    """The customer's orders from the cache, else ``load()``'s (then cached). Callers
    missing at once wait for one load (``stores.cache.cached_json``'s single flight)."""
    orders: list[JsonObject] = svc.caches.orders(customer_id,
                                                 svc.settings.orders_cache_seconds, load)
    return orders


def forget_orders(svc: Services, customer_id: str, batch: WriteBatch | None = None) -> None:
    """Drop the cached order list (this service created an order for the customer); with
    ``batch``, when that batch is sent."""
    svc.caches.forget_orders(customer_id, batch)
