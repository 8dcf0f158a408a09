"""Code delivery: the channel's workflow (DELIVERY_ROUTES_<CHANNEL>), remember every
send, read its status, and decide when a code that did not arrive goes again by the
workflow's next route (on /auth/resend here; the worker's side is in
``flows/auto_fallback.py``).

A watched send (gurugrow/routes.py ``watched``) is *undelivered* when GreenSMS says it
failed, or when ``DELIVERY_FALLBACK_AFTER_SECONDS`` after the send GreenSMS still says it is
pending or cannot say (``unknown``: an unmapped word, an error answer such as ``Message not
found``, an unreachable GreenSMS). Such a send goes again by the workflow's next route,
once. Only a confirmed failure or pending send skips the resend cooldown (the customer
got nothing); an ``unknown`` one waits for it, as any resend does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gurugrow import metrics
from gurugrow.basics.errors import FlowRefusal, StorageUnavailable, UpstreamError
from gurugrow.logs import log_event
from gurugrow.routes import ROUTES, route_of_method
from gurugrow.services import Services
from gurugrow.stores.client import WriteBatch
from gurugrow.stores.deliveries import FINAL_STATUSES, SendRecord
from gurugrow.stores.otp import OtpSession


@dataclass(frozen=True)
class Sent:
    """What took a code: its route and what GreenSMS answered to the send."""

    route: str
    # GreenSMS's request id (None: a decoy, nothing went out; or an ``unknown`` outcome,
    # whose answer never came).
    request_id: str | None
    # The code the customer got: ours, or GreenSMS's for a flash call; for an incoming
    # call one nobody is told.
    code: str | None = None
    number: str | None = None  # an incoming call's number to call
    # Whether the outcome is ``unknown``: the send may have reached GreenSMS but its
    # answer did not come, so it counts as made and its delivery is unknown.
    unknown: bool = False

    @property
    def method(self) -> str:
        """The route as bot_last_verification_method names it."""
        return ROUTES[self.route].method


# The stand-in request id of a send whose outcome is unknown (GreenSMS's answer never came).
UNKNOWN_SEND = "unknown-outcome-"


def workflow(svc: Services, channel: str) -> tuple[str, ...]:
    """The channel's routes that are on, in the order DELIVERY_ROUTES_<CHANNEL> tries
    them (a route whose sender is not set is off; the doctor says why)."""
    s = svc.settings
    return tuple(r for r in s.workflow(channel) if s.route_off_reason(r) is None)


def first_route(svc: Services, channel: str, asked: str | None) -> str:
    """The route a send starts with: the asked one, which the channel's workflow must
    allow (``invalid_route`` otherwise), else the workflow's first route that is on."""
    if asked is not None:
        if asked not in svc.settings.workflow(channel):
            raise FlowRefusal("invalid_route")
        return asked
    routes = workflow(svc, channel)
    return routes[0] if routes else svc.settings.workflow(channel)[0]


def routes_from(svc: Services, channel: str, route: str) -> list[str]:
    """The routes a send starting with ``route`` tries when the one before refuses the
    code at once: ``route`` (when on), then the workflow's routes after it."""
    allowed = svc.settings.workflow(channel)
    later = allowed[allowed.index(route) + 1:] if route in allowed else ()
    on = workflow(svc, channel)
    return [r for r in (route, *later) if r in on]


def next_route(svc: Services, channel: str, after: str) -> str | None:
    """The workflow's next route after ``after`` that is on (None: the last)."""
    later = routes_from(svc, channel, after)
    return next((r for r in later if r != after), None)



def track_send(svc: Services, session: OtpSession, sent: Sent,
               batch: WriteBatch | None = None) -> None:
    """Remember the session's latest send; a watched route's send is checked until delivered."""
    if sent.request_id is None and not sent.unknown:  # a decoy: nothing to watch
        return
    s = svc.settings
    now = svc.clock()
    # A send of unknown outcome has no request id: it is watched under a stand-in one,
    # whose status reads ``unknown``, so resend and the worker move it on as such.
    request_id = sent.request_id or f"{UNKNOWN_SEND}{now:.3f}"
    check_at = None
    if ROUTES[sent.route].watched:
        check_at = now + min(s.delivery_check_interval_seconds,
                             s.delivery_fallback_after_seconds)

    # Best effort: the code has gone out already, so a Redis failure here is logged and
    # costs only the tracking of this one send.
    def failed(error: StorageUnavailable) -> None:
        log_event("delivery_tracking_failed", logging.WARNING, route=sent.route, error=error)

    try:
        with svc.caches.written(batch) as writes:  # with ``batch``, written when it is sent
            svc.deliveries.record_send(session.session_id, sent.route, request_id, now,
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
    if record.request_id.startswith(UNKNOWN_SEND):  # GreenSMS never said it took it
        status = "unknown"
    else:
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
    """Failed, or still pending or ``unknown`` when the fallback time has come (GreenSMS
    answers ``Message not found`` for some fresh sends, so a young unknown is not one)."""
    return status == "failed" or (status in ("pending", "unknown") and overdue(svc, record))


def waives_cooldown(status: str) -> bool:
    """Whether replacing an undelivered send of this status skips the resend cooldown:
    only when GreenSMS said it failed or is still pending, never on ``unknown``."""
    return status != "unknown"


def cooldown_left(svc: Services, session: OtpSession) -> int:
    """Seconds until the session's phone may be sent a code again by a resend (0: now)."""
    return svc.limits.cooldown_left(session.phone, session.channel, session.account_id)


def fallback_lease_seconds(svc: Services) -> float:
    """How long a claimed check or fallback stays with its claimer: a status read and an
    SMS send, each within the GreenSMS timeouts, and a margin. A claimer that dies gives it
    up then, and the next one sends the SMS."""
    s = svc.settings
    return 2 * (s.greensms_timeout_seconds + s.http_connect_timeout_seconds) + 5


def claim_fallback(svc: Services, record: SendRecord) -> bool:
    """Take the one right to replace ``record``'s send by the next route, for one
    lease."""
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
                 ) -> tuple[str, SendRecord | None, bool]:
    """A resend's route, the undelivered send it replaces, and whether it skips the cooldown."""
    if session.is_decoy:
        _pretend_status_read(svc, session)
        return asked_route, None, False
    record = svc.deliveries.load(session.session_id)
    if record is None:
        return asked_route, None, False
    following = next_route(svc, session.channel, record.route)
    # A resend that replaces an undelivered send goes by the workflow's next route,
    # whatever route is asked.
    if record.state == "watching" and ROUTES[record.route].watched and following:
        status = read_status(svc, record)
        # After a failed or still pending send it does not wait for the cooldown (the
        # customer got nothing); after an ``unknown`` one it does (nobody said the code did
        # not arrive), and until the cooldown ends the send is not claimed. Of the worker
        # and concurrent resends only one replaces a given send that way
        # (``claim_fallback``).
        waived = waives_cooldown(status)
        if undelivered(svc, record, status) and (
                waived or not cooldown_left(svc, session)) and claim_fallback(svc, record):
            metrics.SMS_FALLBACKS.labels(record.route).inc()
            if status == "unknown":
                metrics.DELIVERIES.labels(record.route, "unknown").inc()
            log_event("delivery_fallback", by="resend", from_route=record.route,
                      to_route=following, status=status)
            # The replaced send is claimed: the caller sends its code, or gives the claim
            # back with ``give_back_fallback``.
            return following, record, waived
    # A route that did not deliver earlier in the session is not tried again.
    if asked_route == record.undeliverable:
        return next_route(svc, session.channel, asked_route) or asked_route, None, False
    return asked_route, None, False


def _pretend_status_read(svc: Services, session: OtpSession) -> None:
    # A decoy's resend takes as long as a customer's, whose previous messenger send's
    # status is read first: timing does not tell who is a customer.
    route = route_of_method(session.method)
    if route is not None and ROUTES[route].watched:
        time.sleep(svc.status_timer.draw())  # a real read's duration, not a jitter
