"""A shop's manager's view of one messenger account, and the two things a manager does
to it (``flask --app wsgi gurugrow account show|unbind|clear <channel> <id>``).

``show`` reads what the service knows: the customers RetailCRM binds the account to
(masked phone, last verification and its method), the cached and mirrored binding, the
account's send counters and lockout. ``unbind`` clears the messenger field of every
customer holding the account in RetailCRM, then the cached binding, a contact binding's
kept answer and the mirror's entry, as ``/auth/unlink`` does. ``clear`` lifts the
account's caps. Each is logged (``account_*`` events; no phone, no code)."""

from __future__ import annotations

from gurugrow.basics.identity import MessengerIdentity
from gurugrow.basics.json_types import JsonObject
from gurugrow.flows import crm_cache
from gurugrow.flows.binding import (
    customer_masked_phone,
    find_bound_customers,
    forget_cached_binding,
)
from gurugrow.flows.mirror import mirror_unlinked, mirrored_binding
from gurugrow.logs import log_event
from gurugrow.services import Services


def show_account(svc: Services, identity: MessengerIdentity) -> list[str]:
    """What the service knows about the account, one line per fact."""
    s = svc.settings
    lines = [f"account {identity.channel} {identity.account_id} (RetailCRM field "
             f"{identity.field_code})"]
    holders = find_bound_customers(svc, identity)
    if not holders:
        lines.append("binding: none in RetailCRM (the account is not authorized)")
    for customer in holders:
        fields = customer.custom_fields
        lines.append(
            f"binding: customer {customer.id}, phone "
            f"{customer_masked_phone(customer) or '(none)'}; last verification "
            f"{fields.get(s.retailcrm_cf_last_verified_at) or '(none)'} in "
            f"{fields.get(s.retailcrm_cf_last_verified_channel) or '(none)'} by "
            f"{fields.get(s.retailcrm_cf_last_verification_method) or '(none)'}; chatbot "
            f"interacted: {fields.get(s.retailcrm_cf_chatbot_interacted) or 'no'}")
    if len(holders) > 1:
        lines.append(f"binding: {len(holders)} customers hold the account: the bot answers "
                     "conflict until `account unbind` (or a manager clears the field)")
    cached = crm_cache.cached_binding(svc, identity)
    if isinstance(cached, dict):
        lines.append(f"cache: bound to customer {cached.get('id')}")
    else:
        lines.append(f"cache: {'bound to nobody' if cached is crm_cache.NO_BINDING else 'empty'}")
    if svc.mirror is None:
        lines.append("mirror: off (CRM_MIRROR=0)")
    else:
        mirrored = mirrored_binding(svc, identity)
        lines.append("mirror: not current (reads go to RetailCRM)" if mirrored is None else
                     "mirror: bound to " + (", ".join(f"customer {e['id']}" for e in mirrored)
                                            or "nobody"))
    limits = svc.limits.of_account(identity.channel, identity.account_id)
    locked = limits.pop("locked")
    lines.append("limits: " + ", ".join(f"{name} {value}" for name, value in limits.items())
                 + f" (caps {s.otp_max_sends_per_account_per_hour}/hour, "
                 f"{s.otp_max_sends_per_account_per_day}/day, "
                 f"{s.otp_identity_max_failures} wrong codes)")
    lines.append(f"lockout: {f'locked for {locked} s more' if locked else 'not locked'}")
    log_event("account_shown", channel=identity.channel, customers=len(holders))
    return lines


def unbind_account(svc: Services, identity: MessengerIdentity) -> list[str]:
    """Clear the account's binding everywhere: RetailCRM's field of every customer
    holding it, the cached binding, a contact binding's kept answer, the mirror."""
    lines = []
    holders = find_bound_customers(svc, identity)
    for customer in holders:
        customer_id = customer.id
        svc.crm.edit_customer_custom_fields(customer_id, {identity.field_code: ""})
        mirror_unlinked(svc, identity, customer_id)
        lines.append(f"cleared {identity.field_code} of customer {customer_id} in RetailCRM "
                     "and the mirror")
        log_event("account_unbound", channel=identity.channel, customer_id=customer_id)
    forgot: list[bool] = []
    forget_cached_binding(svc, identity, forgot_contact=lambda: forgot.append(True))
    lines.append("dropped the cached binding" + (" and the contact binding's kept answer"
                                                 if forgot else ""))
    if not holders:
        lines.insert(0, "no customer in RetailCRM holds the account")
        log_event("account_unbound", channel=identity.channel, customer_id="-")
    return lines


def clear_account(svc: Services, identity: MessengerIdentity) -> list[str]:
    """Lift the account's caps: send counters, wrong codes, lockout."""
    before: JsonObject = svc.limits.of_account(identity.channel, identity.account_id)
    removed = svc.limits.clear_account(identity.channel, identity.account_id)
    log_event("account_cleared", channel=identity.channel, keys=removed)
    lifted = ", ".join(f"{name} {value}" + (" s more" if name == "locked" else "")
                       for name, value in before.items() if value) or "nothing was set"
    return [f"lifted the caps of {identity.channel} {identity.account_id} ({lifted}): it may "
            "ask for codes and check them again at once"]
