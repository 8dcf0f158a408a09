"""Recommended-set orders: preview and create (authorized), start and check (by code)."""

from __future__ import annotations

import logging
import re

from gurugrow import texts
from gurugrow.basics.catalog import RecommendedSet, find_set
from gurugrow.basics.errors import (
    CrmBusy,
    DeadlineExceeded,
    FlowRefusal,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject, JsonValue
from gurugrow.basics.phone import mask_phone, normalize_phone
from gurugrow.flows import crm_cache
from gurugrow.flows.binding import (
    FieldSeen,
    bind_identity,
    binding_fields,
    bound_customer,
    find_bound_customers,
    mark_interacted,
    one_binding_at_a_time,
    remember_new_binding,
)
from gurugrow.flows.codes import check_code, issue_code, resend_code, sent_answer
from gurugrow.flows.mirror import mirror_order_created
from gurugrow.flows.order_once import create_once, request_token
from gurugrow.flows.order_window import WindowedOrder, order_made_in_window, windowed_order
from gurugrow.flows.requests import (
    CheckRequest,
    PreviewRequest,
    RecommendedCreateRequest,
    RecommendedStartRequest,
    ResendRequest,
)
from gurugrow.flows.vocabulary import Answer, identity_of
from gurugrow.gateways.retailcrm import CreatedOrder, Customer, offer_ref
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.once import Lease
from gurugrow.stores.otp import OtpSession

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _set(svc: Services, data: PreviewRequest) -> RecommendedSet:
    found = find_set(data.offer_code, svc.sets)
    if found is None:
        raise FlowRefusal("unknown_offer")
    return found


def clean_email(raw: str | None) -> str | None:
    """The email if it looks valid; an invalid one is dropped, not an error."""
    email = (raw or "").strip()
    return email if _EMAIL.match(email) and len(email) <= 100 else None


def resolve_bundle(svc: Services, bundle: RecommendedSet) -> JsonObject:
    """The active catalog offer of the bundle article, as ``{id|externalId|xmlId: ...}``."""
    # ``filter[name]`` is fuzzy, so the article is compared locally. Cached in Redis.
    offer = bundle_catalog_entry(svc, bundle)["offer"]
    if offer is None:  # the catalog has no active match: FlowRefusal("bundle_unavailable")
        log_event("bundle_unavailable", logging.WARNING, article=bundle.bundle_article)
        raise FlowRefusal("bundle_unavailable")
    return offer


def bundle_catalog_entry(svc: Services, bundle: RecommendedSet) -> JsonObject:
    """``{"offer": ref or None, "price": text or None}`` of the bundle article's active
    catalog offer (``/api/v5/store/products``; ``filter[name]`` is fuzzy, so the article
    is compared locally). Cached in Redis for REFERENCE_CACHE_SECONDS."""
    def load() -> JsonObject:
        products = svc.crm.find_products_by_name(bundle.bundle_article)
        found = bundle_offer(products, bundle.bundle_article)
        return {"offer": offer_ref(found) if found else None,
                "price": offer_price(found) if found else None}

    entry = svc.caches.bundle_offer(bundle.bundle_article, svc.settings.reference_cache_seconds,
                                    load)
    return {"offer": entry.get("offer"), "price": entry.get("price")}


def bundle_offer(products: list[JsonObject], article: str) -> JsonObject | None:
    """The first active offer of an active product whose article is ``article``."""
    for product in products:
        if not isinstance(product, dict) or product.get("active") is False:
            continue
        for offer in product.get("offers") or []:
            if not isinstance(offer, dict) or offer.get("active") is False:
                continue
            if article in (offer.get("article"), product.get("article")) and offer_ref(offer):
                return offer
    return None


# RetailCRM's currency codes as a customer reads them (others are shown as the code).
_CURRENCY_SIGNS = {"RUB": "₽", "KZT": "₸", "BYN": "Br", "USD": "$", "EUR": "€"}


def _ordering(value: JsonValue) -> int:
    return value if isinstance(value, int) else 1 << 30


def offer_price(offer: JsonObject) -> str | None:
    """The offer's price as a customer reads it ("1 990 ₽"), or None when the catalog gives none."""
    # RetailCRM lists ``prices`` (``{priceType, price, ordering, currency}``, the lowest
    # ``ordering`` first) and the base ``price``; neither is in the reference we have, so
    # both are read defensively and a missing or non-numeric one is no price.
    candidates = [p for p in offer.get("prices") or [] if isinstance(p, dict)]
    candidates.sort(key=lambda p: _ordering(p.get("ordering")))
    for amount, currency in [(p.get("price"), p.get("currency")) for p in candidates] + [
            (offer.get("price"), offer.get("currency"))]:
        if isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0:
            number = f"{amount:,.2f}".rstrip("0").rstrip(".").replace(",", "\u00a0")
            sign = _CURRENCY_SIGNS.get(str(currency or "RUB").upper(), str(currency))
            return f"{number}\u00a0{sign}"
    return None


def preview(svc: Services, data: PreviewRequest) -> Answer:
    """The set's text for an authorized customer."""
    customer = bound_customer(svc, identity_of(svc, data), data.customer_id)
    bundle = _set(svc, data)
    components = "\n".join(texts.RECOMMENDED_COMPONENT.format(name=c) for c in bundle.components)
    text = texts.RECOMMENDED_PREVIEW.format(title=bundle.title, components=components)
    price = _preview_price(svc, bundle)
    if price:
        text = texts.RECOMMENDED_PREVIEW_PRICED.format(title=bundle.title, price=price,
                                                       components=components)
    return {"status": "ok", "customerId": str(customer["id"]), "offerCode": bundle.offer_code,
            "title": bundle.title, "text": text}


def _preview_price(svc: Services, bundle: RecommendedSet) -> str | None:
    """The set's price from RetailCRM's catalog, or None (no price there, or the catalog
    not readable now, or no RetailCRM slot in time: the preview is still shown, without a
    price)."""
    try:
        return bundle_catalog_entry(svc, bundle)["price"]
    except (UpstreamError, CrmBusy) as e:
        log_event("bundle_price_unread", logging.WARNING, article=bundle.bundle_article,
                  error=e)
        return None


def _recipient(data: RecommendedCreateRequest) -> JsonObject:
    return {"firstName": data.first_name, "lastName": data.last_name,
            "phone": data.phone, "email": clean_email(data.email)}


def create(svc: Services, data: RecommendedCreateRequest) -> Answer:
    """Order the set for the customer bound to this messenger account, once."""
    identity = identity_of(svc, data)
    customer = bound_customer(svc, identity, data.customer_id)
    bundle = _set(svc, data)
    customer_id = str(customer["id"])
    recipient = _recipient(data)
    token = request_token(identity.channel, identity.account_id, customer_id, bundle.offer_code,
                    *(str(v) for v in recipient.values()))
    windowed = windowed_order(svc, "rec", identity.channel, identity.account_id, customer_id,
                              bundle.offer_code, *(str(v) for v in recipient.values()))
    answer = _place_once(svc, token, bundle, customer_id, recipient, windowed)
    mark_interacted(svc, customer, identity)
    return answer


def start(svc: Services, data: RecommendedStartRequest) -> Answer:
    """Send a code to a not-yet-authorized customer and remember what to order."""
    identity = identity_of(svc, data)
    bundle = _set(svc, data)
    resolve_bundle(svc, bundle)  # no code is sent for a set that cannot be ordered
    session = issue_code(svc, identity, data.phone, data.delivery_route,
                         client_ip=data.client_ip, purpose="recommended",
                         send_to_unknown=True,
                         payload={"offerCode": bundle.offer_code, **_recipient(data)})
    log_event("recommended_started", channel=identity.channel,
              phone=mask_phone(session.phone), offer_code=bundle.offer_code)
    return sent_answer(svc, session)


def check(svc: Services, data: CheckRequest) -> Answer:
    """Verify the code; create the customer if needed, bind the account, order the set.

    A replay of the same code by the same identity gets the same order back.
    """
    identity = identity_of(svc, data)
    return check_code(svc, identity, data.session_id, data.code, "recommended",
                      lambda session: _complete(svc, identity, session),
                      done=lambda answer: answer["status"] == "created")


def resend(svc: Services, data: ResendRequest) -> Answer:
    """/orders/recommended/resend: an alias of /auth/resend (``codes.resend_code``)."""
    return resend_code(svc, data)


def _complete(svc: Services, identity: MessengerIdentity, session: OtpSession) -> Answer:
    payload = session.payload
    bundle = find_set(payload["offerCode"], svc.sets)
    if bundle is None:
        raise FlowRefusal("unknown_offer")
    recipient = {k: payload.get(k) for k in ("firstName", "lastName", "phone", "email")}
    if session.customer_id is None:  # nobody had this phone: the customer is created now
        customer_id, verified_until = _new_customer_once(svc, identity, session, recipient,
                                                          bundle)
        svc.otp.remember_customer(session, customer_id)
    else:
        verified_until = bind_identity(svc, identity, session.customer_id, session.method,
                                       FieldSeen.of_session(session))
    remember_new_binding(svc, identity, str(session.customer_id), session.phone)
    answer = _place_once(svc, request_token("session", session.session_id), bundle,
                         str(session.customer_id), recipient)
    return {**answer, "authorized": True, "verifiedUntil": verified_until}


def _created_by_earlier_attempt(holders: list[Customer], phone: str) -> bool:
    """One customer bound to the identity, with the session's phone: the one an earlier
    attempt of this check created."""
    return len(holders) == 1 and any(normalize_phone(number) == phone
                                     for number in holders[0].phones)


def order_site(svc: Services, bundle: RecommendedSet) -> str:
    """The store a set's orders (and the customers they create) go to: the set's own,
    else RECOMMENDED_ORDER_SITE, else RETAILCRM_SITE (the gateway's)."""
    return bundle.site or svc.settings.recommended_order_site or svc.settings.retailcrm_site


def customer_external_id(session: OtpSession) -> str:
    """The externalId of the customer a recommended check creates: derived from its
    session, so every attempt of that check names the same customer."""
    return f"bot-cust-{request_token('customer', session.session_id)}"


def _new_customer_once(svc: Services, identity: MessengerIdentity, session: OtpSession,
                       recipient: JsonObject, bundle: RecommendedSet
                       ) -> tuple[str, str]:
    """The customer this check creates, created once whatever is killed when; its id and
    ``verifiedUntil``.

    The customer is noted in the session before ``customers/create``, under an externalId
    derived from the session (unique in its store). An attempt that finds the note looks
    the customer up in that store first; a create that fails or is refused (the earlier
    attempt's create landed meanwhile) looks it up too.
    """
    site = order_site(svc, bundle)
    external_id = customer_external_id(session)
    verified_until = binding_fields(svc, identity, session.method)[1]
    if session.creating_customer and (
            found := svc.crm.get_customer_by_external_id(external_id, site)) is not None:
        log_event("customer_found_by_external_id", customer_id=found.id)
        return found.id, verified_until

    def create(_waited: bool) -> tuple[str, str]:
        holders = find_bound_customers(svc, identity)
        if _created_by_earlier_attempt(holders, session.phone):
            # An earlier check of this code died between creating the (already bound)
            # customer and remembering it: that customer is the one, not a conflict.
            return holders[0].id, verified_until
        if holders:
            raise FlowRefusal("conflict", status="conflict")
        svc.otp.note_creating_customer(session, external_id)
        try:
            return _create_customer(svc, identity, session, recipient, bundle,
                                    external_id)
        except UpstreamError:
            try:
                found = svc.crm.get_customer_by_external_id(external_id, site)
            except UpstreamError:
                found = None  # unknown whether it landed: the next attempt looks again
            if found is None:
                raise
            return found.id, verified_until

    return one_binding_at_a_time(svc, identity, create)


def _create_customer(svc: Services, identity: MessengerIdentity, session: OtpSession,
                     recipient: JsonObject, bundle: RecommendedSet,
                     external_id: str) -> tuple[str, str]:
    """Create the customer already bound (one CRM call); return its id and verifiedUntil."""
    fields, verified_until = binding_fields(svc, identity, session.method)
    customer = {
        "externalId": external_id,
        "firstName": recipient.get("firstName") or "", "lastName": recipient.get("lastName") or "",
        "phones": [{"number": session.phone}],
        "customFields": fields,
    }
    if recipient.get("email"):
        customer["email"] = recipient["email"]
    customer_id = svc.crm.create_customer(customer, order_site(svc, bundle))
    log_event("customer_created", customer_id=customer_id, channel=identity.channel)
    return customer_id, verified_until


def _place_once(svc: Services, token: str, bundle: RecommendedSet, customer_id: str,
                recipient: JsonObject, windowed: WindowedOrder | None = None) -> Answer:
    return create_once(svc, "recommended", token,
                       lambda lease: _place(svc, lease, token, bundle, customer_id, recipient,
                                            windowed))


def _place(svc: Services, lease: Lease, token: str, bundle: RecommendedSet, customer_id: str,
           recipient: JsonObject, windowed: WindowedOrder | None) -> Answer:
    """Create the set's order once. A check's order is named by its session (``token``);
    a create's by what it is and its window (``windowed``), looked up in RetailCRM before
    creating, as Redis may have lost the run-once marker."""
    site = order_site(svc, bundle)
    base: Answer = {"customerId": customer_id, "offerCode": bundle.offer_code}
    external_id = windowed.external_id if windowed else f"bot-rec-{token}"
    created = None
    if windowed is not None:
        created = order_made_in_window(svc, windowed, site)
    elif lease.resumed:  # an earlier attempt died or failed: its order, if it landed
        created = _existing(svc, external_id, site)
    if created is None:
        offer = resolve_bundle(svc, bundle)
        order: JsonObject = {
            # externalId makes the create itself idempotent: RetailCRM refuses a second one.
            "externalId": external_id,
            "status": bundle.status or svc.settings.recommended_order_status,
            "customer": {"id": int(customer_id) if customer_id.isdigit() else customer_id},
            "items": [{"offer": offer, "quantity": 1}],
            "customerComment": texts.RECOMMENDED_COMMENT.format(offerCode=bundle.offer_code),
        }
        order.update({k: v for k, v in recipient.items() if v})
        created = _create_order_retrying_once(svc, order, site)
    if created is None:
        return {**base, "status": "error", "errorCode": "order_failed",
                "text": texts.MANAGER_HANDOFF}
    number = created.number or created.id
    crm_cache.forget_orders(svc, customer_id)
    mirror_order_created(svc, customer_id)
    log_event("recommended_created", order_id=created.id, offer_code=bundle.offer_code)
    return {**base, "status": "created", "orderId": created.id, "orderNumber": number,
            "text": texts.RECOMMENDED_CREATED.format(number=number)}


def _create_order_retrying_once(svc: Services, order: JsonObject, site: str
                                ) -> CreatedOrder | None:
    """Create, retrying one transient failure; a lost answer is found by externalId."""
    for attempt in (1, 2):
        try:
            return svc.crm.create_order(order, site)
        except DeadlineExceeded:
            raise  # no time to find out: in_progress, the repeat looks it up
        except UpstreamRejected as e:
            existing = _existing(svc, order["externalId"], site)
            if existing:  # our first attempt did land
                return existing
            log_event("recommended_create_rejected", logging.WARNING, error=e)
            return None
        except UpstreamUnavailable as e:
            existing = _existing(svc, order["externalId"], site)
            if existing:
                return existing
            log_event("recommended_create_failed", logging.WARNING, attempt=attempt, error=e)
    return None


def _existing(svc: Services, external_id: str, site: str) -> CreatedOrder | None:
    """The order with ``external_id`` in store ``site``, the one it was created in
    (RetailCRM looks an externalId up only within the store named)."""
    try:
        found = svc.crm.get_order_by_external_id(external_id, site)
    except UpstreamError:
        return None  # unknown whether it landed: the caller's own failure answer stands
    return CreatedOrder(id=found.id, number=found.number) if found is not None else None
