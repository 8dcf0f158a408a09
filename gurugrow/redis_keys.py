"""Every Redis key the service uses, built here and nowhere else.

All keys live under ``REDIS_PREFIX``. A part in braces is a Redis Cluster hash tag:
keys that one operation touches together share it, so they land on one slot.
"""

from __future__ import annotations


def otp_session(prefix: str, session_id: str) -> str:
    """The OTP session hash (code hash, salt, attempts, customer, route...)."""
    return f"{prefix}otp:{{{session_id}}}:session"


def otp_active(prefix: str, phone: str, channel: str, account_id: str) -> str:
    """Holds the key of the live session of one phone + messenger identity (one code at a
    time)."""
    return f"{prefix}otp:active:{phone}:{channel}:{account_id}"


def otp_cooldown(prefix: str, phone: str, channel: str, account_id: str) -> str:
    """Exists while phone + messenger identity must wait before another code is sent."""
    return f"{prefix}otp:cooldown:{phone}:{channel}:{account_id}"


def reference(prefix: str, name: str) -> str:
    """Cached RetailCRM reference data (statuses, status groups, offers)."""
    return f"{prefix}cache:{name}"


def operation_once(prefix: str, operation: str, digest: str) -> str:
    """The claim and then the remembered answer of one idempotent operation."""
    return f"{prefix}once:{operation}:{digest}"


def send_counter(prefix: str, kind: str, subject: str, period: str) -> str:
    """Codes sent in one period: per phone or IP per hour, or the global daily budget."""
    return f"{prefix}throttle:{kind}:{subject}:{period}"


def identity_failures(prefix: str, channel: str, account_id: str) -> str:
    """Wrong codes entered by one messenger identity, across its sessions."""
    return f"{prefix}guard:fails:{channel}:{account_id}"


def identity_lock(prefix: str, channel: str, account_id: str) -> str:
    """Exists while the messenger identity is locked out of checking codes."""
    return f"{prefix}guard:lock:{channel}:{account_id}"


def identity_lock_level(prefix: str, channel: str, account_id: str) -> str:
    """How many lockouts the identity had today (each one lasts twice as long)."""
    return f"{prefix}guard:lock-level:{channel}:{account_id}"
