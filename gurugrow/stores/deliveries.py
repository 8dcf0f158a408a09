"""Delivery tracking in Redis: each OTP session's latest send, and the due checks.

Kept apart from the OTP session record on purpose: a session's delivery record holds the
route, GreenSMS's ``request_id``, when it was sent and its last known status; a messenger
send is also a member ``<session id>|<request id>`` of one sorted set scored by when its
status is next due a check (read by the `deliveries` worker).

Every step that decides something is one single-key command or script, so it runs on
Redis Cluster: claiming a due check (only one worker gets it) and claiming the fallback
of one send (only one of the worker and a resend may send its SMS without waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from gurugrow.basics.errors import StorageUnavailable
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import RedisHash, WriteBatch, redis_guard
from gurugrow.stores.scripts import load_script

# Final statuses: once seen, a send's status no longer changes.
FINAL_STATUSES = ("delivered", "failed")

# Records a status of the send still on record; 1 when it changed (from a non-final one).
_NOTE_STATUS_SCRIPT = load_script("deliveries_note_status")

# Moves the send still on record from one state to another; 1 when this caller did it.
_TRANSITION_SCRIPT = load_script("deliveries_transition")

# Claims the fallback of the send still on record: from ``watching``, or from a
# ``fallen_back`` whose claimer's lease ran out before its SMS was recorded (it died or
# failed between the claim and the send). 1 when this caller has it until ARGV[3].
_CLAIM_FALLBACK_SCRIPT = load_script("deliveries_claim_fallback")

# Claims a due check: pushes its due time past the lease, so no other worker takes it
# meanwhile and a worker that dies mid-check leaves it to be taken again after the lease.
_CLAIM_CHECK_SCRIPT = load_script("deliveries_claim_check")


@dataclass(frozen=True)
class SendRecord:
    """The latest send of one session."""

    session_id: str
    route: str
    request_id: str
    sent_at: float
    status: str
    # ``watching`` (a messenger send whose delivery is not settled), ``settled``
    # (delivered, sent by SMS, or given up) or ``fallen_back`` (its SMS fallback was
    # claimed; until ``fallback_until``, after which an SMS not yet recorded may be claimed
    # again).
    state: str
    undeliverable: str = ""  # a messenger route that did not deliver in this session
    fallback_until: float = 0.0

    def fallback_held(self, now: float) -> bool:
        """Whether someone holds this send's fallback claim now (its SMS under way)."""
        return self.state == "fallen_back" and self.fallback_until > now


class DeliveryTracker:
    """Delivery records and the due-check sorted set."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._note_status = client.register_script(_NOTE_STATUS_SCRIPT)
        self._transition = client.register_script(_TRANSITION_SCRIPT)
        self._claim_check = client.register_script(_CLAIM_CHECK_SCRIPT)
        self._claim_fallback = client.register_script(_CLAIM_FALLBACK_SCRIPT)

    def _record_key(self, session_id: str) -> str:
        return redis_keys.delivery_record(self._prefix, session_id)

    def _due_key(self) -> str:
        return redis_keys.delivery_due(self._prefix)

    # -- records ---------------------------------------------------------------------
    def record_send(self, session_id: str, route: str, request_id: str, sent_at: float,
                    check_at: float | None, *, batch: WriteBatch,
                    on_failure: Callable[[StorageUnavailable], None] | None = None) -> None:
        """Store the session's latest send (the previous one is superseded) when
        ``batch`` is sent (``on_failure`` is told if this write fails); with ``check_at``
        it is watched, and due a status check then."""
        record: RedisHash = {
            "route": route, "request_id": request_id, "sent_at": f"{sent_at:.3f}",
            "status": "pending", "state": "watching" if check_at else "settled"}

        def queue(pipe: Any) -> None:
            pipe.hset(self._record_key(session_id), mapping=record)
            pipe.expire(self._record_key(session_id), self._ttl)
            if check_at is not None:
                pipe.zadd(self._due_key(), {_member(session_id, request_id): check_at})
                pipe.expire(self._due_key(), self._ttl)

        batch.commands(queue, on_failure=on_failure)

    def load(self, session_id: str) -> SendRecord | None:
        """The session's latest send, if any is on record."""
        if redis_keys.session_tag(session_id) is None:
            return None
        with redis_guard():
            raw = self._redis.hgetall(self._record_key(session_id))
        data = {_text(k): _text(v) for k, v in raw.items()}
        if not data.get("request_id"):
            return None
        return SendRecord(session_id=session_id, route=data.get("route", ""),
                          request_id=data["request_id"],
                          sent_at=float(data.get("sent_at") or 0),
                          status=data.get("status", "pending"),
                          state=data.get("state", "settled"),
                          undeliverable=data.get("undeliverable", ""),
                          fallback_until=float(data.get("fallback_until") or 0))

    def note_status(self, record: SendRecord, status: str) -> bool:
        """Record a status read for ``record``'s send; True when it is news (a change
        from a non-final status), so each outcome is counted once."""
        with redis_guard():
            changed = self._note_status(keys=[self._record_key(record.session_id)],
                                        args=[record.request_id, status])
        return bool(changed)

    def claim_fallback(self, record: SendRecord, now: float, lease_until: float) -> bool:
        """Take the one right to replace this undelivered send, until ``lease_until``."""
        # One claimer, the worker or a resend. Marks its route undeliverable for the rest of
        # the session. A claim whose holder recorded no SMS by then may be taken again (see
        # the script): the SMS is sent once, and never lost to a claimer that died.
        with redis_guard():
            claimed = self._claim_fallback(keys=[self._record_key(record.session_id)],
                                           args=[record.request_id, now, lease_until,
                                                 record.route])
        return bool(claimed)

    def release_fallback(self, record: SendRecord) -> bool:
        """Give a claimed fallback back (its SMS did not go out): watched again."""
        return self._move(record, "fallen_back", "watching", fallback_until="0")

    def close_fallback(self, record: SendRecord) -> bool:
        """A claimed fallback that will not be sent (refused): no one claims it again."""
        return self._move(record, "fallen_back", "settled")

    def settle(self, record: SendRecord) -> bool:
        """Stop watching this send (delivered, closed, or given up)."""
        return self._move(record, "watching", "settled")

    def _move(self, record: SendRecord, from_state: str, to_state: str, **fields: str) -> bool:
        extra = [str(item) for pair in fields.items() for item in pair]
        with redis_guard():
            moved = self._transition(keys=[self._record_key(record.session_id)],
                                     args=[record.request_id, from_state, to_state, *extra])
        return bool(moved)

    # -- due checks ------------------------------------------------------------------
    def due(self, now: float, limit: int) -> Iterator[tuple[str, str]]:
        """(session id, request id) of sends due a check at ``now``, earliest first."""
        with redis_guard():
            members = self._redis.zrangebyscore(self._due_key(), "-inf", now, start=0,
                                                num=limit)
        for member in members:
            session_id, _, request_id = _text(member).partition("|")
            yield session_id, request_id

    def claim_check(self, session_id: str, request_id: str, now: float,
                    lease_until: float) -> bool:
        """True for exactly one caller while the check is due (see the script)."""
        with redis_guard():
            claimed = self._claim_check(keys=[self._due_key()],
                                        args=[_member(session_id, request_id), now, lease_until])
        return bool(claimed)

    def reschedule(self, session_id: str, request_id: str, check_at: float) -> None:
        """The next check of a watched send."""
        with redis_guard():
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(self._due_key(), {_member(session_id, request_id): check_at})
            pipe.expire(self._due_key(), self._ttl)
            pipe.execute()

    def forget(self, session_id: str, request_id: str) -> None:
        """No more checks of this send."""
        with redis_guard():
            self._redis.zrem(self._due_key(), _member(session_id, request_id))

    def trim(self, due_before: float) -> int:
        """Drop checks that fell due before ``due_before`` (their codes have expired)."""
        with redis_guard():
            return int(self._redis.zremrangebyscore(self._due_key(), "-inf", due_before))


def _member(session_id: str, request_id: str) -> str:
    return f"{session_id}|{request_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
