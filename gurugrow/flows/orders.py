"""My orders: GET /orders and POST /orders/repeat.

Access is by messenger binding only; a ``customerId`` in the request is a consistency
check, never a key.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gurugrow import texts
from gurugrow.basics.errors import (
    CrmBusy,
    FlowRefusal,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gurugrow.basics.json_types import JsonObject
from gurugrow.basics.parallel import both
from gurugrow.flows import crm_cache
from gurugrow.flows.binding import bound_customer, mark_interacted
from gurugrow.flows.mirror import mirror_order_created, mirrored_orders
from gurugrow.flows.order_once import create_once, request_token
from gurugrow.flows.order_view import (
    StatusRules,
    orders_text,
    present_order,
    status_group,
    tracking_urls,
)
from gurugrow.flows.order_window import WindowedOrder, order_made_in_window, windowed_order
from gurugrow.flows.requests import OrdersRequest, RepeatOrderRequest
from gurugrow.flows.vocabulary import Answer, identity_of
from gurugrow.gateways.retailcrm import CreatedOrder, Order, offer_ref
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.client import WriteBatch
from gurugrow.stores.once import Lease

_NUMBER_ATTEMPTS = 3


def order_statuses(svc: Services) -> tuple[JsonObject, JsonObject, tzinfo]:
    """The statuses reference, the status groups and the account's time zone, cached in Redis."""
    s = svc.settings
    ttl = s.reference_cache_seconds

    def load() -> JsonObject:
        return {"statuses": svc.crm.get_statuses(), "timezone": _account_timezone(svc)}

    # Statuses and zone in one entry, so a typical /orders call costs two CRM requests and
    # one cache read for them.
    reference = svc.caches.reference("statuses-and-zone", ttl, load, cache="statuses")
    groups: JsonObject = {}
    # The status groups only when group names are configured.
    if s.retailcrm_order_group_complete_names or s.retailcrm_order_group_delivery_names:
        groups = svc.caches.reference("status-groups", ttl, svc.crm.get_status_groups)
    # The zone: RetailCRM dates are local time there.
    return reference.get("statuses") or {}, groups, _zone(reference.get("timezone") or "")


def _account_timezone(svc: Services) -> str:
    """``GET /api/v5/settings``'s time zone; ``""`` (read as UTC, logged) when the key may
    not read the settings: the orders are shown all the same."""
    try:
        return svc.crm.account_timezone()
    except (NotFound, UpstreamRejected) as e:  # not UpstreamUnavailable: try again
        log_event("crm_timezone_unreadable", logging.WARNING, error=e)
        return ""


def _zone(name: str) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log_event("crm_timezone_unknown", logging.WARNING, timezone=name[:64])
        return UTC


def list_orders(svc: Services, data: OrdersRequest) -> Answer:
    """The customer's latest visible orders with the bot texts."""
    identity = identity_of(svc, data)
    customer = bound_customer(svc, identity, data.customer_id)
    customer_id = str(customer["id"])
    limit = data.limit or svc.settings.orders_default_limit
    # The references first: cold, their calls go ahead of the line the list waits in.
    statuses, groups, zone = order_statuses(svc)
    orders = mirrored_orders(svc, customer_id)
    if orders is None:  # no current mirror of this customer's orders: as without one
        orders = crm_cache.customer_orders(svc, customer_id, lambda: svc.crm.list_customer_orders(
            customer_id, svc.settings.orders_max_lookback))
    rules, urls = StatusRules.from_settings(svc.settings), tracking_urls(svc.settings)
    shown = []
    for order in sorted(orders, key=lambda o: str(o.get("createdAt") or ""), reverse=True):
        group = status_group(str(order.get("status") or ""), statuses, groups, rules)
        if group is not None:
            shown.append(present_order(order, group, urls, zone))
        if len(shown) == limit:
            break
    mark_interacted(svc, customer, identity)
    if not shown:
        return {"status": "empty", "customerId": customer_id, "shownCount": 0, "orders": [],
                "text": texts.ORDERS_EMPTY}
    return {"status": "ok", "customerId": customer_id, "shownCount": len(shown),
            "orders": shown, "text": orders_text(shown)}


# -- repeat ---------------------------------------------------------------------------
def repeat_order(svc: Services, data: RepeatOrderRequest) -> Answer:
    """Create a new order with the items of one of the customer's orders, once."""
    identity = identity_of(svc, data)
    customer = bound_customer(svc, identity, data.customer_id)
    customer_id = str(customer["id"])
    source = _source_order(svc, data, customer_id)
    token = request_token(identity.channel, identity.account_id, customer_id, source.id)
    windowed = windowed_order(svc, "rep", identity.channel, identity.account_id, customer_id,
                              source.id)
    # The claim carries the slot of the first call of the creation (a replay gives it
    # back); the kept answer, the lease freed and the customer's cached order list
    # dropped go together.
    batch = svc.batch()
    answer = create_once(svc, "repeat", token, lambda lease: _create_repeat(
        svc, lease, identity.channel, customer_id, source, windowed, batch), batch=batch,
        rider=svc.crm.slot_rider())
    batch.send()
    mark_interacted(svc, customer, identity)
    return answer


def _source_order(svc: Services, data: RepeatOrderRequest, customer_id: str) -> Order:
    if data.source_order_id:
        order = svc.crm.get_order(data.source_order_id)
    else:
        found = svc.crm.find_orders_by_number(data.source_order_number or "", customer_id)
        order = found[0] if found else None
    # Someone else's order is answered exactly like a missing one.
    if order is None or order.customer_id != customer_id:
        raise FlowRefusal("order_not_found", status="not_found")
    return order


def unavailable_item(svc: Services, items: list[JsonObject]) -> str | None:
    """Name of the first item whose offer no longer exists or is inactive, else None."""
    # RetailCRM would silently turn an unknown offer into a free-form line, so this check
    # must come before the order is created.
    refs = [(offer_ref(item.get("offer") or {}), item) for item in items]
    ids = [str(r["id"]) for r, _ in refs if r and "id" in r]
    external = [str(r["externalId"]) for r, _ in refs if r and "externalId" in r]
    xml = [str(r["xmlId"]) for r, _ in refs if r and "xmlId" in r]
    offers = svc.crm.find_offers(ids, external, xml)
    known: set[tuple[str, str]] = set()
    for offer in offers:
        if offer.get("active", True) is False:
            continue
        known.update((key, str(offer[key])) for key in ("id", "externalId", "xmlId")
                     if offer.get(key))
    for ref, item in refs:
        if ref is None or not any((k, str(v)) in known for k, v in ref.items()):
            offer = item.get("offer") or {}
            return (offer.get("displayName") or offer.get("name") or item.get("productName")
                    or texts.ITEM_NAME_DEFAULT)
    return None


def _new_number(svc: Services) -> str:
    s = svc.settings
    return f"{s.repeat_order_number_prefix}{secrets.randbelow(10**8):08d}" \
           f"{s.repeat_order_number_suffix}"


def _repeat_payload(svc: Services, channel: str, customer_id: str, source: Order
                    ) -> JsonObject:
    s = svc.settings
    order: JsonObject = {
        "status": s.repeat_order_status,
        "customer": {"id": int(customer_id) if customer_id.isdigit() else customer_id},
        "items": [{"offer": offer_ref(item.get("offer") or {}),
                   "quantity": item.get("quantity", 1)} for item in source.items],
        "customerComment": s.repeat_order_comment_template.format(
            sourceOrderNumber=source.number or source.id,
            sourceOrderId=source.id, channelType=channel),
    }
    raw = source.raw  # the contact and the address are copied on as RetailCRM sent them
    for key in ("firstName", "lastName", "patronymic", "phone", "email"):
        if raw.get(key):
            order[key] = raw[key]
    address = (raw.get("delivery") or {}).get("address")
    if address:
        order["delivery"] = {"address": address}
    return order


def _create_repeat(svc: Services, lease: Lease, channel: str, customer_id: str,
                   source: Order, windowed: WindowedOrder, batch: WriteBatch) -> Answer:
    base: Answer = {"customerId": customer_id, "sourceOrderId": source.id,
            "sourceOrderNumber": source.number or source.id}
    # The store the new order is made in, and where any lookup of it looks.
    site = svc.settings.repeat_order_site or source.site or svc.settings.retailcrm_site
    # An earlier attempt died after choosing its number: its order, if it landed, is the
    # answer, whatever has changed in the catalog since.
    created = _noted_order(svc, lease, customer_id, site)
    if created is None:
        # Redis may have lost the notes: RetailCRM says what was made. The catalog is
        # read at the same time, for the common case that nothing was.
        created, (missing, catalog_failed) = both(
            lambda: order_made_in_window(svc, windowed, site),
            lambda: _unavailable_item_or_failure(svc, source))
        if created is None:
            if catalog_failed is not None:  # only an order still to make needs it
                raise catalog_failed
            if missing is not None or not source.items:
                log_event("repeat_unavailable_item", source_order_id=source.id)
                return {**base, "status": "unavailable_item",
                        "errorCode": "unavailable_item", "unavailableItemName": missing}
            payload = {**_repeat_payload(svc, channel, customer_id, source),
                       "externalId": windowed.external_id}
            created = _create_with_fresh_number(svc, lease, payload, site, customer_id)
    crm_cache.forget_orders(svc, customer_id, batch)
    mirror_order_created(svc, customer_id)
    log_event("repeat_created", source_order_id=source.id, new_order_id=created.id)
    return {**base, "status": "created", "newOrderId": created.id,
            "newOrderNumber": created.number,
            "text": texts.REPEAT_CREATED.format(number=created.number)}


def _unavailable_item_or_failure(svc: Services, source: Order
                                 ) -> tuple[str | None, UpstreamError | CrmBusy | None]:
    try:
        return unavailable_item(svc, list(source.items)), None
    except (UpstreamError, CrmBusy) as e:
        return None, e


def _noted_order(svc: Services, lease: Lease, customer_id: str | None, site: str
                 ) -> CreatedOrder | None:
    """The order created (in store ``site``) under the number an earlier attempt noted,
    if it landed."""
    number = lease.notes.get("number")
    if not number:
        return None
    found = svc.crm.find_orders_by_number(number, customer_id, site)
    if not found:
        return None
    log_event("repeat_found_after_retry", order_id=found[0].id)
    return CreatedOrder(id=found[0].id, number=number)


def _create_with_fresh_number(svc: Services, lease: Lease, payload: JsonObject, site: str,
                              customer_id: str) -> CreatedOrder:
    """Create the order; a taken number is regenerated. Each number is noted before its
    create, so whoever comes next looks it up first. A lost answer (timeout) is resolved
    by looking the number up, never by creating again."""
    retry = lease.notes.get("number")
    for _ in range(_NUMBER_ATTEMPTS):
        # The noted number of an earlier attempt is tried again first: should that
        # attempt's create still land, RetailCRM refuses the same number a second time.
        number, retry = retry or _new_number(svc), None
        lease.note(svc.crm.slot_rider(), number=number)  # with the create's slot
        try:
            created = svc.crm.create_order({**payload, "number": number}, site)
            return CreatedOrder(id=created.id, number=number)
        except UpstreamRejected as e:
            refusal = f"{e.message} {e.errors}".lower()
            if "externalid" in refusal and (found := order_made_in_window(
                    svc, WindowedOrder(payload["externalId"], (payload["externalId"],)),
                    site)):
                return found  # an identical request's create landed meanwhile
            if "number" not in refusal:
                raise  # the API layer answers crm_unavailable
            if found := _noted_order(svc, lease, customer_id, site):
                return found  # taken by our own earlier attempt's order
        except UpstreamUnavailable:
            existing = svc.crm.find_orders_by_number(number, None, site)
            if existing:
                return CreatedOrder(id=existing[0].id, number=number)
            raise
    # Every number tried was taken: an upstream failure, answered by the API layer.
    raise UpstreamRejected("retailcrm", f"order number taken {_NUMBER_ATTEMPTS} times")
