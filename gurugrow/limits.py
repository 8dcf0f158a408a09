"""Abuse limits on sending codes and guessing them (every SMS is paid).

Counters are INCR + EXPIRE under keys from ``redis_keys``. Every refusal here applies
before the phone is looked up, so it says nothing about whether the phone is a customer.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
import redis

from gurugrow import redis_keys
from gurugrow.logs import log_event
from gurugrow.storage import redis_guard


@dataclass(frozen=True)
class LimitPolicy:
    """The configured limits (0 switches a counter limit off)."""

    per_phone_hour: int = 5
    per_ip_hour: int = 20
    daily_budget: int = 1000
    identity_max_failures: int = 10
    lockout_base_seconds: int = 300
    lockout_max_seconds: int = 86400
    allowed_regions: frozenset[str] = frozenset({"RU", "KZ", "BY"})


class LimitExceeded(Exception):
    """A limit refuses the request; ``kind`` names it, ``retry_after`` when known."""

    def __init__(self, kind: str, error_code: str, retry_after: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error_code = error_code
        self.retry_after = retry_after


class Limits:
    """Checks and counts the send and guess limits in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, policy: LimitPolicy,
                 clock: Callable[[], float]) -> None:
        self._redis = client
        self._prefix = prefix
        self.policy = policy
        self.clock = clock

    def check_region(self, phone: str) -> None:
        """Only phones of the allowed countries get codes (SMS pumping goes abroad)."""
        if not self.policy.allowed_regions:
            return
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + phone))
        except phonenumbers.NumberParseException:
            region = None
        if region not in self.policy.allowed_regions:
            raise LimitExceeded("region", "phone_country_not_allowed")

    def budget_left(self) -> bool:
        """False once today's global send budget is spent."""
        if not self.policy.daily_budget:
            return True
        with redis_guard():
            spent = int(self._redis.get(self._budget_key()) or 0)
        return spent < self.policy.daily_budget

    def count_send(self, phone: str, client_ip: str | None) -> None:
        """Count one code about to go out against the hourly phone and IP limits."""
        hour = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d%H")
        counters = [(redis_keys.send_counter(self._prefix, "phone-hour", phone, hour),
                     self.policy.per_phone_hour, "phone_hour")]
        if client_ip:
            counters.append((redis_keys.send_counter(self._prefix, "ip-hour", client_ip, hour),
                             self.policy.per_ip_hour, "ip_hour"))
        with redis_guard():
            pipe = self._redis.pipeline()
            for key, _, _ in counters:
                pipe.incr(key)
                pipe.expire(key, 3600)
            counts = pipe.execute()[::2]
        for (_, limit, kind), count in zip(counters, counts, strict=True):
            if limit and int(count) > limit:
                raise LimitExceeded(kind, "rate_limited")

    def spend_budget(self) -> None:
        """Record one paid message in today's global budget; log when it runs out."""
        if not self.policy.daily_budget:
            return
        key = self._budget_key()
        with redis_guard():
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * 86400)
            spent = int(pipe.execute()[0])
        if spent == self.policy.daily_budget:
            log_event("send_budget_exhausted", logging.ERROR, budget=spent)

    def _budget_key(self) -> str:
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        return redis_keys.send_counter(self._prefix, "budget", "all", day)

    # -- wrong codes per messenger identity ---------------------------------------------
    def identity_locked_for(self, channel: str, account_id: str) -> int:
        """Seconds this messenger identity is still locked out of checking codes (0: not)."""
        with redis_guard():
            ttl = self._redis.ttl(redis_keys.identity_lock(self._prefix, channel, account_id))
        return max(int(ttl), 0)

    def record_wrong_code(self, channel: str, account_id: str) -> None:
        """Count a wrong code across sessions; past the limit lock the identity out, each
        lockout twice as long as the one before (within a day)."""
        if not self.policy.identity_max_failures:
            return
        failures = redis_keys.identity_failures(self._prefix, channel, account_id)
        with redis_guard():
            pipe = self._redis.pipeline()
            pipe.incr(failures)
            pipe.expire(failures, 3600)
            count = int(pipe.execute()[0])
            if count < self.policy.identity_max_failures:
                return
            level_key = redis_keys.identity_lock_level(self._prefix, channel, account_id)
            pipe = self._redis.pipeline()
            pipe.incr(level_key)
            pipe.expire(level_key, 86400)
            pipe.delete(failures)
            level = int(pipe.execute()[0])
            seconds = min(self.policy.lockout_base_seconds * 2 ** (level - 1),
                          self.policy.lockout_max_seconds)
            self._redis.set(redis_keys.identity_lock(self._prefix, channel, account_id), "1",
                            ex=seconds)
        log_event("identity_locked", logging.WARNING, channel=channel, seconds=seconds)


def client_ip(remote_addr: str | None, forwarded_for: str | None,
              trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """The client's address: X-Forwarded-For is believed only when the peer is a trusted
    proxy, and then the nearest untrusted hop counts (a client can prepend anything)."""
    trusted = list(trusted)

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not remote_addr or not forwarded_for or not is_trusted(remote_addr):
        return remote_addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not is_trusted(hop):
            return hop
    return remote_addr
