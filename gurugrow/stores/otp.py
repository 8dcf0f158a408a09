"""One-time codes in Redis: hashed sessions and atomic, counted checks.

A code is never stored: only PBKDF2-HMAC-SHA256(code, salt + ``OTP_SECRET``), the salt
being the session's random id, so a Redis dump alone does not reveal it. Every key has a
TTL. A check costs one round trip: one script finds the session, compares, counts and
claims; a successful one a second, storing the answer a replay of the same code gets
back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from gurugrow.config import Settings
from gurugrow.logs import log_event
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import (
    REDIS_ERRORS,
    PipelineRider,
    RedisHash,
    Riders,
    WriteBatch,
    redis_guard,
    run_script,
    written,
)
from gurugrow.stores.once import RENEW_LEASE_SCRIPT
from gurugrow.stores.scripts import load_script

# After the code's own lifetime the session hash is kept this long more, so a late
# check can be told "expired" rather than "no such session".
_TOMBSTONE_SECONDS = 3600
# How long a replayed check waits for the first one still running, and how often it looks.
CLAIM_WAIT_SECONDS = 10.0
CLAIM_POLL_SECONDS = 0.05

# Stores a new session and drops the previous one of the same phone + identity (one code
# at a time), in one step.
# The pointer holds the session's key name, so the previous session can be dropped here.
_CREATE_SCRIPT = load_script("otp_create")

# Finds, compares, counts and claims in one step (one round trip). A session that is
# unknown, burned, or another messenger identity's or purpose's is ``missing``, not a
# counted guess. Two concurrent checks of one code can never both succeed, and every wrong
# guess is counted, per session and per messenger identity. A right code moves the
# session to ``claimed`` under a short lease (KEYS[5], renewed while the check's work
# runs); the work ends it ``done`` with its answer stored, so a replay of the same code
# gets that answer (``replay``), or while it still runs, ``busy``. A claim whose lease
# lapsed (its worker died) is checked like a pending code again. The candidate was hashed
# with the session's id as salt before anything was read.
# Every answer about the session carries its fields (HGETALL's flat list) last.
_CHECK_SCRIPT = load_script("otp_check")

# Ends a claim: ``done`` with the answer to replay, ``used`` (burned: a conflict) or back
# to ``pending`` (our own failure: the code may be tried again). Only a session still
# claimed changes, so a late finish never revives a newer state.
_SETTLE_SCRIPT = load_script("otp_settle")


# Replaces the code of a session that is still waiting for one: a session checked,
# claimed or burned meanwhile (a check or wrong guesses racing a resend or the deliveries
# worker) is left as it is, and concurrent replacements each count their send.
_REPLACE_SCRIPT = load_script("otp_replace")

@dataclass(frozen=True)
class OtpPolicy:
    """The OTP limits; the defaults live in Settings alone."""

    secret: str
    length: int
    ttl_seconds: int
    max_attempts: int
    max_sends: int
    hash_iterations: int
    identity_max_failures: int
    lockout_base_seconds: int
    lockout_max_seconds: int
    lease_seconds: float

    @classmethod
    def from_settings(cls, s: Settings) -> OtpPolicy:
        """The policy the OTP_* settings describe."""
        return cls(
            secret=s.otp_secret, length=s.otp_length, ttl_seconds=s.otp_ttl_seconds,
            max_attempts=s.otp_max_attempts, max_sends=s.otp_max_sends,
            hash_iterations=s.otp_hash_iterations,
            identity_max_failures=s.otp_identity_max_failures,
            lockout_base_seconds=s.otp_lockout_base_seconds,
            lockout_max_seconds=s.otp_lockout_max_seconds,
            lease_seconds=s.in_progress_lease_seconds)


@dataclass
class OtpSession:
    """What a code was issued for. ``sent`` False means nothing was sent: a decoy session
    (not the same as no ``customer_id``: a new customer of a recommended order is sent a
    code before it has an id)."""

    session_id: str
    phone: str
    channel: str
    account_id: str
    customer_id: str | None
    purpose: str = "auth"
    # The verification method of the latest send (``telegram_otp``: routes.Route.method),
    # stored under the hash field ``route`` (the name live sessions already carry).
    method: str | None = None
    sends: int = 1
    attempts: int = 0
    expires_at: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)
    sent: bool = True
    state: str = "pending"
    claim_token: str = field(default="", repr=False)
    # Not stored: the number to call of an incoming-call start, for its answer.
    call_number: str = field(default="", repr=False)
    # The externalId of a customer a check noted it was about to create (see
    # ``note_creating_customer``): a later attempt looks it up before creating one.
    creating_customer: str = ""
    # What the customer's channel field held when the code was issued ("" for nobody),
    # and when; None: not read (a binding then asks RetailCRM).
    customer_held: str | None = None
    customer_held_at: float = 0.0

    @property
    def is_decoy(self) -> bool:
        return not self.sent


class OtpStore:
    """OTP sessions in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, policy: OtpPolicy,
                 clock: Callable[[], float]) -> None:
        self._redis = client
        self._prefix = prefix
        self._policy = policy
        self.clock = clock
        self._create = client.register_script(_CREATE_SCRIPT)
        self._check = client.register_script(_CHECK_SCRIPT)
        self._settle = client.register_script(_SETTLE_SCRIPT)
        self._renew = client.register_script(RENEW_LEASE_SCRIPT)
        self._replace = client.register_script(_REPLACE_SCRIPT)

    # -- codes -----------------------------------------------------------------------
    def new_code(self, length: int | None = None) -> str:
        """A fresh random code of ``length`` digits (default ``OTP_LENGTH``)."""
        return "".join(secrets.choice("0123456789")
                       for _ in range(length or self._policy.length))

    def _hash(self, code: str, salt: str) -> str:
        pepper = self._policy.secret.encode()
        digest = hashlib.pbkdf2_hmac("sha256", code.encode(), salt.encode() + pepper,
                                     self._policy.hash_iterations)
        return digest.hex()

    def _hashed_fields(self, code: str | None, salt: str) -> RedisHash:
        # The salt is the session's id: random, one per session, and known to a check
        # before it reads anything, so finding and checking take one round trip.
        # A decoy session gets the hash of a random value no one knows, so it behaves
        # exactly like a real one on check: every guess is wrong and counted.
        secret_code = code if code is not None else secrets.token_hex(16)
        return {"salt": salt, "hash": self._hash(secret_code, salt)}

    # -- sessions --------------------------------------------------------------------
    def create_session(self, *, phone: str, channel: str, account_id: str,
                       customer_id: str | None, code: str | None, method: str | None,
                       purpose: str = "auth", payload: dict[str, Any] | None = None,
                       customer_held: str | None = None, customer_held_at: float = 0.0,
                       batch: WriteBatch | None = None) -> OtpSession:
        """Store a new session for a code that was just sent (``code`` None: nothing was
        sent, a decoy); drop the previous one. With ``batch`` it is stored when the
        batch is sent."""
        # The id starts with the account's hash tag, so its keys share one cluster slot.
        tag = redis_keys.identity_tag(channel, account_id)
        session = OtpSession(
            session_id=f"{tag}.{secrets.token_urlsafe(18)}", phone=phone, channel=channel,
            account_id=account_id, customer_id=customer_id, purpose=purpose, method=method,
            expires_at=self.clock() + self._policy.ttl_seconds, payload=payload or {},
            sent=code is not None, customer_held=customer_held,
            customer_held_at=customer_held_at,
        )
        held: dict[str, str] = {} if customer_held is None else {
            "customer_held": customer_held, "customer_held_at": f"{customer_held_at:.3f}"}
        record = {
            "phone": phone, "channel": channel, "account_id": account_id,
            "customer_id": customer_id or "", "purpose": purpose, "route": method or "",
            "sends": 1, "attempts": 0, "state": "pending", "sent": int(session.sent),
            "expires_at": f"{session.expires_at:.3f}",
            "payload": json.dumps(session.payload, ensure_ascii=False),
            **self._hashed_fields(code, session.session_id),
        }
        flat = [str(item) for pair in (*record.items(), *held.items()) for item in pair]
        ttl = self._policy.ttl_seconds + _TOMBSTONE_SECONDS
        keys = [self._session_key(session.session_id),
                redis_keys.otp_active(self._prefix, phone, channel, account_id)]
        with written(self._redis, batch) as writes:
            writes.script(self._create, keys, [ttl, *flat])
        return session

    def _session_key(self, session_id: str) -> str:
        return redis_keys.otp_session(self._prefix, session_id)

    def load(self, session_id: str) -> OtpSession | None:
        """The session if it is pending, expired or locked (None when unknown, used,
        claimed or checked)."""
        if redis_keys.session_tag(session_id) is None:
            return None
        with redis_guard():
            raw = self._redis.hgetall(self._session_key(session_id))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        if data["state"] in ("used", "claimed", "done"):
            return None
        return _session_from(session_id, data)

    def check(self, session_id: str, channel: str, account_id: str, purpose: str,
              code: str, *, rider: PipelineRider | Riders | None = None
              ) -> tuple[str, OtpSession | None]:
        """Check ``code`` against the identity's session for ``purpose``; claim it on success."""
        # Find the session this messenger identity started for ``purpose`` and check ``code``
        # against it, claiming it on success: one round trip, which also carries ``rider``
        # (``stores.client.run_script``).
        #
        # Returns the outcome and the session: ``ok`` (now claimed under a lease: end it with
        # ``finish``, ``burn`` or ``release``), ``replay`` (this code already succeeded:
        # ``answer_of`` holds the answer), ``busy`` (this code's check is still running elsewhere),
        # ``invalid``, ``locked`` (this session), ``identity_locked`` (this messenger account, after
        # too many wrong codes across sessions), ``expired``, or ``missing`` (the session None when
        # there is none to tell of: unknown, used, or another identity's or purpose's).
        # The identity's keys and the session's share a cluster slot only when the
        # session is this identity's: any other is not found, before Redis is asked.
        if redis_keys.session_tag(session_id) != redis_keys.identity_tag(channel, account_id):
            return "missing", None
        p = self._policy
        keys = [self._session_key(session_id),
                redis_keys.identity_lock(self._prefix, channel, account_id),
                redis_keys.identity_failures(self._prefix, channel, account_id),
                redis_keys.identity_lock_level(self._prefix, channel, account_id),
                redis_keys.otp_claim(self._prefix, session_id)]
        candidate = self._hash(code, session_id)
        token = secrets.token_hex(8)
        # A replay arriving while the first check still runs waits for its answer.
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            answer = run_script(self._redis, self._check, keys, [
                candidate, p.max_attempts, f"{self.clock():.3f}", p.identity_max_failures,
                p.lockout_base_seconds, p.lockout_max_seconds, token,
                int(p.lease_seconds * 1000), channel, account_id, purpose], rider)
            rider = None  # it rides the first look only
            outcome, lock_seconds = _text(answer[0]), int(answer[1])
            if outcome != "busy" or time.monotonic() >= deadline:
                break
            time.sleep(CLAIM_POLL_SECONDS)
        if len(answer) < 3:
            return outcome, None
        flat = [_text(v) for v in answer[2]]
        session = _session_from(session_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        if outcome == "ok":
            session.claim_token, session.state = token, "claimed"
        if outcome != "identity_locked" and lock_seconds:
            log_event("identity_locked", logging.WARNING, channel=channel,
                      seconds=lock_seconds)
        return outcome, session

    def replace_code(self, session: OtpSession, code: str | None, method: str | None) -> bool:
        """Store a resent code: new hash and lifetime, attempts reset, one more send."""
        expires_at = self.clock() + self._policy.ttl_seconds
        fields = self._hashed_fields(code if not session.is_decoy else None,
                                     session.session_id)
        with redis_guard():
            sends = int(self._replace(
                keys=[self._session_key(session.session_id)],
                args=[method or "", f"{expires_at:.3f}", fields["salt"], fields["hash"],
                      self._policy.ttl_seconds + _TOMBSTONE_SECONDS,
                      self._policy.max_attempts]))
        if sends < 0:
            # The session no longer waits for a code (checked, claimed or burned since it
            # was loaded): it is left untouched.
            return False
        session.expires_at, session.method, session.sends, session.attempts = (
            expires_at, method, sends, 0)
        return True

    def remember_customer(self, session: OtpSession, customer_id: str) -> None:
        """Record a customer created during the check, so a retry does not create another."""
        session.customer_id = customer_id
        with redis_guard():
            self._redis.hset(self._session_key(session.session_id), "customer_id", customer_id)

    def note_creating_customer(self, session: OtpSession, external_id: str) -> None:
        """Note, before ``customers/create``, the externalId of the customer this check
        is about to create, so an attempt after a crash or a lost answer looks it up
        instead of creating another."""
        session.creating_customer = external_id
        with redis_guard():
            self._redis.hset(self._session_key(session.session_id), "creating_customer",
                             external_id)

    def sends_left(self, session: OtpSession) -> bool:
        return session.sends < self._policy.max_sends

    def release(self, session: OtpSession, batch: WriteBatch | None = None) -> None:
        """Make a claimed code valid again after our own failure, so it can be retried."""
        self._end_claim(session, "pending", batch=batch)

    def burn(self, session: OtpSession, batch: WriteBatch | None = None) -> None:
        """End a claimed code for good without an answer to replay (e.g. a conflict)."""
        self._end_claim(session, "used", batch=batch)

    def finish(self, session: OtpSession, answer: dict[str, Any],
               batch: WriteBatch | None = None) -> None:
        """End a claimed code as checked: ``answer`` (no code, no full phone in it) is
        what a replay of the same code gets, for as long as the session is kept. With
        ``batch``, when the batch is sent."""
        self._end_claim(session, "done", json.dumps(answer, ensure_ascii=False), batch)

    def answer_of(self, session: OtpSession) -> dict[str, Any] | None:
        """The stored answer of a session whose code was checked (see ``finish``)."""
        with redis_guard():
            raw = self._redis.hget(self._session_key(session.session_id), "answer")
        return json.loads(raw) if raw else None

    def renew_claim(self, session: OtpSession) -> bool:
        """Extend the claim's lease while its work runs; False when it was lost."""
        with redis_guard():
            return bool(self._renew(
                keys=[redis_keys.otp_claim(self._prefix, session.session_id)],
                args=[session.claim_token, int(self._policy.lease_seconds * 1000)]))

    @property
    def lease_seconds(self) -> float:
        return self._policy.lease_seconds

    def _end_claim(self, session: OtpSession, state: str, answer: str = "",
                   batch: WriteBatch | None = None) -> None:
        keys = [self._session_key(session.session_id),
                redis_keys.otp_claim(self._prefix, session.session_id)]
        with written(self._redis, batch) as writes:
            writes.script(self._settle, keys, [state, answer, session.claim_token])

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self._redis.ping())
        except REDIS_ERRORS:
            return False

    def write_state(self) -> tuple[str, str]:
        """Whether Redis takes a write (a probe key with a short TTL), as ``(state, reason)``."""
        try:
            self._redis.set(redis_keys.health_probe(self._prefix), "1", ex=HEALTH_PROBE_TTL)
        except redis.ResponseError as e:  # OutOfMemoryError and ReadOnlyError among them
            # It answers but refuses the write (out of memory under ``noeviction``, a
            # read-only replica).
            words = str(e).splitlines()[0][:160] if str(e) else ""
            return "refuses_writes", f"{type(e).__name__}: {words}".rstrip(": ")
        except REDIS_ERRORS:  # it does not answer
            return "unavailable", ""
        return "ok", ""


HEALTH_PROBE_TTL = 10


__all__ = ["OtpPolicy", "OtpSession", "OtpStore"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _session_from(session_id: str, data: dict[str, str]) -> OtpSession:
    """A session from its stored fields."""
    return OtpSession(
        session_id=session_id, phone=data["phone"], channel=data["channel"],
        account_id=data["account_id"], customer_id=data["customer_id"] or None,
        purpose=data["purpose"], method=data["route"] or None,
        sends=int(data["sends"]), attempts=int(data["attempts"]),
        expires_at=float(data["expires_at"]), payload=json.loads(data["payload"]),
        sent=data["sent"] == "1", state=data["state"],
        creating_customer=data.get("creating_customer", ""),
        customer_held=data.get("customer_held"),
        customer_held_at=float(data.get("customer_held_at") or 0),
    )
