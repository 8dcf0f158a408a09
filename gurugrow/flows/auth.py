"""Messenger authorization: /auth/status, start, check, resend, unlink.

Each function takes the parsed request (a dict from the schema) and returns the answer's
fields; refusals are raised as ``FlowRefusal`` and rendered by the API layer.
"""

from __future__ import annotations

import logging

from gurugrow import metrics, texts
from gurugrow.basics.errors import FlowRefusal
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.phone import mask_phone
from gurugrow.flows.binding import (
    FieldSeen,
    bind_identity,
    bound_customer,
    customer_masked_phone,
    drop_binding,
    hold_ahead,
    remember_new_binding,
)
from gurugrow.flows.codes import (
    check_code,
    find_customer_by_phone,
    issue_code,
    refused_by_limits,
    resend_code,
    returned_on_failure,
    sent_answer,
)
from gurugrow.flows.order_once import create_once, request_token
from gurugrow.flows.requests import (
    CheckRequest,
    ContactRequest,
    CustomerRequest,
    ResendRequest,
    StartRequest,
)
from gurugrow.flows.vocabulary import Answer, identity_of
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.client import WriteBatch
from gurugrow.stores.once import ClaimAhead
from gurugrow.stores.otp import OtpSession


def status(svc: Services, data: CustomerRequest) -> Answer:
    """Is this messenger account bound to exactly one customer?"""
    customer = bound_customer(svc, identity_of(svc, data), data.customer_id)
    return {"status": "authorized", "customerId": str(customer["id"]),
            "maskedPhone": customer_masked_phone(customer)}


def start(svc: Services, data: StartRequest) -> Answer:
    """Send a code to the phone's customer; an unknown phone gets the same answer, no code."""
    identity = identity_of(svc, data)
    session = issue_code(svc, identity, data.phone, data.delivery_route,
                         client_ip=data.client_ip)
    # Deliberately the same line for a decoy: logs must not tell who is a customer.
    log_event("auth_started", channel=identity.channel, phone=mask_phone(session.phone))
    return sent_answer(svc, session)


def _bind(svc: Services, identity: MessengerIdentity, customer_id: str, phone: str,
          method: str | None, seen: FieldSeen | None, batch: WriteBatch,
          ahead: ClaimAhead | None = None) -> Answer:
    """Bind the account to the verified phone's customer: /auth/check's answer. The
    binding's own Redis writes go with ``batch``; ``ahead``: its hold, claimed already."""
    verified_until = bind_identity(svc, identity, customer_id, method, seen, batch, ahead)
    log_event("auth_checked", channel=identity.channel, customer_id=customer_id,
              method=method)
    return {"status": "authorized", "authorized": True, "customerId": customer_id,
            "verifiedUntil": verified_until, "maskedPhone": mask_phone(phone)}


def check(svc: Services, data: CheckRequest) -> Answer:
    """Verify the code, then bind the messenger account to the session's customer.

    A replay of the same code by the same identity gets the same answer, no new write.
    """
    identity = identity_of(svc, data)
    # The account's binding hold is claimed in the code check's round trip, and one
    # round trip ends it all: the code's stored answer, the new binding cached, and the
    # hold freed (with an account it cut off dropped).
    ahead, batch = hold_ahead(svc, identity), svc.batch()

    def bind(session: OtpSession) -> Answer:
        return _bind(svc, identity, str(session.customer_id), session.phone, session.method,
                     FieldSeen.of_session(session), batch, ahead)

    def cache_binding(session: OtpSession, batch: WriteBatch) -> None:
        remember_new_binding(svc, identity, str(session.customer_id), session.phone, batch)

    return check_code(svc, identity, data.session_id, data.code, "auth", bind,
                      also=cache_binding, batch=batch, ahead=ahead)


def contact(svc: Services, data: ContactRequest) -> Answer:
    """Bind by a contact the messenger verified: the user shared their own phone.

    Only for CONTACT_VERIFIED_CHANNELS, and only when the contact's user id is the
    caller's own messenger id (``contact_not_own`` otherwise, nothing written). Then as a
    successful /auth/check: the phone's customer (the deduper for several), the binding
    fields, method ``<channel>_contact``. A replay within OTP_TTL_SECONDS gets the same
    answer; the binding is written once.
    """
    identity = identity_of(svc, data)
    if identity.channel not in svc.settings.contact_verified_channels:
        raise FlowRefusal("contact_channel_not_allowed")
    # The contact's user id must be the sender's own: any of the identity fields it sent.
    if data.contact_user_id not in data.account_ids:
        log_event("contact_refused", logging.WARNING, channel=identity.channel,
                  reason="not_own")
        raise FlowRefusal("contact_not_own")
    phone = data.phone
    token = request_token(identity.channel, identity.account_id, phone)
    return create_once(svc, "contact", token,
                       lambda lease: _bind_contact(svc, identity, phone, token,
                                                   data.client_ip),
                       kept_status="authorized", window=svc.settings.otp_ttl_seconds)


def _bind_contact(svc: Services, identity: MessengerIdentity, phone: str, token: str,
                  client_ip: str | None) -> Answer:
    # The phone lookup's RetailCRM slot rides on the admission's round trip.
    with refused_by_limits(phone, client_ip):
        admission = svc.limits.admit_contact(identity.channel, identity.account_id, client_ip,
                                             rider=svc.crm.slot_rider())
    with returned_on_failure(svc, admission):  # a CRM or deduper failure costs nothing
        read_at = svc.clock()  # before the read: a binding written meanwhile is later
        customer = find_customer_by_phone(svc, phone)
    if customer is None:
        log_event("contact_unknown_phone", channel=identity.channel, phone=mask_phone(phone))
        raise FlowRefusal("customer_not_found", status="not_found", maskedPhone=mask_phone(phone))
    method = f"{identity.channel}_contact"
    # A CRM or Redis failure while binding gives the counters back too; a refusal the
    # binding earned (a conflict) keeps them.
    with returned_on_failure(svc, admission, keep_on=(FlowRefusal,)):
        held = customer.field(identity.field_code)
        # The binding's own writes, its cache and, for unlink, the kept answer: together.
        batch = svc.batch()
        answer = _bind(svc, identity, customer.id, phone, method,
                       None if held is None else FieldSeen(held, read_at), batch)
        remember_new_binding(svc, identity, customer.id, phone, batch)
        svc.caches.put_contact_token(identity.channel, identity.account_id, token,
                                     svc.settings.otp_ttl_seconds, batch)
        batch.send()
    metrics.VERIFICATIONS.labels(method).inc()
    return answer


def resend(svc: Services, data: ResendRequest) -> Answer:
    """A new code for any pending session, recommended ones too (``codes.resend_code``)."""
    return resend_code(svc, data)


def unlink(svc: Services, data: CustomerRequest) -> Answer:
    """Clear only the channel field of the customer bound to this messenger account."""
    identity = identity_of(svc, data)
    customer = bound_customer(svc, identity, data.customer_id, fresh=True)
    customer_id = str(customer["id"])
    svc.crm.edit_customer_custom_fields(customer_id, {identity.field_code: ""})
    # The cached binding goes, and with it a contact binding's kept answer (shared again,
    # the contact binds again), and the mirrored binding.
    drop_binding(svc, identity, customer_id)
    log_event("auth_unlinked", channel=identity.channel, customer_id=customer_id)
    return {"status": "unlinked", "customerId": customer_id, "channelType": identity.channel,
            "text": texts.UNLINKED}

