"""Abuse limits on sending codes (every SMS is paid); guessing is limited in ``otp``.

Counters are INCR + EXPIRE under keys from ``redis_keys``. Every refusal here applies
before the phone is looked up, so it says nothing about whether the phone is a customer.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from gurugrow import redis_keys
from gurugrow.logs import log_event
from gurugrow.phone import phone_region
from gurugrow.storage import redis_guard

# Budget, cooldown, and the per-phone day/hour and per-address hour counters, checked and
# counted in one step: two simultaneous starts can never both pass a limit.
_ADMIT_SCRIPT = """
local budget, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2])
if budget > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= budget then
  return {'budget', 0}
end
if cooldown > 0 and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', cooldown) then
  return {'cooldown', redis.call('TTL', KEYS[2])}
end
local counters = {{KEYS[3], ARGV[3], 172800, 'phone_day'},
                  {KEYS[4], ARGV[4], 3600, 'phone_hour'},
                  {KEYS[5], ARGV[5], 3600, 'ip_hour'}}
for _, c in ipairs(counters) do
  local limit = tonumber(c[2])
  if limit > 0 or c[4] ~= 'ip_hour' then
    local n = redis.call('INCR', c[1])
    if n == 1 then redis.call('EXPIRE', c[1], c[3]) end
    if limit > 0 and n > limit then return {c[4], 0} end
  end
end
if budget > 0 then
  local spent = redis.call('INCR', KEYS[1])
  if spent == 1 then redis.call('EXPIRE', KEYS[1], 172800) end
  if spent == budget then return {'budget_spent_now', 0} end
end
return {'ok', 0}
"""
_REFUSALS = {"budget": "send_budget_exhausted", "cooldown": "resend_too_early",
             "phone_day": "rate_limited", "phone_hour": "rate_limited",
             "ip_hour": "rate_limited"}


@dataclass(frozen=True)
class LimitPolicy:
    """The configured limits (0 switches a counter limit off)."""

    cooldown_seconds: int = 60
    per_phone_day: int = 10
    per_phone_hour: int = 5

    per_ip_hour: int = 20
    daily_budget: int = 1000
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
        self._admit = client.register_script(_ADMIT_SCRIPT)

    def check_region(self, phone: str) -> None:
        """Only phones of the allowed countries get codes (SMS pumping goes abroad)."""
        if not self.policy.allowed_regions:
            return
        if phone_region(phone) not in self.policy.allowed_regions:
            raise LimitExceeded("region", "phone_country_not_allowed")

    def admit_send(self, phone: str, channel: str, account_id: str,
                   client_ip: str | None, *, cooldown: bool = True) -> None:
        """Take one send against every limit in one atomic Redis step, or refuse.

        The global budget counts every admitted send, real or decoy, so the budget says
        nothing about who is a customer; ``give_back`` returns it when nothing went out.
        ``cooldown=False`` skips the cooldown (an SMS replacing an undelivered messenger
        code: ``restart_cooldown`` after it).
        """
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")
        p = self.policy
        keys = [redis_keys.send_counter(self._prefix, "budget", "all", day),
                redis_keys.otp_cooldown(self._prefix, phone, channel, account_id),
                redis_keys.send_counter(self._prefix, "phone-day", phone, day),
                redis_keys.send_counter(self._prefix, "phone-hour", phone, hour),
                redis_keys.send_counter(self._prefix, "ip-hour", client_ip or "-", hour)]
        args = [p.daily_budget, p.cooldown_seconds if cooldown else 0, p.per_phone_day,
                p.per_phone_hour, p.per_ip_hour if client_ip else 0]
        with redis_guard():
            kind, retry_after = self._admit(keys=keys, args=args)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "budget_spent_now":
            log_event("send_budget_exhausted", logging.ERROR, budget=p.daily_budget)
        elif kind != "ok":
            raise LimitExceeded(kind, _REFUSALS[kind], int(retry_after) or None)

    def restart_cooldown(self, phone: str, channel: str, account_id: str) -> None:
        """A code just went out without taking the cooldown: the cooldown starts now."""
        if self.policy.cooldown_seconds:
            with redis_guard():
                self._redis.set(redis_keys.otp_cooldown(self._prefix, phone, channel,
                                                        account_id),
                                "1", ex=self.policy.cooldown_seconds)

    def budget_spent_today(self) -> int:
        """Sends admitted so far this UTC day against the daily budget (for /metrics)."""
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        with redis_guard():
            spent = self._redis.get(redis_keys.send_counter(self._prefix, "budget", "all", day))
        return int(spent or 0)

    def give_back(self, phone: str, channel: str, account_id: str) -> None:
        """Nothing was sent after all: free the cooldown and return the budget unit."""
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        with redis_guard():
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(redis_keys.otp_cooldown(self._prefix, phone, channel, account_id))
            if self.policy.daily_budget:
                pipe.decr(redis_keys.send_counter(self._prefix, "budget", "all", day))
            pipe.execute()


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
