"""One messenger account's limits, as a shop's manager sees and lifts them
(``flask --app wsgi gurugrow account show|clear``): its send counters this hour and UTC
day, its wrong-code count and lockout. Only reads and deletes: nothing here writes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import redis_guard


def _keys(prefix: str, channel: str, account_id: str, now: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(now, UTC)
    tag = redis_keys.identity_tag(channel, account_id)
    return {
        "codes this hour": redis_keys.send_counter(prefix, "account-hour", tag,
                                                   moment.strftime("%Y%m%d%H")),
        "codes today": redis_keys.send_counter(prefix, "account-day", tag,
                                               moment.strftime("%Y%m%d")),
        "wrong codes": redis_keys.identity_failures(prefix, channel, account_id),
        "lockouts today": redis_keys.identity_lock_level(prefix, channel, account_id),
        "locked": redis_keys.identity_lock(prefix, channel, account_id),
    }


def account_limits(client: Any, prefix: str, channel: str, account_id: str,
                   clock: Callable[[], float]) -> dict[str, int]:
    """Each counter's value (0 when unset); ``locked``: seconds the lockout has left."""
    keys = _keys(prefix, channel, account_id, clock())
    with redis_guard():
        pipe = client.pipeline(transaction=False)
        for name, key in keys.items():
            if name == "locked":
                pipe.ttl(key)
            else:
                pipe.get(key)
        values = pipe.execute()
    found = {}
    for name, value in zip(keys, values, strict=True):
        number = int(value) if value is not None else 0
        found[name] = max(number, 0) if name == "locked" else number
    return found


def clear_account_limits(client: Any, prefix: str, channel: str, account_id: str,
                         clock: Callable[[], float]) -> int:
    """Lift the account's caps: this hour's and today's send counters, its wrong-code
    count, lockout and lockout level. The number of keys removed."""
    keys = list(_keys(prefix, channel, account_id, clock()).values())
    with redis_guard():
        return int(client.delete(*keys))
