"""Bindings: which CRM customer a messenger account is bound to, and writing one.

Shared by the auth, orders and recommended flows. A RetailCRM failure is not caught
here: the API layer answers it as ``crm_unavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NoReturn, TypeVar

from gurugrow.basics.errors import CrmBusy, FlowRefusal, UpstreamError
from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject
from gurugrow.basics.parallel import both
from gurugrow.basics.phone import mask_phone, normalize_phone
from gurugrow.flows import crm_cache
from gurugrow.flows.mirror import (
    mirror_bound,
    mirror_interacted,
    mirror_unlinked,
    mirrored_binding,
    queue_mark,
)
from gurugrow.flows.order_once import forget_once, request_token
from gurugrow.gateways.retailcrm import Customer
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.caches import ChannelFieldRead
from gurugrow.stores.client import PipelineRider, Riders, WriteBatch
from gurugrow.stores.once import ClaimAhead, Lease
from gurugrow.stores.otp import OtpSession

T = TypeVar("T")


def find_bound_customers(svc: Services, identity: MessengerIdentity) -> list[Customer]:
    """CRM customers whose channel field holds this messenger id."""
    return svc.crm.find_customers_by_custom_field(identity.field_code, identity.account_id)


def bound_customer(svc: Services, identity: MessengerIdentity,
                   claimed_customer_id: str | None = None, *, fresh: bool = False
                   ) -> JsonObject:
    """The one customer bound to ``identity`` (``{"id", "maskedPhone", "customFields"}``)."""
    # Read from the mirror or the binding cache unless ``fresh``; ``claimed_customer_id``
    # is only checked. Raises FlowRefusal: ``not_authorized`` (no binding) or ``conflict``
    # (several, or the claimed id differs).
    mirrored = None if fresh else mirrored_binding(svc, identity)
    if mirrored is not None:  # the mirror is current: it answers, RetailCRM is not asked
        if len(mirrored) > 1:
            _conflict(identity, len(mirrored))
        customer = mirrored[0] if mirrored else crm_cache.NO_BINDING
    else:
        customer = crm_cache.NOT_CACHED if fresh else crm_cache.cached_binding(svc, identity)
    if customer is crm_cache.NOT_CACHED:
        customer = _lookup_binding(svc, identity)
    if customer is crm_cache.NO_BINDING:
        raise FlowRefusal("not_authorized", status="not_authorized")
    if claimed_customer_id and claimed_customer_id != str(customer["id"]):
        raise FlowRefusal("customer_mismatch", status="conflict")
    return customer


def _lookup_binding(svc: Services, identity: MessengerIdentity
                    ) -> JsonObject | Literal[crm_cache.BindingMiss.NO_BINDING]:
    """Ask RetailCRM who holds the messenger id; cache the answer (not a conflict)."""
    customers = find_bound_customers(svc, identity)
    if len(customers) > 1:
        _conflict(identity, len(customers))
    if not customers:
        crm_cache.remember_binding(svc, identity, None)
        return crm_cache.NO_BINDING
    code = svc.settings.retailcrm_cf_chatbot_interacted
    interacted = str(customers[0].custom_fields.get(code, "")).lower() in ("true", "1")
    entry = crm_cache.binding_entry(customers[0].id, customer_masked_phone(customers[0]),
                                    interacted, code)
    crm_cache.remember_binding(svc, identity, entry)
    return entry


def _conflict(identity: MessengerIdentity, customers: int) -> NoReturn:
    log_event("binding_conflict", logging.WARNING, channel=identity.channel,
              customers=customers)
    raise FlowRefusal("conflict", status="conflict")


def customer_masked_phone(customer: Customer | JsonObject) -> str | None:
    """The masked first valid phone of a CRM customer (or of a binding entry)."""
    if not isinstance(customer, Customer):  # a binding entry
        masked = customer.get("maskedPhone")
        return masked if isinstance(masked, str) else None
    for number in customer.phones:
        phone = normalize_phone(number)
        if phone:
            return mask_phone(phone)
    return None


def remember_new_binding(svc: Services, identity: MessengerIdentity, customer_id: str,
                         phone: str, batch: WriteBatch | None = None) -> None:
    """This service just bound the account (binding written with chatbot_interacted)."""
    crm_cache.remember_binding(svc, identity, crm_cache.binding_entry(
        customer_id, mask_phone(phone), True, svc.settings.retailcrm_cf_chatbot_interacted),
        batch)
    remember_field_written(svc, identity.channel, customer_id, identity.account_id, batch)
    mirror_bound(svc, identity, customer_id, mask_phone(phone))


@dataclass(frozen=True)
class FieldSeen:
    """What a customer's channel field held (``account``, "" for nobody) at ``at``."""

    account: str
    at: float

    @classmethod
    def of_session(cls, session: OtpSession) -> FieldSeen | None:
        """What the session's phone lookup read of its customer's field (None: not read)."""
        if session.customer_held is None:
            return None
        return cls(session.customer_held, session.customer_held_at)


def remember_field_written(svc: Services, channel: str, customer_id: str, account_id: str,
                           batch: WriteBatch | None = None) -> None:
    """Record that this service just wrote ``account_id`` into the customer's channel field."""
    # A binding of the customer whose session read the field earlier learns it. (An unlink
    # writes none: the account it names then is only dropped once more, which costs its
    # next call a live read.)
    def lost(error: Exception) -> None:  # then that binding trusts what its session read
        log_event("field_record_failed", logging.WARNING, customer_id=customer_id,
                  error=error)

    # Kept for OTP_TTL_SECONDS (and a minute), as long as such a session lives.
    svc.caches.put_channel_field_written(channel, customer_id, account_id, svc.clock(),
                                         svc.settings.otp_ttl_seconds + 60, batch,
                                         on_failure=lost)


def _field_before(svc: Services, identity: MessengerIdentity, customer_id: str,
                  seen: FieldSeen | None, read: ChannelFieldRead,
                  ride: PipelineRider | None = None) -> FieldSeen | None:
    """What the customer's field held, as far as known without RetailCRM: the later of
    what the session read and what this service wrote since; None when neither is known.
    ``ride`` goes with the record's read, when it must be read now."""
    written = svc.caches.channel_field_written(identity.channel, customer_id, read, ride)
    if written is not None and (seen is None or written[1] >= seen.at):
        return FieldSeen(*written)
    return seen


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
                  method: str | None, seen: FieldSeen | None = None,
                  batch: WriteBatch | None = None, ahead: ClaimAhead | None = None) -> str:
    """Write the binding and service fields in one CRM call; return ``verifiedUntil``."""
    # ``batch``: the Redis writes that follow the CRM's (the hold freed, the cut-off
    # account's cache dropped) go when the caller sends it.
    # ``ahead``: the account's hold as claimed in an earlier round trip (``hold_ahead``).

    # This service's record of the field rides on the hold's round trip, and so does the
    # next RetailCRM call's slot unless the request already holds one. A hold claimed
    # ahead carried neither: the record is read after "who holds the account", with
    # the write's slot, due next.
    read = svc.caches.channel_field_read(identity.channel, customer_id)

    def bind(waited: bool) -> str:
        if waited:  # another binding of the account ran meanwhile: the ride read too early
            read.forget()
        # When the customer was bound to another account of the channel, that account
        # loses it at once (``drop_binding``): which one is ``seen`` (what the phone's
        # lookup read of the customer) unless this service wrote the field since; knowing
        # neither, RetailCRM is asked.
        if seen is not None and not read.answered:
            holders = find_bound_customers(svc, identity)
            before = _field_before(svc, identity, customer_id, seen, read,
                                   ride=svc.crm.slot_rider())
            previous = (before or seen).account
        elif (before := _field_before(svc, identity, customer_id, seen, read)) is not None:
            holders, previous = find_bound_customers(svc, identity), before.account
        else:  # who holds the account, and what the customer holds: two reads at once
            holders, current = both(lambda: find_bound_customers(svc, identity),
                                    lambda: svc.crm.get_customer(customer_id))
            previous = str((current.custom_fields if current else {})
                           .get(identity.field_code) or "")
        if any(c.id != customer_id for c in holders):
            # Another customer holds the id: ``conflict``, nothing written.
            _conflict(identity, len(holders))
        fields, verified_until = binding_fields(svc, identity, method)
        svc.crm.edit_customer_custom_fields(customer_id, fields)
        if previous and previous != identity.account_id:
            # The customer's field held another account: overwritten in RetailCRM, it
            # goes from every cache and the mirror too, so that account is cut off now.
            log_event("binding_moved", channel=identity.channel, customer_id=customer_id)
            drop_binding(svc, MessengerIdentity(identity.channel, previous,
                                                identity.field_code), customer_id, batch)
        return verified_until

    # Serialised per account.
    return one_binding_at_a_time(svc, identity, bind,
                                 Riders(read, svc.crm.slot_rider()), batch, ahead)


def hold_ahead(svc: Services, identity: MessengerIdentity) -> ClaimAhead:
    """The claim of the account's binding hold, to ride an earlier round trip of the
    request (the code check's); ``give_up`` frees it when no binding follows."""
    return svc.caches.claim_ahead(
        "binding", request_token("binding", identity.channel, identity.account_id),
        svc.settings.otp_ttl_seconds, svc.settings.in_progress_lease_seconds)


def one_binding_at_a_time(svc: Services, identity: MessengerIdentity,
                          work: Callable[[bool], T], riders: Riders | None = None,
                          batch: WriteBatch | None = None,
                          ahead: ClaimAhead | None = None) -> T:
    """Run ``work(waited)`` while no other binding of the same messenger account runs."""
    # ``work``: who holds the account, then the write; two bindings at once would bind it
    # to two customers. ``waited`` says the hold came later.
    # ``riders`` ride on the hold's first round trip.
    # ``batch``: the hold is freed when that batch is sent, after its other writes.
    # ``ahead``: the hold's first claim is that one (``hold_ahead``).
    token = request_token("binding", identity.channel, identity.account_id)
    done: list[T] = []

    def run(lease: Lease) -> JsonObject:
        done.append(work(lease.waited))
        return {}

    # A second one waits for the first (up to BOT_ANSWER_SECONDS, then ``in_progress``);
    # the hold is a renewed lease, so a dead worker's lapses by itself.
    svc.caches.run_once("binding", token, svc.settings.otp_ttl_seconds, run,
                        keep=lambda result: False,
                        wait_seconds=svc.settings.bot_answer_seconds,
                        lease_seconds=svc.settings.in_progress_lease_seconds, rider=riders,
                        batch=batch, ahead=ahead)
    return done[0]


def drop_binding(svc: Services, identity: MessengerIdentity, customer_id: str,
                 batch: WriteBatch | None = None) -> None:
    """The account is no longer bound to ``customer_id``: drop its cached and mirrored binding."""
    # So its next call is answered from RetailCRM (``not_authorized`` when nothing holds
    # it). The cached binding goes with a contact binding's kept answer; with ``batch``,
    # when that batch is sent.
    forget_cached_binding(svc, identity, batch)
    mirror_unlinked(svc, identity, customer_id)


def forget_cached_binding(svc: Services, identity: MessengerIdentity,
                          batch: WriteBatch | None = None,
                          forgot_contact: Callable[[], None] = lambda: None) -> None:
    """The account's cached binding goes, and with it a contact binding's kept answer (a
    contact shared again binds again; ``forgot_contact`` is told). With ``batch``, when
    that batch is sent."""
    def forget_contact(token: str | None) -> None:
        if token is not None:
            forget_once(svc, "contact", token)
            forgot_contact()

    crm_cache.forget_binding(svc, identity, forget_contact, batch)


def mark_interacted(svc: Services, customer: JsonObject,
                    identity: MessengerIdentity | None = None) -> None:
    """Best-effort ``chatbot_interacted=true``; skipped when already set, never fails.
    With ``identity`` the cached binding learns it, so the next visit skips the write."""
    code = svc.settings.retailcrm_cf_chatbot_interacted
    fields = customer.get("customFields") or {}
    if str(fields.get(code, "")).lower() in ("true", "1"):
        return
    if queue_mark(svc, str(customer["id"])):  # the mirror poller writes it, off this path
        return
    try:
        svc.crm.edit_customer_custom_fields(str(customer["id"]), {code: "true"})
    except (UpstreamError, CrmBusy) as e:
        # The answer is already decided: a missed mark must not spoil it.
        log_event("mark_interacted_failed", logging.WARNING, customer_id=customer["id"],
                  error=e)
        return
    mirror_interacted(svc, str(customer["id"]))
    if identity is not None and "maskedPhone" in customer:
        crm_cache.remember_binding(svc, identity, crm_cache.binding_entry(
            customer["id"], customer["maskedPhone"], True, code))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
