"""Issuing a code: who the phone belongs to, throttles, and delivery with SMS fallback.

Shared by /auth/start, /auth/resend and the recommended-order start.
"""

from __future__ import annotations

import logging
import uuid

from gurugrow import texts
from gurugrow.gateways.errors import UpstreamError
from gurugrow.logs import log_event
from gurugrow.phone import mask_phone
from gurugrow.services import Services

# The route that accepted the code, as stored in bot_last_verification_method.
ROUTE_METHODS = {"telegram": "telegram_otp", "vk": "vk_otp", "sms": "sms_otp"}


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


def deliver_code(svc: Services, phone: str, code: str, route: str) -> str:
    """Send ``code`` by ``route``, falling back to SMS; return the method that took it.

    Raises FlowRefusal("delivery_failed") when no route accepted the code.
    """
    routes = [route] if route == "sms" else [route, "sms"]
    for attempt in routes:
        try:
            svc.sms.send_code(attempt, phone, code, texts.SMS_CODE.format(code=code))
        except UpstreamError as e:
            log_event("code_delivery_failed", logging.WARNING, route=attempt,
                      phone=mask_phone(phone), error=e)
            continue
        log_event("code_sent", route=attempt, phone=mask_phone(phone),
                  fallback=attempt != route)
        return ROUTE_METHODS[attempt]
    raise FlowRefusal("delivery_failed")


def take_send_allowance(svc: Services, phone: str, channel: str, account_id: str) -> None:
    """Apply the resend cooldown and the per-phone daily cap before any code goes out."""
    wait = svc.otp.reserve_send_slot(phone, channel, account_id)
    if wait:
        raise FlowRefusal("resend_too_early", retryAfterSec=wait, maskedPhone=mask_phone(phone))
    if not svc.otp.count_phone_send(phone):
        log_event("phone_daily_cap_reached", logging.WARNING, phone=mask_phone(phone))
        raise FlowRefusal("rate_limited", maskedPhone=mask_phone(phone))


def send_or_pretend(svc: Services, *, phone: str, channel: str, account_id: str, code: str,
                    route: str, send: bool) -> str:
    """Deliver the code (or, for a decoy, nothing) and return the delivery method.

    On failure the cooldown slot is given back, so the customer may try again at once.
    """
    try:
        if not send:
            return ROUTE_METHODS[route]
        return deliver_code(svc, phone, code, route)
    except FlowRefusal:
        svc.otp.release_send_slot(phone, channel, account_id)
        raise
