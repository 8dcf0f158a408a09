"""Issuing and checking codes: who the phone belongs to, throttles, delivery with SMS
fallback, and a check that runs its work once (replays get the same answer).

Shared by /auth/start, /auth/resend, /auth/check and the recommended-order endpoints.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from gurugrow import metrics, texts
from gurugrow.basics.errors import (
    DeliveryMaybeMade,
    FlowRefusal,
    LimitExceeded,
    SendOutcomeUnknown,
    StorageUnavailable,
    UpstreamError,
)
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject
from gurugrow.basics.phone import mask_phone
from gurugrow.flows.delivery import (
    Sent,
    first_route,
    give_back_fallback,
    read_status,
    resend_route,
    routes_from,
    track_send,
)
from gurugrow.flows.requests import ResendRequest
from gurugrow.flows.vocabulary import Answer
from gurugrow.gateways.greensms import SendAnswer
from gurugrow.logs import log_event
from gurugrow.routes import NUMBER_TO_CALL, OUR_CODE, ROUTES, THEIR_CODE, route_of_method
from gurugrow.services import Services
from gurugrow.stores.client import PipelineRider, Riders, WriteBatch
from gurugrow.stores.limits import Admission
from gurugrow.stores.once import ClaimAhead, LeaseRenewer
from gurugrow.stores.otp import OtpSession


@dataclass(frozen=True)
class PhoneCustomer:
    """The phone's one CRM customer, and its custom fields as the lookup read them
    (None: not read, the deduper chose a customer the lookup did not list)."""

    id: str
    custom_fields: JsonObject | None

    def field(self, code: str) -> str | None:
        """What field ``code`` held when read ("" for nothing); None: not read."""
        if self.custom_fields is None:
            return None
        return str(self.custom_fields.get(code) or "")


def find_customer_id_by_phone(svc: Services, phone: str) -> str | None:
    """The id of the phone's one CRM customer (``find_customer_by_phone``)."""
    found = find_customer_by_phone(svc, phone)
    return None if found is None else found.id


def find_customer_by_phone(svc: Services, phone: str) -> PhoneCustomer | None:
    """The one CRM customer of ``phone`` (deduper for several), or None for nobody."""
    # Raises FlowRefusal("dedupe_failed") when the duplicates cannot be resolved: the
    # contract's unresolved case, whose message hands the customer to a manager.
    customers = svc.crm.find_customers_by_phone(phone)
    if not customers:
        return None
    if len(customers) == 1:
        return PhoneCustomer(customers[0].id, customers[0].custom_fields)
    # With no deduper configured (DEDUPE_BASE_URL empty) every phone with several
    # customers is unresolved.
    if not svc.deduper.configured:
        log_event("duplicates_unresolved", phone=mask_phone(phone), candidates=len(customers),
                  reason="no deduper (DEDUPE_BASE_URL empty)")
        raise FlowRefusal("dedupe_failed")
    try:
        result = svc.deduper.auto_resolve(phone, svc.settings.retailcrm_site, str(uuid.uuid4()))
    except UpstreamError as e:
        log_event("dedupe_failed", logging.WARNING, phone=mask_phone(phone), error=e)
        raise FlowRefusal("dedupe_failed") from e
    log_event("dedupe_answer", phone=mask_phone(phone), status=result.status,
              candidates=len(customers))
    if not result.usable:
        raise FlowRefusal("dedupe_failed")
    # The deduper may merge the duplicates: the survivor's fields are not what was read.
    return PhoneCustomer(str(result.final_customer_id), None)


def deliver_code(svc: Services, phone: str, channel: str, route: str) -> Sent:
    """Send a code by ``route``, falling back to the workflow's next routes; return what took it."""
    # A route is fallen back from when it refuses the code at once; what took it carries
    # the code the customer got.
    maybe_made = False
    for attempt in routes_from(svc, channel, route):
        declared = ROUTES[attempt]
        # A flash call's code is GreenSMS's (in its answer); ours is drawn per route.
        code = "" if declared.sends == THEIR_CODE else (
            svc.otp.new_code(declared.code_length) if declared.code_length
            else svc.otp.new_code())
        try:
            text = getattr(texts, declared.text).format(code=code) if declared.text else ""
            answer: SendAnswer | None = svc.sms.send_code(attempt, phone, code, text)
        except SendOutcomeUnknown as e:
            log_event("code_send_unknown", logging.WARNING, route=attempt,
                      phone=mask_phone(phone), outcome="unknown", error=e)
            answer = None
        except UpstreamError as e:
            log_event("code_delivery_failed", logging.WARNING, route=attempt,
                      phone=mask_phone(phone), outcome="never_left", error=e)
            continue
        else:
            log_event("code_sent", route=attempt, phone=mask_phone(phone),
                      fallback=attempt != route)
        metrics.CODES_SENT.labels(attempt).inc()
        metrics.CODE_COST.labels(attempt).inc(
            svc.settings.route_prices.get(declared.price, 0.0))
        if attempt != route:
            metrics.SMS_FALLBACKS.labels(route).inc()
        if answer is None:
            # A send whose outcome is unknown (it may have reached GreenSMS) is taken as
            # made: no other route is tried (the code may still arrive), its admission is
            # kept and its delivery is unknown (``Sent.unknown``); a route whose code or
            # number is in GreenSMS's answer cannot be checked without it, so the next
            # route is tried.
            if declared.sends != OUR_CODE:
                # Its code (or number) was in the answer that did not come: the customer
                # needs a route whose code we hold. It is counted as made all the same.
                maybe_made = True
                continue
            return Sent(attempt, None, code, unknown=True)
        if declared.sends == NUMBER_TO_CALL:
            # Nothing to type: the session's code is one only we can work out, once
            # GreenSMS reports the call (``check_code``).
            code = call_code(svc, answer.request_id)
        return Sent(attempt, answer.request_id, answer.code or code, answer.number)
    # No route accepted the code: FlowRefusal("delivery_failed"), or DeliveryMaybeMade
    # (which keeps the admission) when one may have gone out.
    raise DeliveryMaybeMade() if maybe_made else FlowRefusal("delivery_failed")


def route_sends(route: str) -> str | None:
    """What ``route`` sends (None: no route of that name, e.g. an older record's)."""
    declared = ROUTES.get(route)
    return declared.sends if declared is not None else None


# How soon a bot asks again whether the customer called (``pending`` answers).
INCOMING_CALL_RETRY_SECONDS = 5


def call_code(svc: Services, request_id: str) -> str:
    """The code of an incoming-call session: derived from GreenSMS's request id with
    OTP_SECRET, so it is never stored or sent, and is worked out again (and checked like
    any code) once GreenSMS reports the call."""
    digest = hmac.new(svc.settings.otp_secret.encode(), f"incoming_call:{request_id}".encode(),
                      hashlib.sha256).digest()
    length = svc.settings.otp_length
    return str(int.from_bytes(digest, "big") % 10 ** length).zfill(length)


def called_code(svc: Services, identity: MessengerIdentity, session_id: str, purpose: str
                ) -> str | Answer:
    """A check without a code: for an incoming-call session, its code once GreenSMS
    reports the customer's call, else the ``pending`` answer (``expired`` after the
    session's life). Any other session is answered as a missing code always was."""
    session = svc.otp.load(session_id)
    record = svc.deliveries.load(session_id)
    if session is None and record is not None and record.status == "delivered" and (
            route_sends(record.route) == NUMBER_TO_CALL):
        # Checked already (or being checked): its code gets the stored answer, for this
        # identity only (``check_code``).
        return call_code(svc, record.request_id)
    if session is None or session.channel != identity.channel or (
            session.account_id != identity.account_id) or session.purpose != purpose:
        raise FlowRefusal("session_not_found")
    route = route_of_method(session.method)
    if route is None or ROUTES[route].sends != NUMBER_TO_CALL:
        # An empty or missing code is answered as a wrong one (one invalid_code).
        raise FlowRefusal("invalid_code", status="invalid_code",
                          maskedPhone=mask_phone(session.phone))
    masked = mask_phone(session.phone)
    if session.expires_at <= svc.clock():
        raise FlowRefusal("expired", status="expired", maskedPhone=masked)
    status = read_status(svc, record) if record is not None and record.route == route \
        else "unknown"
    if status != "delivered" or session.is_decoy:
        # A decoy never verifies: nobody's call makes a phone with no customer one.
        return {"status": "pending", "maskedPhone": masked, "message": texts.CALL_NOT_MADE_YET,
                "retryAfterSec": INCOMING_CALL_RETRY_SECONDS}
    assert record is not None
    return call_code(svc, record.request_id)


def take_send_allowance(svc: Services, phone: str, channel: str, account_id: str,
                        client_ip: str | None, *, route: str, cooldown: bool = True,
                        rider: PipelineRider | None = None) -> Admission:
    """Apply every send limit before a code goes out by ``route``: all taken at once, or none."""
    # Also before the phone is looked up, so a refusal says nothing about whether the
    # phone is a customer. Give the admission back with ``returned_on_failure``.
    # ``cooldown=False`` only to replace a messenger code that was not delivered.
    # ``rider`` (a RetailCRM slot request) goes in the admission's round trip.
    with refused_by_limits(phone, client_ip):
        svc.limits.check_region(phone)
        return svc.limits.admit_send(phone, channel, account_id, client_ip, route=route,
                                     cooldown=cooldown, rider=rider)


@contextmanager
def refused_by_limits(phone: str | None, client_ip: str | None) -> Iterator[None]:
    """A ``LimitExceeded`` in the block is logged, counted and raised as its FlowRefusal."""
    try:
        yield
    except LimitExceeded as e:
        masked = mask_phone(phone) if phone else None
        log_event("limit_refused", logging.WARNING, kind=e.kind, phone=masked, ip=client_ip)
        metrics.LIMIT_REFUSALS.labels(e.kind).inc()
        raise FlowRefusal(e.error_code, retryAfterSec=e.retry_after, maskedPhone=masked) from e


@contextmanager
def returned_on_failure(svc: Services, admission: Admission,
                        keep_on: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Give back everything ``admission`` took when the block fails (nothing went out)."""
    # A failure is a send that certainly never left, or an upstream failure before the
    # send; given back, the customer may try again at once and an outage does not use up
    # their sends.
    try:
        yield
    except DeliveryMaybeMade:  # a send whose outcome is unknown is no failure (deliver_code)
        raise
    except keep_on:  # an answer the attempt earned keeps what was taken
        raise
    except BaseException:
        try:
            svc.limits.give_back(admission)
        except StorageUnavailable as e:
            log_event("give_back_failed", logging.WARNING, error=e)
        raise


def send_or_pretend(svc: Services, *, phone: str, channel: str, route: str, send: bool
                    ) -> Sent:
    """Deliver a code (or, for a decoy, nothing) and return what took it.

    Raises FlowRefusal("delivery_failed") when no route took the code.
    """
    if not send and ROUTES[route].sends != NUMBER_TO_CALL:
        # A decoy takes as long as a real send, so timing does not tell who is a customer
        # (the endpoint's START_MIN_SECONDS floor hides the rest of the path). A decoy's
        # incoming call asks GreenSMS for a number too: its answer must show one.
        time.sleep(svc.send_timer.draw())
        return Sent(route, None)
    started = time.perf_counter()
    sent = deliver_code(svc, phone, channel, route)
    svc.send_timer.observe(time.perf_counter() - started)
    if sent.route != route:  # the admission priced the route asked for; SMS took it
        policy = svc.limits.policy
        try:
            svc.limits.charge_cost(policy.price_of(sent.route) - policy.price_of(route))
        except StorageUnavailable as e:  # the code went out: only the cost count is short
            log_event("cost_charge_failed", logging.WARNING, error=e)
    return sent


_CHECK_REFUSALS = {
    "invalid": ("invalid_code", "invalid_code"),
    "locked": ("too_many_attempts", "too_many_attempts"),
    "identity_locked": ("too_many_attempts", "too_many_attempts"),
    "expired": ("expired", "expired"),
    "missing": ("error", "session_not_found"),
    "busy": ("error", "in_progress"),
}


def issue_code(svc: Services, identity: MessengerIdentity, phone: str, route: str | None, *,
               client_ip: str | None = None, purpose: str = "auth",
               payload: JsonObject | None = None,
               send_to_unknown: bool = False) -> OtpSession:
    """Throttle, find the phone's customer, send the code (or pretend), store the session."""
    # The phone lookup's RetailCRM slot is asked for in the admission's round trip; a
    # refused admission gives it back at the request's end.
    route = first_route(svc, identity.channel, route)
    admission = take_send_allowance(svc, phone, identity.channel, identity.account_id,
                                     client_ip, route=route, rider=svc.crm.slot_rider())
    with returned_on_failure(svc, admission):
        read_at = svc.clock()  # before the read: a binding written meanwhile is later
        customer = find_customer_by_phone(svc, phone)
        customer_id = None if customer is None else customer.id
        # A phone with no customer gets a decoy session and no message, unless
        # ``send_to_unknown`` (the customer will be created after the check).
        send = customer_id is not None or send_to_unknown
        sent = send_or_pretend(svc, phone=phone, channel=identity.channel, send=send,
                               route=route)
    # The session and its delivery record go to Redis in one round trip.
    batch = svc.batch()
    session = svc.otp.create_session(
        phone=phone, channel=identity.channel, account_id=identity.account_id,
        customer_id=customer_id, code=sent.code if send else None, method=sent.method,
        purpose=purpose, payload=payload, batch=batch,
        customer_held=None if customer is None else customer.field(identity.field_code),
        customer_held_at=read_at)
    session.call_number = sent.number or ""
    track_send(svc, session, sent, batch)
    if not send:
        svc.limits.count_no_send(batch, admission)  # its cost goes back: nothing is paid
    batch.send()
    return session


def ensure_resendable(svc: Services, session: OtpSession) -> None:
    """Refuse a new code for a session locked by wrong codes, or out of its own sends."""
    masked = mask_phone(session.phone)
    if session.attempts >= svc.settings.otp_max_attempts:
        raise FlowRefusal("too_many_attempts", maskedPhone=masked)
    if not svc.otp.sends_left(session):
        raise FlowRefusal("rate_limited", maskedPhone=masked)


def reissue_code(svc: Services, session: OtpSession, route: str | None, *,
                 client_ip: str | None = None, cooldown: bool = True) -> Sent:
    """Send a live session a fresh code by ``route``, replacing the old one; return what took it."""
    # Used by resend and by the deliveries worker's fallback; the new send is tracked.
    # Raises FlowRefusal. It goes through the same admission as a start: the session's own
    # send cap, then every send limit at once, all given back when nothing went out.
    ensure_resendable(svc, session)
    route = route or first_route(svc, session.channel, None)  # default: the workflow's first
    admission = take_send_allowance(svc, session.phone, session.channel, session.account_id,
                                    client_ip, route=route, cooldown=cooldown)
    with returned_on_failure(svc, admission):
        # A session whose code was never sent (a decoy) stays one: nothing is sent now
        # either.
        sent = send_or_pretend(svc, phone=session.phone, channel=session.channel,
                               send=session.sent, route=route)
    if not svc.otp.replace_code(session, sent.code, sent.method):
        # Checked or burned while the code went out: the new code is not kept.
        raise FlowRefusal("session_not_found")
    track_send(svc, session, sent)
    # ``cooldown=False`` (replacing an undelivered messenger code) skips the cooldown,
    # which then restarts.
    if not cooldown:
        svc.limits.restart_cooldown(session.phone, session.channel, session.account_id)
    return sent


def resendable_session(svc: Services, session_id: str, channel: str | None,
                       account_ids: tuple[str, ...]) -> OtpSession:
    """The pending session, of any kind, to send a new code for."""
    # Either kind: /auth/start's or /orders/recommended/start's. The unguessable
    # ``sessionId`` is enough; a channel, when the caller sends one, must be the
    # session's, and so must one of the identity fields it sends. Any other caller is told
    # the session does not exist (``session_not_found``).
    session = svc.otp.load(session_id)
    if session is None or (channel is not None and channel != session.channel) or (
            account_ids and session.account_id not in account_ids):
        raise FlowRefusal("session_not_found")
    return session


def check_code(svc: Services, identity: MessengerIdentity, session_id: str, code: str | None,
               purpose: str, work: Callable[[OtpSession], Answer],
               done: Callable[[Answer], bool] = lambda answer: True,
               also: Callable[[OtpSession, WriteBatch], None] | None = None,
               batch: WriteBatch | None = None, ahead: ClaimAhead | None = None) -> Answer:
    """Verify the code, then run ``work`` for its session once and answer what it returns."""
    # ``also`` adds writes that go to Redis with the stored answer, and so does ``work``
    # through ``batch`` (one round trip, sent whatever ``work``'s outcome). ``ahead``, a
    # claim ``work`` starts from, rides the code's check and is given up when ``work``
    # does not take it.

    # No code: an incoming call's check (did the customer call?) may answer pending.
    typed = code if code is not None else called_code(svc, identity, session_id, purpose)
    if not isinstance(typed, str):  # the incoming call's pending answer
        return typed
    # Another identity's or another purpose's session is answered as not found. A replay
    # of a code that already succeeded gets the stored answer again, without running
    # ``work``; one arriving while the first still runs waits for it. The code stays
    # checked when ``done(answer)``, is burned on a conflict, and is released otherwise, so
    # our own failure never burns the customer's code.
    # The first RetailCRM call of ``work`` takes its slot in the check's round trip; when
    # the code is refused, the slot goes back to the bucket at the request's end.
    try:
        return _checked(svc, identity, session_id, typed, purpose, work, done, also, batch,
                        ahead)
    finally:
        if ahead is not None:
            ahead.give_up()  # unless work took it: a refused code binds nothing


def _checked(svc: Services, identity: MessengerIdentity, session_id: str, typed: str,
             purpose: str, work: Callable[[OtpSession], Answer],
             done: Callable[[Answer], bool],
             also: Callable[[OtpSession, WriteBatch], None] | None,
             batch: WriteBatch | None, ahead: ClaimAhead | None) -> Answer:
    riders = Riders(svc.crm.slot_rider(), ahead)
    outcome, session = svc.otp.check(session_id, identity.channel, identity.account_id,
                                     purpose, typed, rider=riders if riders.riders else None)
    if session is None:
        raise FlowRefusal("session_not_found")
    if outcome == "replay" and (kept := svc.otp.answer_of(session)) is not None:
        log_event("check_replayed", channel=identity.channel, purpose=purpose)
        return cast(Answer, kept)  # the answer finish() stored, read back as JSON
    if outcome != "ok":
        log_event("code_rejected", channel=identity.channel, outcome=outcome)
        if outcome == "identity_locked":
            metrics.LIMIT_REFUSALS.labels(outcome).inc()
        answer_status, error_code = _CHECK_REFUSALS.get(outcome, _CHECK_REFUSALS["missing"])
        raise FlowRefusal(error_code, status=answer_status, maskedPhone=mask_phone(session.phone))
    if batch is None:
        batch = svc.batch()
    try:
        with LeaseRenewer(lambda: svc.otp.renew_claim(session), svc.otp.lease_seconds / 4):
            answer = work(session)
    except BaseException as failure:
        _end_failed_check(svc, session, failure, batch)
        raise
    if done(answer):
        svc.otp.finish(session, dict(answer), batch)
        if also is not None:
            also(session, batch)
        metrics.VERIFICATIONS.labels(session.method or "unknown").inc()
    else:
        svc.otp.release(session, batch)
    batch.send()
    return answer


def _end_failed_check(svc: Services, session: OtpSession, failure: BaseException,
                      batch: WriteBatch) -> None:
    """A conflict burns the code; any other failure gives it back for a retry."""
    if isinstance(failure, FlowRefusal) and failure.status == "conflict":
        svc.otp.burn(session, batch)
    else:
        svc.otp.release(session, batch)
    batch.send()


def sent_answer(svc: Services, session: OtpSession) -> Answer:
    """The answer to a start that sent (or pretended to send) a code."""
    route = delivery_route(session)
    masked = mask_phone(session.phone) or ""
    return {"status": "sent", "sessionId": session.session_id, "maskedPhone": masked,
            "retryAfterSec": svc.settings.otp_resend_cooldown_seconds,
            "deliveryRoute": route,
            **route_message(svc, route, masked, session.call_number)}


def route_message(svc: Services, route: str | None, masked: str, call_number: str
                  ) -> Answer:
    """The bot's message for a code sent by ``route`` (a call's; none for a message),
    and the number to call of an incoming call."""
    declared = ROUTES.get(route or "")
    if declared is None or not declared.bot_text:
        return {"message": None}
    digits = declared.code_length or svc.settings.otp_length
    number = f"+{call_number}" if call_number else ""
    message = str(getattr(texts, declared.bot_text)).format(
        digits=digits, maskedPhone=masked, callNumber=number)
    return {"message": message, **({"callNumber": number} if number else {})}


def delivery_route(session: OtpSession) -> str | None:
    """The route that took the session's current code (``deliveryRoute`` of answers)."""
    return route_of_method(session.method)


def resend_code(svc: Services, data: ResendRequest) -> Answer:
    """A new code for a pending session, after the cooldown and within the send caps."""
    # Serves every session kind; the new code completes that session's own check
    # (``/auth/check`` or ``/orders/recommended/check``). ``resendable_session`` says who
    # may ask.
    session = resendable_session(svc, data.session_id, data.channel, data.account_ids)
    ensure_resendable(svc, session)
    route = first_route(svc, session.channel, data.delivery_route)
    # An undelivered code is replaced by the workflow's next route, without waiting for
    # the cooldown unless its status was unknown.
    route, replaced, waived = resend_route(svc, session, route)
    try:
        sent = reissue_code(svc, session, route, client_ip=data.client_ip,
                            cooldown=not waived)
    except BaseException:
        if replaced is not None:  # its SMS did not go out: watched (and claimable) again
            give_back_fallback(svc, replaced)
        raise
    masked = mask_phone(session.phone)
    log_event("code_resent", channel=session.channel, phone=masked)
    return {"status": "sent", "maskedPhone": masked,
            "retryAfterSec": svc.settings.otp_resend_cooldown_seconds,
            "deliveryRoute": sent.route,
            **route_message(svc, sent.route, masked or "", sent.number or "")}
