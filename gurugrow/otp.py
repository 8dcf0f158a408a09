"""One-time codes in Redis: hashed sessions, resend cooldown, daily caps, atomic checks.

A code is never stored: only PBKDF2-HMAC-SHA256(code, per-code salt + ``OTP_SECRET``),
so a Redis dump alone does not reveal it. Every key has a TTL.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from gurugrow import redis_keys
from gurugrow.storage import StorageUnavailable, redis_guard

# After the code's own lifetime the session hash is kept this long more, so a late
# check can be told "expired" rather than "no such session".
_TOMBSTONE_SECONDS = 3600
# A check that claimed the code and then died (worker killed) frees it after this long.
_CLAIM_TIMEOUT_SECONDS = 60

# Compares, counts and claims in one step, so two concurrent checks of one code can never
# both succeed and a wrong guess is always counted.
_VERIFY_SCRIPT = """
local s = redis.call('HMGET', KEYS[1], 'hash', 'state', 'attempts', 'expires_at', 'claimed_at')
if not s[1] then return 'missing' end
local now = tonumber(ARGV[3])
if s[2] == 'claimed' and now - tonumber(s[5] or '0') < tonumber(ARGV[4]) then return 'busy' end
if s[2] == 'used' then return 'missing' end
if s[2] == 'locked' then return 'locked' end
if now > tonumber(s[4]) then return 'expired' end
if s[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'claimed_at', ARGV[3])
  return 'ok'
end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'locked')
  return 'locked'
end
return 'invalid'
"""


@dataclass(frozen=True)
class OtpPolicy:
    """The OTP limits (from settings)."""

    secret: str
    length: int = 6
    ttl_seconds: int = 300
    max_attempts: int = 5
    resend_cooldown_seconds: int = 60
    max_sends: int = 5
    max_sends_per_phone_per_day: int = 10
    hash_iterations: int = 20000


@dataclass
class OtpSession:
    """What a code was issued for. ``customer_id`` None means no customer: a decoy session."""

    session_id: str
    phone: str
    channel: str
    account_id: str
    customer_id: str | None
    purpose: str = "auth"
    route: str | None = None
    sends: int = 1
    attempts: int = 0
    expires_at: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def is_decoy(self) -> bool:
        return self.customer_id is None


class OtpStore:
    """OTP sessions and send throttles in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, policy: OtpPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._prefix = prefix
        self._policy = policy
        self.clock = clock
        self._verify = client.register_script(_VERIFY_SCRIPT)

    # -- codes -----------------------------------------------------------------------
    def new_code(self) -> str:
        """A fresh random code of ``OTP_LENGTH`` digits."""
        return "".join(secrets.choice("0123456789") for _ in range(self._policy.length))

    def _hash(self, code: str, salt: str) -> str:
        pepper = self._policy.secret.encode()
        digest = hashlib.pbkdf2_hmac("sha256", code.encode(), salt.encode() + pepper,
                                     self._policy.hash_iterations)
        return digest.hex()

    def _hashed_fields(self, code: str | None) -> dict[str, str]:
        salt = secrets.token_hex(16)
        # A decoy session gets the hash of a random value no one knows, so it behaves
        # exactly like a real one on check: every guess is wrong and counted.
        secret_code = code if code is not None else secrets.token_hex(16)
        return {"salt": salt, "hash": self._hash(secret_code, salt)}

    # -- throttles -------------------------------------------------------------------
    def reserve_send_slot(self, phone: str, channel: str, account_id: str) -> int:
        """Take the resend cooldown slot of phone + identity; 0 if taken, else seconds left.

        Atomic (SET NX), so two simultaneous starts cannot both send.
        """
        cooldown = self._policy.resend_cooldown_seconds
        if cooldown <= 0:
            return 0
        key = self._cooldown_key(phone, channel, account_id)
        with self._guard():
            if self._redis.set(key, "1", nx=True, ex=cooldown):
                return 0
            return max(int(self._redis.ttl(key)), 1)

    def release_send_slot(self, phone: str, channel: str, account_id: str) -> None:
        """Give the cooldown slot back when nothing was sent after all."""
        with self._guard():
            self._redis.delete(self._cooldown_key(phone, channel, account_id))

    def _cooldown_key(self, phone: str, channel: str, account_id: str) -> str:
        return redis_keys.otp_cooldown(self._prefix, phone, channel, account_id)

    def count_phone_send(self, phone: str) -> bool:
        """Count one send to ``phone`` today; False when the daily cap is already reached."""
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        key = redis_keys.phone_daily_sends(self._prefix, phone, day)
        with self._guard():
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * 86400)
            count, _ = pipe.execute()
        return int(count) <= self._policy.max_sends_per_phone_per_day

    # -- sessions --------------------------------------------------------------------
    def create_session(self, *, phone: str, channel: str, account_id: str,
                       customer_id: str | None, code: str | None, route: str | None,
                       purpose: str = "auth",
                       payload: dict[str, Any] | None = None) -> OtpSession:
        """Store a new session for a code that was just sent; drop the previous one."""
        now = self.clock()
        session = OtpSession(
            session_id=secrets.token_urlsafe(18), phone=phone, channel=channel,
            account_id=account_id, customer_id=customer_id, purpose=purpose, route=route,
            expires_at=now + self._policy.ttl_seconds, payload=payload or {},
        )
        record = {
            "phone": phone, "channel": channel, "account_id": account_id,
            "customer_id": customer_id or "", "purpose": purpose, "route": route or "",
            "sends": 1, "attempts": 0, "state": "pending",
            "expires_at": f"{session.expires_at:.3f}",
            "payload": json.dumps(session.payload, ensure_ascii=False),
            **self._hashed_fields(code),
        }
        key = redis_keys.otp_session(self._prefix, session.session_id)
        active = redis_keys.otp_active(self._prefix, phone, channel, account_id)
        ttl = self._policy.ttl_seconds + _TOMBSTONE_SECONDS
        with self._guard():
            pipe = self._redis.pipeline()
            pipe.hset(key, mapping=record)
            pipe.expire(key, ttl)
            pipe.set(active, session.session_id, ex=ttl, get=True)
            previous = pipe.execute()[2]
            if previous:
                # One code at a time per phone + identity: the old code stops working.
                self._redis.delete(redis_keys.otp_session(self._prefix, _text(previous)))
        return session

    def load(self, session_id: str) -> OtpSession | None:
        """The session if it exists and was not used, expired or locked is still returned."""
        key = redis_keys.otp_session(self._prefix, session_id)
        with self._guard():
            raw = self._redis.hgetall(key)
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        if data.get("state") == "used":
            return None
        return OtpSession(
            session_id=session_id, phone=data["phone"], channel=data["channel"],
            account_id=data["account_id"], customer_id=data["customer_id"] or None,
            purpose=data.get("purpose", "auth"), route=data.get("route") or None,
            sends=int(data.get("sends", 1)), attempts=int(data.get("attempts", 0)),
            expires_at=float(data.get("expires_at", 0)),
            payload=json.loads(data.get("payload") or "{}"),
        )

    def replace_code(self, session: OtpSession, code: str | None, route: str | None) -> None:
        """Store a resent code: new hash and lifetime, attempts reset, one more send."""
        now = self.clock()
        session.expires_at = now + self._policy.ttl_seconds
        session.route = route
        session.sends += 1
        session.attempts = 0
        key = redis_keys.otp_session(self._prefix, session.session_id)
        record = {"route": route or "", "sends": session.sends, "attempts": 0,
                  "state": "pending", "expires_at": f"{session.expires_at:.3f}",
                  **self._hashed_fields(code if not session.is_decoy else None)}
        with self._guard():
            pipe = self._redis.pipeline()
            pipe.hset(key, mapping=record)
            pipe.expire(key, self._policy.ttl_seconds + _TOMBSTONE_SECONDS)
            pipe.execute()

    def remember_customer(self, session: OtpSession, customer_id: str) -> None:
        """Record a customer created during the check, so a retry does not create another."""
        session.customer_id = customer_id
        key = redis_keys.otp_session(self._prefix, session.session_id)
        with self._guard():
            self._redis.hset(key, "customer_id", customer_id)

    def sends_left(self, session: OtpSession) -> bool:
        return session.sends < self._policy.max_sends

    def verify(self, session_id: str, code: str) -> str:
        """Check a code and claim the session on success.

        Returns ``ok`` (claimed: call ``consume`` or ``release``), ``invalid``, ``locked``,
        ``expired``, ``busy`` (another check holds it) or ``missing``.
        """
        key = redis_keys.otp_session(self._prefix, session_id)
        with self._guard():
            salt = self._redis.hget(key, "salt")
            if salt is None:
                return "missing"
            candidate = self._hash(code, _text(salt))
            result = self._verify(keys=[key], args=[
                candidate, self._policy.max_attempts, f"{self.clock():.3f}",
                _CLAIM_TIMEOUT_SECONDS])
        return _text(result)

    def release(self, session_id: str) -> None:
        """Un-claim after our own failure, so the same code can be tried again."""
        key = redis_keys.otp_session(self._prefix, session_id)
        with self._guard():
            self._redis.hset(key, "state", "pending")

    def consume(self, session: OtpSession) -> None:
        """Mark the code used for good (kept as a tombstone until its TTL ends)."""
        key = redis_keys.otp_session(self._prefix, session.session_id)
        active = redis_keys.otp_active(self._prefix, session.phone, session.channel,
                                       session.account_id)
        with self._guard():
            pipe = self._redis.pipeline()
            pipe.hset(key, mapping={"state": "used", "hash": "", "salt": ""})
            pipe.delete(active)
            pipe.execute()

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def _guard(self) -> redis_guard:
        return redis_guard()


__all__ = ["OtpPolicy", "OtpSession", "OtpStore", "StorageUnavailable"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
