"""The RetailCRM mirror as the flows use it: try it first, else the live path.

Every function here is best effort. A mirror that is off (``svc.mirror`` None), stale,
incomplete for this customer or unreachable answers None, and the caller does exactly
what it does without a mirror. Write-through keeps this service's own writes visible at
once; the poller (``mirror_sync``) makes the mirror agree with RetailCRM afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gurugrow import metrics
from gurugrow.basics.errors import StorageUnavailable
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject
from gurugrow.flows import crm_cache
from gurugrow.logs import log_event
from gurugrow.services import Services

# What a broken mirror raises on a read: Redis refusing, or a value that is not what the
# store writes (garbage, an older format). Each means the live path, never an error.
_BROKEN = (StorageUnavailable, ValueError, TypeError, AttributeError)


def mirrored_binding(svc: Services, identity: MessengerIdentity
                     ) -> list[JsonObject] | None:
    """Binding entries (as ``crm_cache.binding_entry``) of every customer holding the
    account, from the mirror; None: ask RetailCRM (or its cache) as without a mirror."""
    if svc.mirror is None:
        return None
    try:
        found = svc.mirror.binding(identity.channel, identity.account_id)
        entries = [(str(cid), dict(entry)) for cid, entry in found.items()] \
            if found is not None else None
    except _BROKEN as e:
        log_event("mirror_read_failed", logging.WARNING, error=type(e).__name__)
        entries = None
    metrics.MIRROR_READS.labels("binding", "live" if entries is None else "mirror").inc()
    if entries is None:
        return None
    code = svc.settings.retailcrm_cf_chatbot_interacted
    return [crm_cache.binding_entry(cid, entry.get("maskedPhone"),
                                    bool(entry.get("interacted")), code)
            for cid, entry in sorted(entries)]


def mirrored_orders(svc: Services, customer_id: str) -> list[JsonObject] | None:
    """The customer's raw orders from the mirror; None: load them as without a mirror."""
    if svc.mirror is None:
        return None
    try:
        found = svc.mirror.orders(customer_id)
        if found is not None and not all(isinstance(o, dict) for o in found):
            raise TypeError("an order that is not an object")
    except _BROKEN as e:
        log_event("mirror_read_failed", logging.WARNING, error=type(e).__name__)
        found = None
    metrics.MIRROR_READS.labels("orders", "live" if found is None else "mirror").inc()
    return found


def _write_through(what: str, write: Callable[[], object]) -> None:
    try:
        write()
    except _BROKEN as e:
        # The CRM has the change; the poller brings it to the mirror within a poll. An
        # unreadable mirror record must not fail a request whose CRM write succeeded.
        log_event("mirror_write_failed", logging.WARNING, what=what, error=type(e).__name__)


def mirror_bound(svc: Services, identity: MessengerIdentity, customer_id: str,
                 masked_phone: str | None) -> None:
    """This service bound the account to the customer (chatbot_interacted written too)."""
    if (store := svc.mirror) is not None:
        _write_through("bind", lambda: store.add_identity(
            str(customer_id), (identity.channel, identity.account_id), masked_phone, True))


def mirror_unlinked(svc: Services, identity: MessengerIdentity, customer_id: str) -> None:
    """This service cleared the account's binding."""
    if (store := svc.mirror) is not None:
        _write_through("unlink", lambda: store.remove_identity(
            str(customer_id), (identity.channel, identity.account_id)))


def mirror_interacted(svc: Services, customer_id: str) -> None:
    """This service wrote chatbot_interacted=true for the customer."""
    if (store := svc.mirror) is not None:
        _write_through("interacted", lambda: store.set_interacted(str(customer_id)))


def mirror_order_created(svc: Services, customer_id: str) -> None:
    """This service created an order for the customer: read their orders live until the
    poller has re-read the new one (so it is never missing)."""
    if (store := svc.mirror) is not None:
        _write_through("order", lambda: store.forget_orders(str(customer_id)))


def queue_mark(svc: Services, customer_id: str) -> bool:
    """Queue the customer's ``chatbot_interacted`` mark for the mirror poller, which
    writes it in the quota's spare slots (never in this request); True when queued. With
    the mirror off (no poller) or its Redis refusing: False, and the caller writes it."""
    if (store := svc.mirror) is None:
        return False
    try:
        store.enqueue_mark(str(customer_id))
    except _BROKEN as e:
        log_event("mirror_write_failed", logging.WARNING, what="mark", error=type(e).__name__)
        return False
    return True
