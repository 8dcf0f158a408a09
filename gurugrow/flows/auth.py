"""Messenger authorization: /auth/status, start, check, resend, unlink.

Each function takes the parsed request (a dict from the schema) and returns the answer's
fields; refusals are raised as ``FlowRefusal`` and rendered by the API layer.
"""

from __future__ import annotations

from typing import Any

from gurugrow import texts
from gurugrow.flows import crm_cache
from gurugrow.flows.binding import (
    bind_identity,
    bound_customer,
    customer_masked_phone,
    remember_new_binding,
)
from gurugrow.flows.codes import check_code, issue_code, resend_code, sent_answer
from gurugrow.flows.mirror import mirror_unlinked
from gurugrow.flows.vocabulary import Answer, identity_of
from gurugrow.logs import log_event
from gurugrow.otp import OtpSession
from gurugrow.phone import mask_phone
from gurugrow.services import Services
from gurugrow.storage import WriteBatch


def status(svc: Services, data: dict[str, Any]) -> Answer:
    """Is this messenger account bound to exactly one customer?"""
    customer = bound_customer(svc, identity_of(svc, data), data.get("customerId"))
    return {"status": "authorized", "customerId": str(customer["id"]),
            "maskedPhone": customer_masked_phone(customer)}


def start(svc: Services, data: dict[str, Any]) -> Answer:
    """Send a code to the phone's customer; an unknown phone gets the same answer, no code."""
    identity = identity_of(svc, data)
    session = issue_code(svc, identity, data["phone"], data.get("deliveryRoute"),
                         client_ip=data.get("clientIp"))
    # Deliberately the same line for a decoy: logs must not tell who is a customer.
    log_event("auth_started", channel=identity.channel, phone=mask_phone(session.phone))
    return sent_answer(svc, session)


def check(svc: Services, data: dict[str, Any]) -> Answer:
    """Verify the code, then bind the messenger account to the session's customer.

    A replay of the same code by the same identity gets the same answer, no new write.
    """
    identity = identity_of(svc, data)

    def bind(session: OtpSession) -> Answer:
        customer_id = str(session.customer_id)
        verified_until = bind_identity(svc, identity, customer_id, session.route)
        log_event("auth_checked", channel=identity.channel, customer_id=customer_id)
        return {"status": "authorized", "authorized": True, "customerId": customer_id,
                "verifiedUntil": verified_until, "maskedPhone": mask_phone(session.phone)}

    def cache_binding(session: OtpSession, batch: WriteBatch) -> None:
        remember_new_binding(svc, identity, str(session.customer_id), session.phone, batch)

    return check_code(svc, identity, data["sessionId"], data["code"], "auth", bind,
                      also=cache_binding)


def resend(svc: Services, data: dict[str, Any]) -> Answer:
    """A new code for a session of /auth/start (see ``codes.resend_code``)."""
    return resend_code(svc, data, purpose="auth")


def unlink(svc: Services, data: dict[str, Any]) -> Answer:
    """Clear only the channel field of the customer bound to this messenger account."""
    identity = identity_of(svc, data)
    customer = bound_customer(svc, identity, data.get("customerId"), fresh=True)
    customer_id = str(customer["id"])
    svc.crm.edit_customer_custom_fields(customer_id, {identity.field_code: ""})
    crm_cache.forget_binding(svc, identity)
    mirror_unlinked(svc, identity, customer_id)
    log_event("auth_unlinked", channel=identity.channel, customer_id=customer_id)
    return {"status": "unlinked", "customerId": customer_id, "channelType": identity.channel,
            "text": texts.UNLINKED}
