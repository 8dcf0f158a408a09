"""RetailCRM's quota, shared by every worker and host: one bucket in Redis.

Pacing by reservation: each granted call reserves the next free slot on one timeline,
at least ``1/RETAILCRM_RATE_LIMIT`` s (plus 1 µs) after the previous one, and sleeps
until its slot. So no one-second window, open or closed, ever holds more than
``RETAILCRM_RATE_LIMIT`` grants, there is no burst allowance to overshoot the CRM's own
counter, and waiters are served first come, first served without polling. Time is the
Redis server's (``TIME`` inside the scripts), so the hosts' clocks do not matter.

A read may reserve at most ``RETAILCRM_READ_HORIZON_SECONDS`` ahead; beyond that it waits
in a FIFO line of readers that journey calls pass. One script per operation, one round
trip per look; both keys share one hash tag (Redis Cluster). Who waits, with which
priority and until when is the governor's (``gurugrow.governor``), not this store's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import redis_guard
from gurugrow.stores.scripts import load_script

# One script per operation, each with its KEYS/ARGV contract at its top.
_TAKE, _PAUSE = load_script("quota_take"), load_script("quota_pause")
_LEAVE, _GIVE_BACK = load_script("quota_leave"), load_script("quota_give_back")


GRANTED, IN_LINE, BUSY = 1, 2, 0


class Grant(NamedTuple):
    """One answer of the bucket: ``state`` (GRANTED, IN_LINE, BUSY), ``seconds`` to sleep
    (granted), to look again (in line) or the estimated wait (busy), and for a grant the
    slot's server time in µs."""

    state: int
    seconds: float
    slot_us: int | None


class QuotaBucket:
    """The shared bucket's Redis side: looks, pauses, a reader leaving, a slot going back."""

    def __init__(self, client: Any, prefix: str, *, rate_limit: int, queue_seconds: float,
                 read_horizon_seconds: float) -> None:
        self.queue_seconds = queue_seconds
        # +1 µs: even a closed one-second window holds at most ``rate_limit`` slots.
        self.interval_us = 1_000_000 // rate_limit + 1
        self.read_horizon_us = int(min(read_horizon_seconds, queue_seconds) * 1_000_000)
        self._tail = redis_keys.crm_quota_tail(prefix)
        self._waiting = redis_keys.crm_quota_waiting(prefix)
        self._take_script = client.register_script(_TAKE)
        self._pause_script = client.register_script(_PAUSE)
        self._leave_script = client.register_script(_LEAVE)
        self._give_back_script = client.register_script(_GIVE_BACK)

    def take_args(self, is_read: bool, patience_us: int, token: str, *,
                  spare_only: bool = False) -> list[Any]:
        """The take script's arguments for one look."""
        horizon_us = min(self.read_horizon_us, patience_us) if is_read else patience_us
        # ``spare_only``: a slot at most one interval ahead (the bucket has room now) or
        # busy, never a place in the readers' line: a look made before anyone knows the
        # call will be sent must not take a slot from a wave's callers.
        if spare_only:
            horizon_us, patience_us = min(horizon_us, self.interval_us), 0
        return [self.interval_us, horizon_us, patience_us, token, "1" if is_read else "0",
                int(self.queue_seconds * 1_000_000)]

    def reserve(self, is_read: bool, patience_seconds: float, token: str) -> Grant:
        """One look at the bucket (one round trip): a slot, a place in line, or busy."""
        patience_us = int(patience_seconds * 1_000_000)
        with redis_guard():
            answer = self._take_script(keys=[self._tail, self._waiting],
                                       args=self.take_args(is_read, patience_us, token))
        state, micros = int(answer[0]), int(answer[1])
        slot = int(answer[2]) if len(answer) > 2 else None
        return Grant(state, micros / 1_000_000, slot)

    def queue_spare_look(self, pipe: Any, is_read: bool, patience_us: int) -> None:
        """Put one look for a spare slot on ``pipe``, as EVALSHA itself (one command)."""
        keys = [self._tail, self._waiting]
        pipe.evalsha(self._take_script.sha, len(keys), *keys,
                     *self.take_args(is_read, patience_us, "-", spare_only=True))

    def spare_look(self, is_read: bool, patience_us: int) -> Any:
        """The same one look for a spare slot, made alone (its raw answer)."""
        with redis_guard():
            return self._take_script(keys=[self._tail, self._waiting], args=self.take_args(
                is_read, patience_us, "-", spare_only=True))

    def give_back(self, slot_us: int) -> bool:
        """Return an unused slot when nobody reserved after it; whether it went back."""
        with redis_guard():
            answer = self._give_back_script(keys=[self._tail],
                                            args=[slot_us, self.interval_us])
        return int(answer[1]) == 1

    def leave(self, token: str) -> None:
        """A reader gives up its place in line."""
        with redis_guard():
            self._leave_script(keys=[self._waiting], args=[token])

    def pause(self, seconds: float) -> None:
        """No slot is granted to anyone for ``seconds``."""
        with redis_guard():
            self._pause_script(keys=[self._tail], args=[int(seconds * 1_000_000)])
