"""Abuse limits on sending codes (every SMS is paid); guessing is limited in ``otp``.

Counters are INCR + EXPIRE under keys from ``redis_keys``. Every refusal here applies
before the phone is looked up, so it says nothing about whether the phone is a customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.typing import EncodableT

from gurugrow.basics.callers import Network, in_networks
from gurugrow.basics.errors import LimitExceeded, StorageUnavailable
from gurugrow.basics.phone import phone_region
from gurugrow.basics.request_scope import CALLER_BY_TOKEN
from gurugrow.config import Settings
from gurugrow.logs import log_event
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.accounts import account_limits, clear_account_limits
from gurugrow.stores.client import PipelineRider, WriteBatch, redis_guard, run_script
from gurugrow.stores.scripts import load_script

# Budget, cooldown, cost budget and the counters (per phone day/hour, per address hour, per
# messenger account hour/day), admitted as a whole in one step: every limit is checked
# first, and only when all pass is anything taken. A refused admission takes nothing, and
# two simultaneous starts can never both pass a limit.
# KEYS: budget, cooldown, cost, then one key per counter; ARGV: budget, cooldown seconds,
# cost budget and this send's price (both in hundredths), then (limit, ttl, kind) per
# counter. Answers the refusal's kind and its retry-after seconds.
_ADMIT_SCRIPT = load_script("limits_admit")

# Returns what an admission took: KEYS are the cooldown it set (when ARGV[1] is '1'),
# then every counter it incremented, the budget included, then the cost key when ARGV[2]
# (the price it added) is above 0; a counter never goes below 0.
_GIVE_BACK_SCRIPT = load_script("limits_give_back")
_REFUSALS = {"budget": "send_budget_exhausted", "cost_budget": "cost_budget_exhausted",
             "cooldown": "resend_too_early",
             "phone_day": "rate_limited", "phone_hour": "rate_limited",
             "ip_hour": "rate_limited", "account_hour": "rate_limited",
             "account_day": "rate_limited"}
_HOUR, _DAY = 3600, 86400


@dataclass(frozen=True)
class LimitPolicy:
    """The configured limits (0 switches a counter limit off); the defaults live in
    Settings alone."""

    cooldown_seconds: int
    per_phone_day: int
    per_phone_hour: int
    per_ip_hour: int
    daily_budget: int
    allowed_regions: frozenset[str]
    per_account_hour: int
    per_account_day: int
    daily_cost_budget: int  # hundredths of the shop's currency (0: no cost budget)
    route_prices: dict[str, int]  # hundredths per code, by route
    # The bot platform's networks (ALLOWED_CALLER_NETWORKS): every bot user calls from
    # them, so a per-address cap there would be one counter shared by every customer.
    ip_exempt_networks: tuple[Network, ...]
    # The per-address cap of callers that proved an API token (0: none).
    per_ip_hour_token_callers: int

    @classmethod
    def from_settings(cls, s: Settings) -> LimitPolicy:
        """The limits the OTP_MAX_SENDS_* and PHONE_ALLOWED_REGIONS settings describe."""
        return cls(
            cooldown_seconds=s.otp_resend_cooldown_seconds,
            per_phone_day=s.otp_max_sends_per_phone_per_day,
            per_phone_hour=s.otp_max_sends_per_phone_per_hour,
            per_ip_hour=s.otp_max_sends_per_ip_per_hour, daily_budget=s.otp_daily_send_budget,
            allowed_regions=frozenset(r.upper() for r in s.phone_allowed_regions),
            per_account_hour=s.otp_max_sends_per_account_per_hour,
            per_account_day=s.otp_max_sends_per_account_per_day,
            daily_cost_budget=hundredths(s.otp_daily_cost_budget),
            route_prices={route: hundredths(price) for route, price in s.route_prices.items()},
            ip_exempt_networks=tuple(s.caller_networks),
            per_ip_hour_token_callers=s.otp_max_sends_per_ip_per_hour_token_callers)

    def price_of(self, route: str) -> int:
        """One code by ``route``, in hundredths (0 when CODE_PRICES does not list it)."""
        return self.route_prices.get(route, 0)


def hundredths(amount: float) -> int:
    """An amount of money in hundredths (Redis counts integers)."""
    return round(amount * 100)


@dataclass(frozen=True)
class Admission:
    """What one admitted send took, so ``give_back`` can return exactly that, even when
    an hour or a day has turned (or the limits changed) in between."""

    cooldown_key: str | None
    counter_keys: tuple[str, ...]
    cost_key: str | None = None  # the day's cost, when the admission added ``price`` to it
    price: int = 0


class Limits:
    """Checks and counts the send and guess limits in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, policy: LimitPolicy,
                 clock: Callable[[], float]) -> None:
        self._redis = client
        self._prefix = prefix
        self.policy = policy
        self.clock = clock
        self._admit = client.register_script(_ADMIT_SCRIPT)
        self._give_back = client.register_script(_GIVE_BACK_SCRIPT)

    def of_account(self, channel: str, account_id: str) -> dict[str, int]:
        """The account's counters (0 when unset); ``locked``: the lockout's seconds left."""
        return account_limits(self._redis, self._prefix, channel, account_id, self.clock)

    def clear_account(self, channel: str, account_id: str) -> int:
        """Lift the account's caps; the number of keys removed."""
        return clear_account_limits(self._redis, self._prefix, channel, account_id, self.clock)

    def check_region(self, phone: str) -> None:
        """Only phones of the allowed countries get codes (SMS pumping goes abroad)."""
        if not self.policy.allowed_regions:
            return
        if phone_region(phone) not in self.policy.allowed_regions:
            raise LimitExceeded("region", "phone_country_not_allowed")

    def admit_send(self, phone: str, channel: str, account_id: str,
                   client_ip: str | None, *, route: str, cooldown: bool = True,
                   rider: PipelineRider | None = None) -> Admission:
        """Take one send by ``route`` against every limit at once, or refuse it whole."""
        # Take one send by ``route`` against every limit in one atomic Redis step, or refuse as a
        # whole (``LimitExceeded``), taking nothing. ``rider`` goes in the same round trip.
        #
        # The global budgets count every admitted send, real or decoy (the cost budget at
        # ``route``'s price), so they say nothing about who is a customer; ``give_back`` returns
        # what the admission took when nothing went out. ``cooldown=False`` neither checks nor sets
        # the cooldown (an SMS replacing an undelivered messenger code: ``restart_cooldown`` after
        # it, and a give-back clears it).
        now = self.clock()
        day, hour = _periods(now)
        p = self.policy
        counters = [  # (kind, key, limit, key TTL)
            ("phone_day", redis_keys.send_counter(self._prefix, "phone-day", phone, day),
             p.per_phone_day, 2 * _DAY),
            ("phone_hour", redis_keys.send_counter(self._prefix, "phone-hour", phone, hour),
             p.per_phone_hour, _HOUR),
            *self._caller_counters(channel, account_id, client_ip, now),
        ]
        cooldown_key = redis_keys.otp_cooldown(self._prefix, phone, channel, account_id)
        price = p.price_of(route) if p.daily_cost_budget > 0 else 0
        return self._admit_all(now, counters, cooldown_key, p.cooldown_seconds if cooldown else 0,
                               price, rider=rider)

    def admit_contact(self, channel: str, account_id: str, client_ip: str | None, *,
                      rider: PipelineRider | None = None) -> Admission:
        """A contact binding takes the per-account and per-address counters of a send (no
        cooldown, no budget: nothing is sent), in one step; ``LimitExceeded`` takes none.
        ``rider`` goes in the same round trip."""
        now = self.clock()
        return self._admit_all(now, self._caller_counters(channel, account_id, client_ip, now),
                               None, 0, 0, budgets=False, rider=rider)

    def _caller_counters(self, channel: str, account_id: str, client_ip: str | None,
                         now: float) -> list[tuple[str, str, int, int]]:
        """The per-address and per-messenger-account counters, as (kind, key, limit, TTL)."""
        day, hour = _periods(now)
        p = self.policy
        account = redis_keys.identity_tag(channel, account_id)
        # A caller that proved one of API_TOKENS: all bot traffic comes from a few
        # platform addresses, so the address cap there is one counter shared by every
        # customer; only an explicit OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS applies.
        cap = p.per_ip_hour_token_callers if CALLER_BY_TOKEN.get() else p.per_ip_hour
        per_ip = cap if client_ip and not in_networks(client_ip, p.ip_exempt_networks) else 0
        return [
            ("ip_hour", redis_keys.send_counter(self._prefix, "ip-hour", client_ip or "-", hour),
             per_ip, _HOUR),
            ("account_hour",
             redis_keys.send_counter(self._prefix, "account-hour", account, hour),
             p.per_account_hour, _HOUR),
            ("account_day", redis_keys.send_counter(self._prefix, "account-day", account, day),
             p.per_account_day, 2 * _DAY),
        ]

    def _admit_all(self, now: float, counters: list[tuple[str, str, int, int]],
                   cooldown_key: str | None, cooldown_seconds: int, price: int, *,
                   budgets: bool = True, rider: PipelineRider | None = None) -> Admission:
        """Run the admission script over ``counters`` (and the cooldown and the day's
        budgets unless ``budgets=False``); what it took, or ``LimitExceeded``."""
        p = self.policy
        day, _ = _periods(now)
        budget_key = redis_keys.send_counter(self._prefix, "budget", "all", day)
        cost_key = redis_keys.send_counter(self._prefix, "cost", "all", day)
        budget, cost_budget = (p.daily_budget, p.daily_cost_budget) if budgets else (0, 0)
        args: list[EncodableT] = [budget, cooldown_seconds, cost_budget, price]
        for kind, _, limit, ttl in counters:
            args += [limit, ttl, kind]
        # Without a cooldown to guard, the cooldown slot holds the budget key: never read.
        kind, retry_after = run_script(
            self._redis, self._admit,
            [budget_key, cooldown_key or budget_key, cost_key,
             *(key for _, key, _, _ in counters)], args, rider)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "budget_spent_now":
            log_event("send_budget_exhausted", logging.ERROR, budget=p.daily_budget,
                      no_send_starts=self._no_send_starts(day))
        elif kind == "cost_spent_now":
            log_event("cost_budget_exhausted", logging.ERROR, budget=p.daily_cost_budget / 100)
        elif kind != "ok":
            wait = int(retry_after) or _period_left(now, kind)
            raise LimitExceeded(kind, _REFUSALS[kind], wait or None)
        taken = [key for _, key, limit, _ in counters if limit > 0]
        if budget > 0:
            taken.append(budget_key)
        # Without the cooldown (replacing an undelivered code) a give-back still clears
        # it: the code it guards never arrived, so the customer may ask again at once.
        keep_cooldown = cooldown_key if cooldown_key and p.cooldown_seconds > 0 else None
        charged = cost_budget > 0 and price > 0
        return Admission(keep_cooldown, tuple(taken), cost_key if charged else None,
                         price if charged else 0)

    def charge_cost(self, amount: int) -> None:
        """Add ``amount`` (hundredths) to today's cost: a send that fell back to a dearer
        route than the one admitted. No-op without a cost budget."""
        if self.policy.daily_cost_budget <= 0 or amount <= 0:
            return
        day, _ = _periods(self.clock())
        key = redis_keys.send_counter(self._prefix, "cost", "all", day)
        with redis_guard():
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrby(key, amount)
            pipe.expire(key, 2 * _DAY)
            pipe.execute()

    def cost_spent_today(self) -> float:
        """Priced cost admitted so far this UTC day (for /metrics), in the currency."""
        day, _ = _periods(self.clock())
        with redis_guard():
            spent = self._redis.get(redis_keys.send_counter(self._prefix, "cost", "all", day))
        return int(spent or 0) / 100

    def count_no_send(self, batch: WriteBatch, admission: Admission | None = None) -> None:
        """Count one more admitted start whose phone has no customer (nothing sent)."""
        # It still took its send-budget unit, so the send budget says nothing about who is
        # a customer.
        now = self.clock()
        key = redis_keys.send_counter(self._prefix, "no-send", "all",
                                      datetime.fromtimestamp(now, UTC).strftime("%Y%m%d"))
        # Its cost goes back with ``admission``: nothing is paid for it, so starts to
        # unknown phones cannot spend the day's cost budget.
        cost_key = admission.cost_key if admission is not None and admission.price else None
        if not self.policy.daily_budget and cost_key is None:
            return

        def queue(pipe: redis.client.Pipeline) -> None:
            if self.policy.daily_budget:
                pipe.incr(key)
                pipe.expire(key, 2 * _DAY)
            if cost_key is not None and admission is not None:
                pipe.decrby(cost_key, admission.price)
                pipe.expire(cost_key, 2 * _DAY)

        batch.commands(queue, on_failure=lambda e: log_event(
            "no_send_count_failed", logging.WARNING, error=e))

    def _no_send_starts(self, day: str) -> int:
        try:
            with redis_guard():
                count = self._redis.get(redis_keys.send_counter(self._prefix, "no-send",
                                                                "all", day))
        except StorageUnavailable:  # the ERROR line goes out without the figure
            return -1
        return int(count or 0)

    def restart_cooldown(self, phone: str, channel: str, account_id: str) -> None:
        """A code just went out without taking the cooldown: the cooldown starts now."""
        if self.policy.cooldown_seconds:
            with redis_guard():
                self._redis.set(redis_keys.otp_cooldown(self._prefix, phone, channel,
                                                        account_id),
                                "1", ex=self.policy.cooldown_seconds)

    def cooldown_left(self, phone: str, channel: str, account_id: str) -> int:
        """Seconds until the resend cooldown of this phone and messenger account ends (0:
        none runs). A read only: the admission still decides."""
        if not self.policy.cooldown_seconds:
            return 0
        with redis_guard():
            left = self._redis.ttl(redis_keys.otp_cooldown(self._prefix, phone, channel,
                                                           account_id))
        return max(int(left), 0)  # -2: no cooldown; -1 (no TTL) cannot be: none either

    def clear_phone(self, phone: str) -> int:
        """Forget the per-phone send counters of the current hour and UTC day (a manager's
        answer to a phone blocked by others' messenger accounts); the number cleared."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")
        keys = [redis_keys.send_counter(self._prefix, "phone-day", phone, day),
                redis_keys.send_counter(self._prefix, "phone-hour", phone, hour)]
        with redis_guard():
            return int(self._redis.delete(*keys))

    def budget_spent_today(self) -> int:
        """Sends admitted so far this UTC day against the daily budget (for /metrics)."""
        day, _ = _periods(self.clock())
        with redis_guard():
            spent = self._redis.get(redis_keys.send_counter(self._prefix, "budget", "all", day))
        return int(spent or 0)

    def give_back(self, admission: Admission) -> None:
        """Nothing was sent after all: return everything ``admission`` took (the
        cooldown, every counter and the budget unit), in one step."""
        cooldown = [admission.cooldown_key] if admission.cooldown_key else []
        cost = [admission.cost_key] if admission.cost_key and admission.price > 0 else []
        keys = [*cooldown, *admission.counter_keys, *cost]
        if not keys:
            return
        with redis_guard():
            self._give_back(keys=keys, args=["1" if cooldown else "0",
                                             admission.price if cost else 0])


def _periods(now: float) -> tuple[str, str]:
    """The UTC day and hour of ``now``, as the counters' keys name them."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y%m%d"), moment.strftime("%Y%m%d%H")


def _period_left(now: float, kind: str) -> int:
    """Seconds until a counter's window turns (an hour or a UTC day), for retryAfterSec."""
    if kind.endswith("_hour"):
        return _HOUR - int(now) % _HOUR
    if kind.endswith("_day"):
        return _DAY - int(now) % _DAY
    return 0
