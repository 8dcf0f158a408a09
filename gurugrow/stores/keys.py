"""Every Redis key the service uses, built here and nowhere else.

All keys live under ``REDIS_PREFIX``. A part in braces is a Redis Cluster hash tag:
keys that one operation touches together share it, so they land on one slot and every
script runs unchanged on Redis Cluster:

- ``{<identity tag>}``: one messenger account's OTP sessions, its live-session pointer and
  its wrong-code guard (the create and verify scripts);
- ``{send}``: every send limit and the cooldowns, which one script admits together. Sends
  are rare (each one is paid), so this one slot is never hot.
- ``{deliveries}``: the sorted set of messenger sends due a delivery check (one key; a
  session's delivery record carries the session's identity tag).
"""

from __future__ import annotations

import hashlib
import re

SEND_TAG = "{send}"
# The one sorted set of messenger sends due a delivery check: a single key (one slot),
# touched only by single-key commands and scripts, so it runs on Redis Cluster too.
DELIVERY_DUE_TAG = "{deliveries}"
_IDENTITY_TAG = re.compile(r"[0-9a-f]{16}")


def identity_tag(channel: str, account_id: str) -> str:
    """The hash tag of one messenger account: 16 hex digits, safe in any key."""
    return hashlib.blake2b(f"{channel}:{account_id}".encode(), digest_size=8).hexdigest()


def session_tag(session_id: str) -> str | None:
    """The identity tag a session id starts with (``<tag>.<random>``), if well formed."""
    tag, dot, rest = session_id.partition(".")
    if not dot or not rest or _IDENTITY_TAG.fullmatch(tag) is None:
        return None
    return tag


def otp_session(prefix: str, session_id: str) -> str:
    """The OTP session hash (code hash, salt, attempts, customer, route...); the session
    id carries its identity tag (see ``session_tag``)."""
    return f"{prefix}otp:{{{session_tag(session_id)}}}:session:{session_id}"


def otp_claim(prefix: str, session_id: str) -> str:
    """The short lease of a check that is running for the session's code (its holder's
    token); it lapses by itself when the worker dies."""
    return f"{prefix}otp:{{{session_tag(session_id)}}}:claim:{session_id}"


def otp_active(prefix: str, phone: str, channel: str, account_id: str) -> str:
    """Holds the key of the live session of one phone + messenger identity (one code at a
    time)."""
    return f"{prefix}otp:{{{identity_tag(channel, account_id)}}}:active:{phone}"


def otp_cooldown(prefix: str, phone: str, channel: str, account_id: str) -> str:
    """Exists while phone + messenger identity must wait before another code is sent."""
    return f"{prefix}throttle:{SEND_TAG}:cooldown:{phone}:{channel}:{account_id}"


def reference(prefix: str, name: str) -> str:
    """Cached RetailCRM reference data (statuses, status groups, offers)."""
    return f"{prefix}cache:{name}"


def bundle_offer(prefix: str, article: str) -> str:
    """The catalog offer a recommended set's bundle article resolves to (a cached
    reference, its name its own so no other cache can take it)."""
    return reference(prefix, f"bundle:{article}")


def operation_once(prefix: str, operation: str, digest: str) -> str:
    """The marker of one idempotent operation: the notes of the attempt running it, then
    its remembered answer. Tagged by the operation, so its lease shares the slot."""
    return f"{prefix}once:{{{operation}:{digest}}}"


def operation_lease(prefix: str, operation: str, digest: str) -> str:
    """Exists (with a short TTL, renewed) while an attempt runs the operation."""
    return f"{prefix}once:{{{operation}:{digest}}}:lease"


def contact_token(prefix: str, channel: str, account_id: str) -> str:
    """The run-once token of the messenger account's latest contact binding, so an unlink
    can drop its kept answer (a contact shared again after it binds again)."""
    return f"{prefix}once:{{{identity_tag(channel, account_id)}}}:contact"


def send_counter(prefix: str, kind: str, subject: str, period: str) -> str:
    """Codes sent in one period: per phone, IP or messenger account (its identity tag) per
    hour or day, or the global daily budget."""
    return f"{prefix}throttle:{SEND_TAG}:{kind}:{subject}:{period}"


def identity_failures(prefix: str, channel: str, account_id: str) -> str:
    """Wrong codes entered by one messenger identity, across its sessions."""
    return f"{prefix}guard:{{{identity_tag(channel, account_id)}}}:fails"


def identity_lock(prefix: str, channel: str, account_id: str) -> str:
    """Exists while the messenger identity is locked out of checking codes."""
    return f"{prefix}guard:{{{identity_tag(channel, account_id)}}}:lock"


def identity_lock_level(prefix: str, channel: str, account_id: str) -> str:
    """How many lockouts the identity had today (each one lasts twice as long)."""
    return f"{prefix}guard:{{{identity_tag(channel, account_id)}}}:lock-level"


def delivery_record(prefix: str, session_id: str) -> str:
    """The latest send of one OTP session: route, GreenSMS request id, sent at, status."""
    return f"{prefix}delivery:{{{session_tag(session_id)}}}:send:{session_id}"


def delivery_due(prefix: str) -> str:
    """Sorted set of messenger sends (``<session id>|<request id>``) by due check time."""
    return f"{prefix}delivery:{DELIVERY_DUE_TAG}:due"


def everything(prefix: str) -> str:
    """A SCAN pattern of every key under the prefix (the sandbox's reset clears them)."""
    escaped = "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in prefix)
    return f"{escaped}*"


def doctor_probe(prefix: str) -> str:
    """Written and deleted by `gurugrow doctor` to prove Redis takes writes."""
    return f"{prefix}doctor:probe"


def health_probe(prefix: str) -> str:
    """Written (with a short TTL) by every /health call to prove Redis takes writes."""
    return f"{prefix}health:probe"


CRM_QUOTA_TAG = "{crm-quota}"


def crm_quota_tail(prefix: str) -> str:
    """The RetailCRM bucket: the server time (µs) of the next free call slot."""
    return f"{prefix}crm:{CRM_QUOTA_TAG}:tail"


def crm_quota_waiting(prefix: str) -> str:
    """Reads waiting in line for a RetailCRM slot beyond the read horizon."""
    return f"{prefix}crm:{CRM_QUOTA_TAG}:waiting"


def binding_cache(prefix: str, channel: str, account_id: str) -> str:
    """Cached binding of one messenger account (customer id, masked phone) or its absence."""
    return f"{prefix}cache:{{{identity_tag(channel, account_id)}}}:binding"


def channel_field_written(prefix: str, channel: str, customer_id: str) -> str:
    """The messenger account this service last wrote into one customer's channel field,
    and when (a binding check's "who held it before" without asking RetailCRM)."""
    return f"{prefix}cache:field:{channel}:{customer_id}"


def orders_cache(prefix: str, customer_id: str) -> str:
    """Cached order list of one customer (the raw RetailCRM page)."""
    return f"{prefix}cache:orders:{customer_id}"


def loading_marker(cache_key: str) -> str:
    """Exists while one request loads the value of ``cache_key`` (others wait for it)."""
    return f"{cache_key}:loading"


# The RetailCRM mirror (gurugrow/stores/mirror.py). Its sync state and lease share one tag
# (one script checks the lease and saves the history position); each messenger account's
# binding carries the account's tag, each customer's record and orders the customer's.
MIRROR_TAG = "{mirror}"


def mirror_state(prefix: str) -> str:
    """The mirror's sync state: history positions (sinceId) and the last sync's time."""
    return f"{prefix}mirror:{MIRROR_TAG}:state"


def mirror_lease(prefix: str) -> str:
    """Held (short TTL, renewed) by the one mirror poller running, across hosts."""
    return f"{prefix}mirror:{MIRROR_TAG}:lease"


def mirror_order_owners(prefix: str) -> str:
    """Hash: mirrored order id → the customer it is filed under."""
    return f"{prefix}mirror:{MIRROR_TAG}:order-owners"


def mirror_binding(prefix: str, channel: str, account_id: str) -> str:
    """Hash: customer id → entry, for every customer holding this messenger account."""
    return f"{prefix}mirror:{{{identity_tag(channel, account_id)}}}:binding"


def mirror_customer(prefix: str, customer_id: str) -> str:
    """A mirrored bound customer: its messenger accounts (so a change can drop the old
    ones), masked phone and interacted flag."""
    return f"{prefix}mirror:{{c{customer_id}}}:customer"


def mirror_orders(prefix: str, customer_id: str) -> str:
    """One bound customer's newest orders (the fields the order view reads), compressed
    JSON; absent: not mirrored (or evicted, or made incomplete by an order created here)."""
    return f"{prefix}mirror:{{c{customer_id}}}:orders"


def mirror_recheck(prefix: str) -> str:
    """Sorted set: what the poller must re-read (``c:<customer id>``, ``o:<order id>``,
    ``a:<channel>:<account id>``) → when (a merge's second look, a key found missing)."""
    return f"{prefix}mirror:{MIRROR_TAG}:recheck"


def mirror_bound_index(prefix: str) -> str:
    """Sorted set: every mirrored bound customer → when RetailCRM last confirmed it (the
    rolling reconcile re-reads the oldest first; an eviction check walks it)."""
    return f"{prefix}mirror:{MIRROR_TAG}:bound"


def mirror_marks(prefix: str) -> str:
    """Sorted set: customers whose ``chatbot_interacted`` mark is still to be written →
    the earliest time of the next attempt (kept until written: a crash loses none)."""
    return f"{prefix}mirror:{MIRROR_TAG}:marks"
