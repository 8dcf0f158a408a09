"""Messenger authorization: /auth/status, start, check, resend, unlink.

Each function takes the parsed request (a dict from the schema) and returns the answer's
fields; refusals are raised as ``FlowRefusal`` and rendered by the API layer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from gurugrow import texts
from gurugrow.flows import crm_cache
from gurugrow.flows.codes import (
    FlowRefusal,
    check_code,
    default_route,
    ensure_resendable,
    issue_code,
    own_session,
    reissue_code,
    sent_answer,
)
from gurugrow.flows.delivery import resend_route
from gurugrow.gateways.errors import UpstreamError
from gurugrow.gateways.retailcrm import custom_fields
from gurugrow.identity import MessengerIdentity, identity_for
from gurugrow.logs import log_event
from gurugrow.otp import OtpSession
from gurugrow.phone import mask_phone, normalize_phone
from gurugrow.services import Services

Answer = dict[str, Any]

def _identity(svc: Services, data: dict[str, Any]) -> MessengerIdentity:
    return identity_for(data["channel"], data["accountId"], svc.settings)


def find_bound_customers(svc: Services, identity: MessengerIdentity) -> list[dict[str, Any]]:
    """CRM customers whose channel field holds this messenger id (raises FlowRefusal)."""
    try:
        return svc.crm.find_customers_by_custom_field(identity.field_code, identity.account_id)
    except UpstreamError as e:
        log_event("crm_binding_lookup_failed", logging.WARNING, channel=identity.channel,
                  error=e)
        raise FlowRefusal("crm_unavailable") from e


def bound_customer(svc: Services, identity: MessengerIdentity,
                   claimed_customer_id: str | None = None, *, fresh: bool = False
                   ) -> dict[str, Any]:
    """The one customer bound to ``identity`` (``{"id", "maskedPhone", "customFields"}``,
    from the binding cache unless ``fresh``); ``claimed_customer_id`` is only checked.

    Raises FlowRefusal: ``not_authorized`` (no binding) or ``conflict`` (several, or the
    claimed id differs).
    """
    customer = crm_cache.NOT_CACHED if fresh else crm_cache.cached_binding(svc, identity)
    if customer is crm_cache.NOT_CACHED:
        customer = _lookup_binding(svc, identity)
    if customer is crm_cache.NO_BINDING:
        raise FlowRefusal("not_authorized", status="not_authorized")
    if claimed_customer_id and claimed_customer_id != str(customer["id"]):
        raise FlowRefusal("customer_mismatch", status="conflict")
    return customer


def _lookup_binding(svc: Services, identity: MessengerIdentity) -> Any:
    """Ask RetailCRM who holds the messenger id; cache the answer (not a conflict)."""
    customers = find_bound_customers(svc, identity)
    if len(customers) > 1:
        log_event("binding_conflict", logging.WARNING, channel=identity.channel,
                  customers=len(customers))
        raise FlowRefusal("conflict", status="conflict")
    if not customers:
        crm_cache.remember_binding(svc, identity, None)
        return crm_cache.NO_BINDING
    code = svc.settings.retailcrm_cf_chatbot_interacted
    interacted = str(custom_fields(customers[0]).get(code, "")).lower() in ("true", "1")
    entry = crm_cache.binding_entry(customers[0]["id"], customer_masked_phone(customers[0]),
                                    interacted, code)
    crm_cache.remember_binding(svc, identity, entry)
    return entry


def customer_masked_phone(customer: dict[str, Any]) -> str | None:
    if "maskedPhone" in customer:  # a binding entry
        return customer["maskedPhone"]
    for entry in customer.get("phones") or []:
        phone = normalize_phone(str(entry.get("number", "")))
        if phone:
            return mask_phone(phone)
    return None


def remember_new_binding(svc: Services, identity: MessengerIdentity, customer_id: str,
                         phone: str) -> None:
    """This service just bound the account (binding written with chatbot_interacted)."""
    crm_cache.remember_binding(svc, identity, crm_cache.binding_entry(
        customer_id, mask_phone(phone), True, svc.settings.retailcrm_cf_chatbot_interacted))


def status(svc: Services, data: dict[str, Any]) -> Answer:
    """Is this messenger account bound to exactly one customer?"""
    customer = bound_customer(svc, _identity(svc, data), data.get("customerId"))
    return {"status": "authorized", "customerId": str(customer["id"]),
            "maskedPhone": customer_masked_phone(customer)}


def start(svc: Services, data: dict[str, Any]) -> Answer:
    """Send a code to the phone's customer; an unknown phone gets the same answer, no code."""
    identity = _identity(svc, data)
    session = issue_code(svc, identity, data["phone"], data.get("deliveryRoute"),
                         client_ip=data.get("clientIp"))
    # Deliberately the same line for a decoy: logs must not tell who is a customer.
    log_event("auth_started", channel=identity.channel, phone=mask_phone(session.phone))
    return sent_answer(svc, session)


def check(svc: Services, data: dict[str, Any]) -> Answer:
    """Verify the code, then bind the messenger account to the session's customer.

    A replay of the same code by the same identity gets the same answer, no new write.
    """
    identity = _identity(svc, data)

    def bind(session: OtpSession) -> Answer:
        customer_id = str(session.customer_id)
        verified_until = bind_identity(svc, identity, customer_id, session.route)
        remember_new_binding(svc, identity, customer_id, session.phone)
        log_event("auth_checked", channel=identity.channel, customer_id=customer_id)
        return {"status": "authorized", "authorized": True, "customerId": customer_id,
                "verifiedUntil": verified_until, "maskedPhone": mask_phone(session.phone)}

    return check_code(svc, identity, data["sessionId"], data["code"], "auth", bind)


def binding_fields(svc: Services, identity: MessengerIdentity, method: str | None
                   ) -> tuple[dict[str, str], str]:
    """The custom fields a verified binding writes, and its ``verifiedUntil``."""
    now = datetime.fromtimestamp(svc.clock(), UTC).replace(microsecond=0)
    s = svc.settings
    fields = {
        identity.field_code: identity.account_id,
        s.retailcrm_cf_last_verified_channel: identity.channel,
        s.retailcrm_cf_last_verified_at: _iso(now),
        s.retailcrm_cf_last_verification_method: method or "",
        s.retailcrm_cf_chatbot_interacted: "true",
    }
    return fields, _iso(now + timedelta(days=s.auth_verified_days))


def bind_identity(svc: Services, identity: MessengerIdentity, customer_id: str,
                  method: str | None) -> str:
    """Write the binding and service fields in one CRM call; return ``verifiedUntil``.

    Refuses with ``conflict`` (nothing written) when another customer holds the id.
    """
    holders = find_bound_customers(svc, identity)
    if any(str(c["id"]) != customer_id for c in holders):
        log_event("binding_conflict", logging.WARNING, channel=identity.channel,
                  customers=len(holders))
        raise FlowRefusal("conflict", status="conflict")
    fields, verified_until = binding_fields(svc, identity, method)
    try:
        svc.crm.edit_customer_custom_fields(customer_id, fields)
    except UpstreamError as e:
        log_event("crm_bind_failed", logging.WARNING, customer_id=customer_id, error=e)
        raise FlowRefusal("crm_unavailable") from e
    return verified_until


def resend(svc: Services, data: dict[str, Any], purpose: str = "auth") -> Answer:
    """A new code for a live session, after the cooldown and within the send caps.

    Only for the messenger identity and the purpose the session was started for; any
    other caller is told the session does not exist.
    """
    # A session whose code was never sent (an unknown phone's decoy) sends nothing now
    # either: reissue_code follows the session's recorded "sent" flag.
    session = own_session(svc, data["sessionId"], data.get("channel"), data.get("accountId"),
                          purpose)
    ensure_resendable(svc, session)
    route = data.get("deliveryRoute") or default_route(session.channel)
    # An undelivered messenger code is replaced by SMS, without waiting for the cooldown.
    route, replaces_undelivered = resend_route(svc, session, route)
    sent = reissue_code(svc, session, route, client_ip=data.get("clientIp"),
                        cooldown=not replaces_undelivered)
    masked = mask_phone(session.phone)
    log_event("code_resent", channel=session.channel, phone=masked)
    return {"status": "sent", "maskedPhone": masked,
            "retryAfterSec": svc.settings.otp_resend_cooldown_seconds,
            "deliveryRoute": sent.route}


def unlink(svc: Services, data: dict[str, Any]) -> Answer:
    """Clear only the channel field of the customer bound to this messenger account."""
    identity = _identity(svc, data)
    customer = bound_customer(svc, identity, data.get("customerId"), fresh=True)
    customer_id = str(customer["id"])
    try:
        svc.crm.edit_customer_custom_fields(customer_id, {identity.field_code: ""})
    except UpstreamError as e:
        log_event("crm_unlink_failed", logging.WARNING, customer_id=customer_id, error=e)
        raise FlowRefusal("crm_unavailable") from e
    crm_cache.forget_binding(svc, identity)
    log_event("auth_unlinked", channel=identity.channel, customer_id=customer_id)
    return {"status": "unlinked", "customerId": customer_id, "channelType": identity.channel,
            "text": texts.UNLINKED}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
