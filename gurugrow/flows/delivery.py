"""Code delivery: remember every send, read its status, and decide when a messenger code
that did not arrive goes again by SMS (on /auth/resend here; the worker's side is in
``flows/auto_fallback.py``).

A messenger send is *undelivered* when GreenSMS says it failed, or when GreenSMS still
says it is pending ``DELIVERY_FALLBACK_AFTER_SECONDS`` after the send. A status nobody can
read (``unknown``: an unmapped word, an error answer such as ``Message not found``, an
unreachable GreenSMS) never is: no paid SMS and no skipped cooldown on a guess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gurugrow import metrics
from gurugrow.basics.errors import StorageUnavailable, UpstreamError
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.client import WriteBatch, written
from gurugrow.stores.deliveries import FINAL_STATUSES, SendRecord
from gurugrow.stores.otp import OtpSession

# The route that accepted the code, as stored in bot_last_verification_method.
ROUTE_METHODS = {"telegram": "telegram_otp", "vk": "vk_otp", "sms": "sms_otp"}
METHOD_ROUTES = {method: route for route, method in ROUTE_METHODS.items()}


@dataclass(frozen=True)
class Sent:
    """What took a code: its route and GreenSMS's request id (None: a decoy, nothing
    went out, or ``unknown``: the send may have reached GreenSMS but its answer did not
    come, so it counts as made and its delivery is unknown)."""

    route: str
    request_id: str | None
    unknown: bool = False

    @property
    def method(self) -> str:
        """The route as bot_last_verification_method names it."""
        return ROUTE_METHODS[self.route]



def track_send(svc: Services, session: OtpSession, sent: Sent,
               batch: WriteBatch | None = None) -> None:
    """Remember the session's latest send; a messenger send is watched until delivered.
    With ``batch``, written when the batch is sent.

    Best effort: the code has gone out already, so a Redis failure here is logged and
    costs only the tracking of this one send.
    """
    if sent.request_id is None and not sent.unknown:  # a decoy: nothing to watch
        return
    s = svc.settings
    now = svc.clock()
    check_at = None
    # An unknown outcome has no request id to watch: recorded without one, it supersedes
    # the session's earlier send, and neither resend nor the worker reads its delivery.
    if not sent.unknown and sent.route != "sms":
        check_at = now + min(s.delivery_check_interval_seconds,
                             s.delivery_fallback_after_seconds)

    def failed(error: StorageUnavailable) -> None:
        log_event("delivery_tracking_failed", logging.WARNING, route=sent.route, error=error)

    try:
        with written(svc.redis, batch) as writes:
            svc.deliveries.record_send(session.session_id, sent.route,
                                       sent.request_id or "", now,
                                       check_at, batch=writes, on_failure=failed)
    except StorageUnavailable as e:  # Redis unreachable (a batch of our own)
        failed(e)
    metrics.DELIVERIES.labels(sent.route, "sent").inc()


def read_status(svc: Services, record: SendRecord) -> str:
    """The send's status: the final one on record, else GreenSMS's answer now (``unknown``
    when GreenSMS cannot say). Each delivered/failed outcome is counted once."""
    if record.status in FINAL_STATUSES:
        return record.status
    started = time.perf_counter()
    try:
        status = svc.sms.delivery_status(record.route, record.request_id)
    except UpstreamError as e:
        log_event("delivery_status_failed", logging.WARNING, route=record.route, error=e)
        status = "unknown"
    svc.status_timer.observe(time.perf_counter() - started)
    if status != record.status and svc.deliveries.note_status(record, status) and (
            status in FINAL_STATUSES):
        metrics.DELIVERIES.labels(record.route, status).inc()
        if status == "delivered":
            # Seen by polling: an upper bound of the real time to delivery.
            metrics.DELIVERY_SECONDS.labels(record.route).observe(
                max(svc.clock() - record.sent_at, 0.0))
    return status


def overdue(svc: Services, record: SendRecord) -> bool:
    """True once the send is older than DELIVERY_FALLBACK_AFTER_SECONDS."""
    return svc.clock() - record.sent_at >= svc.settings.delivery_fallback_after_seconds


def undelivered(svc: Services, record: SendRecord, status: str) -> bool:
    """Failed, or still pending when the fallback time has come (``unknown`` never)."""
    return status == "failed" or (status == "pending" and overdue(svc, record))


def fallback_lease_seconds(svc: Services) -> float:
    """How long a claimed check or fallback stays with its claimer: a status read and an
    SMS send, each within the GreenSMS timeouts, and a margin. A claimer that dies gives it
    up then, and the next one sends the SMS."""
    s = svc.settings
    return 2 * (s.greensms_timeout_seconds + s.http_connect_timeout_seconds) + 5


def claim_fallback(svc: Services, record: SendRecord) -> bool:
    """Take the one right to replace ``record``'s send by SMS, for one lease."""
    now = svc.clock()
    return svc.deliveries.claim_fallback(record, now, now + fallback_lease_seconds(svc))


def give_back_fallback(svc: Services, record: SendRecord) -> None:
    """The claimed SMS did not go out: the send is watched again (best effort: a claim
    that cannot go back lapses after its lease all the same)."""
    try:
        svc.deliveries.release_fallback(record)
    except StorageUnavailable as e:
        log_event("delivery_release_failed", logging.WARNING, route=record.route, error=e)


def resend_route(svc: Services, session: OtpSession, asked_route: str
                 ) -> tuple[str, SendRecord | None]:
    """The route of a resend, and the undelivered messenger send it replaces (claimed:
    the caller sends its SMS, or gives the claim back with ``give_back_fallback``).

    Such a resend goes by SMS whatever route is asked and does not wait for the cooldown
    (the customer got nothing). Of the worker and concurrent resends only one replaces a
    given send that way (``claim_fallback``); a messenger route that did not deliver
    earlier in the session is not tried again.
    """
    if session.is_decoy:
        _pretend_status_read(svc, session)
        return asked_route, None
    record = svc.deliveries.load(session.session_id)
    if record is None:
        return asked_route, None
    if record.state == "watching" and record.route != "sms":
        status = read_status(svc, record)
        if undelivered(svc, record, status) and claim_fallback(svc, record):
            metrics.SMS_FALLBACKS.labels(record.route).inc()
            log_event("delivery_fallback", by="resend", from_route=record.route,
                      status=status)
            return "sms", record
    if asked_route == record.undeliverable:
        return "sms", None
    return asked_route, None


def _pretend_status_read(svc: Services, session: OtpSession) -> None:
    # A decoy's resend takes as long as a customer's, whose previous messenger send's
    # status is read first: timing does not tell who is a customer.
    if session.route not in (None, "sms_otp"):
        time.sleep(svc.status_timer.draw())  # a real read's duration, not a jitter
