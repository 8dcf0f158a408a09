"""Issuing a code: who the phone belongs to, throttles, and delivery with SMS fallback.

Shared by /auth/start, /auth/resend and the recommended-order start.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gurugrow import metrics, texts
from gurugrow.flows.delivery import track_send
from gurugrow.gateways.errors import UpstreamError
from gurugrow.identity import MessengerIdentity
from gurugrow.limits import LimitExceeded
from gurugrow.logs import log_event
from gurugrow.otp import OtpSession
from gurugrow.phone import mask_phone
from gurugrow.services import Services

T = TypeVar("T")

# The route that accepted the code, as stored in bot_last_verification_method.
ROUTE_METHODS = {"telegram": "telegram_otp", "vk": "vk_otp", "sms": "sms_otp"}
METHOD_ROUTES = {method: route for route, method in ROUTE_METHODS.items()}


@dataclass(frozen=True)
class Sent:
    """What took a code: its route and GreenSMS's request id (None: a decoy, nothing
    went out)."""

    route: str
    request_id: str | None

    @property
    def method(self) -> str:
        """The route as bot_last_verification_method names it."""
        return ROUTE_METHODS[self.route]


class FlowRefusal(Exception):
    """A contract outcome other than success: answered as ``status`` + ``errorCode``."""

    def __init__(self, error_code: str, status: str = "error", **fields: object) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.status = status
        self.fields = fields


def default_route(channel: str | None) -> str:
    """Telegram and VK users get the code in their messenger first; others by SMS."""
    return channel if channel in ("telegram", "vk") else "sms"


def find_customer_id_by_phone(svc: Services, phone: str) -> str | None:
    """The one CRM customer of ``phone`` (deduper for several), or None for nobody.

    Raises FlowRefusal when the CRM fails or the duplicates cannot be resolved.
    """
    try:
        customers = svc.crm.find_customers_by_phone(phone)
    except UpstreamError as e:
        log_event("crm_lookup_failed", logging.WARNING, phone=mask_phone(phone), error=e)
        raise FlowRefusal("crm_unavailable") from e
    if not customers:
        return None
    if len(customers) == 1:
        return str(customers[0]["id"])
    try:
        result = svc.deduper.auto_resolve(phone, svc.settings.retailcrm_site, str(uuid.uuid4()))
    except UpstreamError as e:
        log_event("dedupe_failed", logging.WARNING, phone=mask_phone(phone), error=e)
        raise FlowRefusal("dedupe_failed") from e
    log_event("dedupe_answer", phone=mask_phone(phone), status=result.status,
              candidates=len(customers))
    if not result.usable:
        raise FlowRefusal("dedupe_failed")
    return result.final_customer_id


def deliver_code(svc: Services, phone: str, code: str, route: str) -> Sent:
    """Send ``code`` by ``route``, falling back to SMS; return what took it.

    Raises FlowRefusal("delivery_failed") when no route accepted the code.
    """
    routes = [route] if route == "sms" else [route, "sms"]
    for attempt in routes:
        try:
            request_id = svc.sms.send_code(attempt, phone, code,
                                           texts.SMS_CODE.format(code=code))
        except UpstreamError as e:
            log_event("code_delivery_failed", logging.WARNING, route=attempt,
                      phone=mask_phone(phone), error=e)
            continue
        log_event("code_sent", route=attempt, phone=mask_phone(phone),
                  fallback=attempt != route)
        metrics.CODES_SENT.labels(attempt).inc()
        if attempt != route:
            metrics.SMS_FALLBACKS.labels(route).inc()
        return Sent(attempt, request_id)
    raise FlowRefusal("delivery_failed")


def take_send_allowance(svc: Services, phone: str, channel: str, account_id: str,
                        client_ip: str | None, *, cooldown: bool = True) -> None:
    """Apply every send limit before any code goes out (and before the phone is looked
    up, so a refusal says nothing about whether the phone is a customer).

    ``cooldown=False`` only to replace a messenger code that was not delivered."""
    try:
        svc.limits.check_region(phone)
        svc.limits.admit_send(phone, channel, account_id, client_ip, cooldown=cooldown)
    except LimitExceeded as e:
        masked = mask_phone(phone)
        log_event("limit_refused", logging.WARNING, kind=e.kind, phone=masked, ip=client_ip)
        metrics.LIMIT_REFUSALS.labels(e.kind).inc()
        raise FlowRefusal(e.error_code, retryAfterSec=e.retry_after, maskedPhone=masked) from e


def send_or_pretend(svc: Services, *, phone: str, channel: str, account_id: str, code: str,
                    route: str, send: bool) -> Sent:
    """Deliver the code (or, for a decoy, nothing) and return what took it.

    On failure the cooldown slot is given back, so the customer may try again at once.
    """
    if not send:
        # A decoy takes as long as a real send, so timing does not tell who is a customer
        # (the endpoint's START_MIN_SECONDS floor hides the rest of the path).
        time.sleep(svc.send_timer.draw())
        return Sent(route, None)
    started = time.perf_counter()
    try:
        sent = deliver_code(svc, phone, code, route)
    except FlowRefusal:
        svc.limits.give_back(phone, channel, account_id)
        raise
    svc.send_timer.observe(time.perf_counter() - started)
    return sent


_CHECK_REFUSALS = {
    "invalid": ("invalid_code", "invalid_code"),
    "locked": ("too_many_attempts", "too_many_attempts"),
    "identity_locked": ("too_many_attempts", "too_many_attempts"),
    "expired": ("expired", "expired"),
    "missing": ("error", "session_not_found"),
}


def issue_code(svc: Services, identity: MessengerIdentity, phone: str, route: str | None, *,
               client_ip: str | None = None, purpose: str = "auth",
               payload: dict[str, Any] | None = None,
               send_to_unknown: bool = False) -> OtpSession:
    """Throttle, find the phone's customer, send the code (or pretend), store the session.

    A phone with no customer gets a decoy session and no message, unless
    ``send_to_unknown`` (the customer will be created after the check).
    """
    take_send_allowance(svc, phone, identity.channel, identity.account_id, client_ip)
    try:
        customer_id = find_customer_id_by_phone(svc, phone)
    except FlowRefusal:
        svc.limits.give_back(phone, identity.channel, identity.account_id)
        raise
    send = customer_id is not None or send_to_unknown
    code = svc.otp.new_code()
    sent = send_or_pretend(svc, phone=phone, channel=identity.channel,
                           account_id=identity.account_id, code=code,
                           route=route or default_route(identity.channel), send=send)
    session = svc.otp.create_session(
        phone=phone, channel=identity.channel, account_id=identity.account_id,
        customer_id=customer_id, code=code if send else None, route=sent.method,
        purpose=purpose, payload=payload)
    track_send(svc, session, sent)
    return session


def claim_code(svc: Services, identity: MessengerIdentity, session_id: str, code: str,
               purpose: str) -> OtpSession:
    """The session once its code checks out (consumed: finish with ``complete_claimed``).

    Another identity's or another purpose's session is answered as not found.
    """
    session = svc.otp.load(session_id)
    if session is None or session.purpose != purpose or (
            session.channel, session.account_id) != (identity.channel, identity.account_id):
        raise FlowRefusal("session_not_found")
    outcome = svc.otp.verify(session, code)
    if outcome != "ok":
        log_event("code_rejected", channel=identity.channel, outcome=outcome)
        if outcome == "identity_locked":
            metrics.LIMIT_REFUSALS.labels(outcome).inc()
        answer_status, error_code = _CHECK_REFUSALS[outcome]
        raise FlowRefusal(error_code, status=answer_status, maskedPhone=mask_phone(session.phone))
    return session


def complete_claimed(svc: Services, session: OtpSession, work: Callable[[], T],
                     done: Callable[[T], bool] = lambda answer: True) -> T:
    """Run ``work`` for a consumed code; the code stays used when ``done(answer)`` or on a
    conflict, and is released otherwise, so our own failure never burns the customer's
    code."""
    try:
        answer = work()
    except FlowRefusal as refusal:
        if refusal.status != "conflict":
            svc.otp.release(session)
        raise
    except Exception:
        svc.otp.release(session)
        raise
    if not done(answer):
        svc.otp.release(session)
    return answer


def sent_answer(svc: Services, session: OtpSession) -> dict[str, Any]:
    """The answer to a start that sent (or pretended to send) a code."""
    return {"status": "sent", "sessionId": session.session_id,
            "maskedPhone": mask_phone(session.phone),
            "retryAfterSec": svc.settings.otp_resend_cooldown_seconds,
            "deliveryRoute": delivery_route(session)}


def delivery_route(session: OtpSession) -> str | None:
    """The route that took the session's current code (``deliveryRoute`` of answers)."""
    return METHOD_ROUTES.get(session.route or "")
