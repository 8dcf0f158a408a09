"""The `deliveries` worker's work: check watched sends that are due, and send a fresh
code by the channel's next route (DELIVERY_ROUTES_<CHANNEL>) for each one not delivered
in time, so nobody has to press resend.

Several workers (on several hosts) may run: a due check is claimed atomically, and so
is the fallback of one send (shared with /auth/resend), so a send is replaced once at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gurugrow import metrics
from gurugrow.basics.errors import FlowRefusal
from gurugrow.basics.phone import mask_phone
from gurugrow.flows.codes import reissue_code
from gurugrow.flows.delivery import (
    claim_fallback,
    cooldown_left,
    fallback_lease_seconds,
    give_back_fallback,
    next_route,
    read_status,
    undelivered,
    waives_cooldown,
)
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.deliveries import SendRecord
from gurugrow.stores.otp import OtpSession


def claim_lease_seconds(svc: Services) -> float:
    """How long a claimed check stays with its worker (``fallback_lease_seconds``)."""
    return fallback_lease_seconds(svc)


def check_due_sends(svc: Services, should_stop: Callable[[], bool] = lambda: False
                    ) -> dict[str, int]:
    """One pass: claim each due check (one worker wins it) and act on it, until done or
    ``should_stop()``. Returns how many checks ended in each way (``delivered``, the
    route a replacement went by such as ``sms``, ``waiting``, ...)."""
    tracker = svc.deliveries
    now = svc.clock()
    # A check due longer ago than a code lives is moot (its code expired meanwhile).
    tracker.trim(now - svc.settings.otp_ttl_seconds)
    outcomes: dict[str, int] = {}
    for session_id, request_id in list(tracker.due(now, svc.settings.delivery_worker_batch)):
        if should_stop():
            break
        # The lease runs from the claim, not the pass's start: slow checks before this
        # one must not hand it out already lapsed (a second worker would take it too).
        claimed_at = svc.clock()
        if not tracker.claim_check(session_id, request_id, claimed_at,
                                   claimed_at + claim_lease_seconds(svc)):
            continue  # another worker has it
        try:
            outcome = check_send(svc, session_id, request_id)
        except Exception as e:  # one bad check must not stop the others; retried later
            log_event("delivery_check_failed", logging.ERROR, error=repr(e)[:200])
            outcome = "error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def check_send(svc: Services, session_id: str, request_id: str) -> str:
    """Act on one claimed check; returns what happened to it."""
    # The check is forgotten only once its outcome is known: an exception leaves it due
    # again after the claim's lease (and gives a claimed fallback back), so a worker that
    # dies or fails before the SMS went out loses no SMS.
    tracker = svc.deliveries
    record = tracker.load(session_id)
    if record is not None and record.request_id == request_id and record.fallback_held(
            svc.clock()):
        # Another claimer is sending its SMS: look again when its lease ends.
        tracker.reschedule(session_id, request_id, record.fallback_until)
        return "waiting"
    if record is None or record.request_id != request_id or record.state not in (
            "watching", "fallen_back"):
        tracker.forget(session_id, request_id)  # superseded by a newer send, or settled
        return "superseded"
    session = svc.otp.load(session_id)
    if session is None or session.expires_at <= svc.clock() or (
            session.attempts >= svc.settings.otp_max_attempts):
        # Used, expired or locked: no code is worth sending. The status is still read
        # once, so the delivered/failed counts cover codes used before their first check.
        read_status(svc, record)
        tracker.settle(record)
        tracker.forget(session_id, request_id)
        return "closed"
    # A fallen_back record here lost its claimer before the SMS was recorded (claimed on
    # an unknown status, or on a failed or late one).
    if record.state == "fallen_back":
        status = "unknown" if record.status == "unknown" else "failed"
    else:
        status = read_status(svc, record)
    if status == "delivered":
        tracker.settle(record)
        tracker.forget(session_id, request_id)
        return "delivered"
    if not undelivered(svc, record, status):
        s = svc.settings
        tracker.reschedule(session_id, request_id, min(
            svc.clock() + s.delivery_check_interval_seconds,
            record.sent_at + s.delivery_fallback_after_seconds))
        return "waiting"
    if not waives_cooldown(status) and (left := cooldown_left(svc, session)):
        # GreenSMS cannot say whether it arrived: the next route waits for the resend
        # cooldown, as a resend would.
        tracker.reschedule(session_id, request_id, svc.clock() + left)
        return "waiting"
    outcome = send_fallback_sms(svc, session, record, status)
    if outcome != "waiting":
        tracker.forget(session_id, request_id)
    return outcome


def send_fallback_sms(svc: Services, session: OtpSession, record: SendRecord,
                      status: str = "failed") -> str:
    """Send the session a fresh code by the workflow's next route, within its send caps."""
    # Answers the route's name when it went out (``sms`` with the default workflows).
    masked = mask_phone(session.phone)
    following = next_route(svc, session.channel, record.route)
    if following is None:  # the workflow's last route: nothing left to try
        svc.deliveries.settle(record) or svc.deliveries.close_fallback(record)
        log_event("auto_fallback_refused", logging.WARNING, reason="last_route",
                  phone=masked)
        return "refused"
    if not svc.otp.sends_left(session):
        svc.deliveries.settle(record) or svc.deliveries.close_fallback(record)
        log_event("auto_fallback_refused", logging.WARNING, reason="max_sends", phone=masked)
        return "refused"
    if not claim_fallback(svc, record):
        return "superseded"  # a resend replaced this send meanwhile
    # After a failed or late send the cooldown is skipped (the customer got nothing);
    # after an ``unknown`` one it is kept.
    waived = waives_cooldown(status)
    try:
        reissue_code(svc, session, following, cooldown=not waived)
    except FlowRefusal as refusal:
        if refusal.error_code == "resend_too_early":
            # A cooldown still running (another send to the phone meanwhile) leaves the
            # check ``waiting`` until it ends.
            give_back_fallback(svc, record)
            retry = refusal.fields.get("retryAfterSec")
            svc.deliveries.reschedule(session.session_id, record.request_id, svc.clock() + (
                retry if isinstance(retry, int) and retry > 0
                else svc.settings.delivery_check_interval_seconds))
            return "waiting"
        svc.deliveries.close_fallback(record)
        log_event("auto_fallback_refused", logging.WARNING, reason=refusal.error_code,
                  phone=masked)
        return "refused"
    except BaseException:
        # Raises what the send raised after giving the claimed fallback back (the check
        # stays due).
        give_back_fallback(svc, record)
        raise
    metrics.AUTO_FALLBACKS.labels(record.route).inc()
    if status == "unknown":
        metrics.DELIVERIES.labels(record.route, "unknown").inc()
    log_event("delivery_fallback", by="worker", from_route=record.route,
              to_route=following, status=status, phone=masked)
    return following
