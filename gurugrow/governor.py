"""The RetailCRM governor: who waits for a slot of the shared bucket (``stores.quota``),
with which priority, until when, and in how many places per process.

Priority: a step after a code was sent, or a start's lookup (``journey``), may reserve
as far ahead as its queue deadline. A read (``read``: status, orders, preview) may
reserve at most ``RETAILCRM_READ_HORIZON_SECONDS`` ahead; beyond that it waits in the
bucket's FIFO line of readers that journey calls pass. A journey call therefore waits at
most the read horizon plus the journey calls ahead of it, however large the wave of reads.

A request whose Redis step comes just before its first RetailCRM call (a code check, a
start's or a contact binding's admission) asks for that call's slot in the same round
trip (``SlotRider``, handed to that step as its ``rider``), before the step has decided
whether the call will be made. So the look takes only a slot the bucket has spare now
(at most one interval ahead) and never a place in line; anything else keeps nothing,
and the call asks the bucket itself. Under a wave, then, a flood of wrong codes or
refused starts takes no slot at all; when the bucket has room, a slot so taken and not
used goes back when nobody reserved after it.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from gurugrow import metrics
from gurugrow.basics.errors import CrmBusy, StorageUnavailable
from gurugrow.basics.request_scope import (
    CRM_ANSWER_BY,
    CRM_PLACE,
    CRM_PRIORITY,
    CRM_REQUEST_DEADLINE,
    CRM_SLOTS_AHEAD,
)
from gurugrow.logs import log_event
from gurugrow.stores.quota import BUSY, GRANTED, IN_LINE, Grant, QuotaBucket

JOURNEY, READ = "journey", "read"
# Of a request's answer budget, kept for the call made in its last slot and the answer
# itself: slot waits end this long before the budget does.
ANSWER_RESERVE_SECONDS = 0.5
# A waiter never sleeps less than this between two looks at the line.
_MIN_POLL_SECONDS = 0.002
# A slot this close is taken at once: a shorter sleep lasts longer than asked (timer
# slack), and half a millisecond is nothing next to network jitter. Only limits far above
# RetailCRM's (the benchmark's) give such waits; at 9/s they are 0 or tens of ms.
_MIN_SLEEP_SECONDS = 0.0005


def current_priority() -> str:
    """The priority of the CRM calls the current request makes."""
    return CRM_PRIORITY.get() or JOURNEY


@contextmanager
def crm_priority(priority: str, budget_seconds: float | None = None) -> Iterator[None]:
    """CRM calls made inside take slots with ``priority`` and share one queue deadline."""
    token = CRM_PRIORITY.set(priority)  # ``journey`` or ``read``
    deadline_token = CRM_REQUEST_DEADLINE.set([])  # one queue deadline: one request
    ahead_token = CRM_SLOTS_AHEAD.set([])
    place_token = CRM_PLACE.set([0])
    # With ``budget_seconds`` (the time left of the request's answer budget) they stop
    # waiting ``ANSWER_RESERVE_SECONDS`` before it runs out.
    answer_by = None if budget_seconds is None else (
        time.monotonic() + budget_seconds - ANSWER_RESERVE_SECONDS)
    answer_token = CRM_ANSWER_BY.set(answer_by)
    try:
        yield
    finally:
        unused = CRM_SLOTS_AHEAD.get() or []
        CRM_ANSWER_BY.reset(answer_token)
        CRM_PLACE.reset(place_token)
        CRM_SLOTS_AHEAD.reset(ahead_token)
        CRM_REQUEST_DEADLINE.reset(deadline_token)
        CRM_PRIORITY.reset(token)
        for slot in reversed(unused):  # the last one first: each may uncover the one before
            slot.quota.give_back(slot.slot_us)


class SlotAhead(NamedTuple):
    quota: CrmQuota
    wake_at: float  # monotonic time the slot begins
    slot_us: int  # its server time


class SlotRider:
    """The slot of a request's next RetailCRM call, asked for in another Redis step's round trip."""

    def __init__(self, quota: CrmQuota, priority: str, patience_us: int,
                 ahead: list[SlotAhead]) -> None:
        self._quota = quota
        self._priority = priority
        self._patience_us = patience_us
        self._ahead = ahead

    def queue(self, pipe: Any) -> None:
        """Put the slot's request on ``pipe`` (one command, one answer)."""
        # Queued on that step's pipeline: one look for a spare slot
        # (``take_args(spare_only=True)``).
        self._quota.bucket.queue_spare_look(pipe, self._priority == READ, self._patience_us)

    def take_now(self) -> bool:
        """The same one look, made alone (the lowest priority's calls: the mirror's
        chatbot_interacted marks): True when a slot was kept for the next call, i.e. the
        bucket had room now and no reader was waiting."""
        before = len(self._ahead)
        try:
            answer = self._quota.bucket.spare_look(self._priority == READ, self._patience_us)
        except StorageUnavailable:
            return False
        self.receive(answer)
        return len(self._ahead) > before

    def receive(self, answer: Any) -> None:
        """The command's answer (an exception when it failed)."""
        # Anything but a grant, or a failed script, keeps nothing, and the call then asks
        # the bucket itself; a grant is kept for the call.
        if isinstance(answer, Exception) or int(answer[0]) != GRANTED:
            metrics.CRM_SLOT_RIDERS.labels("none").inc()
            return
        metrics.CRM_SLOT_RIDERS.labels("kept").inc()
        q = self._quota
        self._ahead.append(SlotAhead(q, q.now() + int(answer[1]) / 1_000_000,
                                      int(answer[2])))


class WaitingRoom:
    """The requests of one process waiting for a slot at once: readers up to
    ``read_places``, journey calls up to ``journey_places`` (0: no cap)."""

    def __init__(self, read_places: int, journey_places: int) -> None:
        self._places = {READ: read_places, JOURNEY: journey_places}
        self._lock = threading.Lock()
        self.waiting = 0

    def places(self, priority: str) -> int:
        return self._places.get(priority, self._places[READ])

    def enter(self, priority: str, held: list[int] | None = None) -> bool:
        """Take a place (True), or False when this priority's places are all taken.
        ``held`` is the request's place: a call of a request already waiting shares it."""
        cap = self.places(priority)
        with self._lock:
            if held and held[0] > 0:
                held[0] += 1
                return True
            if cap and self.waiting >= cap:
                return False
            self.waiting += 1
            if held is not None:
                held[0] = 1
            return True

    def leave(self, held: list[int] | None = None) -> None:
        """Give the place back (the request's, once its last waiting call leaves)."""
        with self._lock:
            if held is not None:
                held[0] -= 1
                if held[0] > 0:
                    return
            self.waiting -= 1


class CrmQuota:
    """The governed bucket: ``acquire`` before every RetailCRM call, ``slow_down`` on a
    503/429."""

    def __init__(self, client: Any, prefix: str, *, rate_limit: int, queue_seconds: float,
                 read_horizon_seconds: float, max_waiting: int = 0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate_limit = rate_limit
        # This process's waiting room (0: no cap): readers up to max_waiting, journey
        # calls half as many places again.
        self.waiting_room = WaitingRoom(max_waiting, max_waiting + max(max_waiting // 2, 1)
                                        if max_waiting else 0)
        self.queue_seconds = queue_seconds
        self.bucket = QuotaBucket(client, prefix, rate_limit=rate_limit,
                                  queue_seconds=queue_seconds,
                                  read_horizon_seconds=read_horizon_seconds)
        self.interval_us = self.bucket.interval_us
        # Half a slot late and a call would bunch up with the next one at the CRM; below
        # 20 ms a timer's own jitter would count (only at rates far above RetailCRM's).
        self.late_tolerance = max(self.interval_us / 2_000_000, 0.02)
        self._sleep = sleep
        self._monotonic = monotonic

    def deadline(self) -> float:
        """The monotonic time a call starting now stops waiting for a slot: the request's,
        set by its first CRM call, inside ``crm_priority``; else the call's own."""
        shared = CRM_REQUEST_DEADLINE.get()
        if shared:
            return shared[0]
        deadline = self._monotonic() + self.queue_seconds
        answer_by = CRM_ANSWER_BY.get()
        if answer_by is not None:
            deadline = min(deadline, answer_by)
        if shared is not None:
            shared.append(deadline)
        return deadline

    def acquire(self, deadline: float | None = None, priority: str | None = None) -> float:
        """Wait for a slot (until ``deadline``); return the seconds waited."""
        # Raises CrmBusy (with the estimated wait) when no slot comes in time, at once when
        # the line is already longer than the time left or this process's waiting room is
        # full.
        priority = priority or current_priority()
        began = self._monotonic()
        waited = self._use_slot_ahead(priority, began)
        if waited is not None:
            return waited
        deadline = self.deadline() if deadline is None else deadline
        token = secrets.token_hex(8) if priority == READ else "-"  # only a reader's line
        place = CRM_PLACE.get()
        if not self.waiting_room.enter(priority, place):
            metrics.CRM_BUSY.labels(priority).inc()
            metrics.CRM_WAITING_ROOM_FULL.labels(priority).inc()
            raise CrmBusy(max(1, math.ceil(self.waiting_room.places(priority)
                                           / self.rate_limit)))
        try:
            return self._take(priority, deadline, began, token)
        except BaseException:
            if priority == READ:  # a reader that stops waiting leaves the line at once
                self._leave(token)
            raise
        finally:
            self.waiting_room.leave(place)

    def rider(self) -> SlotRider | None:
        """A slot for the request's next RetailCRM call, to be asked for in another Redis
        step's round trip; None outside a request (``crm_priority``), and while a slot
        taken ahead still waits for that next call."""
        ahead = CRM_SLOTS_AHEAD.get()
        # A second slot ahead would serve the call after next: one call-time later, past
        # the slot's tolerance, so it would go unused, a slot of the quota lost.
        if ahead is None or ahead:
            return None
        patience = max(self.deadline() - self._monotonic(), 0.0)
        return SlotRider(self, current_priority(), int(patience * 1_000_000), ahead)

    def _use_slot_ahead(self, priority: str, began: float) -> float | None:
        """Wait for a slot taken ahead, if there is one; the seconds waited, or None."""
        ahead = CRM_SLOTS_AHEAD.get()
        try:  # not "if ahead": a request's two parallel reads may race for the last one
            slot = ahead.pop(0) if ahead is not None else None
        except IndexError:
            slot = None
        if slot is None:
            return None
        waited = self._wait_for_slot(slot.wake_at, priority, began)
        metrics.CRM_SLOT_RIDERS.labels("wasted" if waited is None else "used").inc()
        return waited

    def _wait_for_slot(self, wake_at: float, priority: str, began: float,
                       check_late: bool = True) -> float | None:
        """Sleep until the slot at ``wake_at``; the seconds waited since ``began``
        (counted as a slot taken), or None when woke too late to use it."""
        delay = wake_at - self._monotonic()
        if delay >= _MIN_SLEEP_SECONDS:
            self._sleep(delay)
        late = self._monotonic() - wake_at
        if check_late and late > self.late_tolerance:
            # Woke too late (a starved CPU): sent now, this call would land among later
            # slots' calls and bunch up at the CRM. Its slot stays unused.
            log_event("crm_slot_missed", priority=priority, late_ms=f"{late * 1000:.0f}")
            return None
        waited = self._monotonic() - began
        metrics.CRM_SLOTS.labels(priority).inc()
        metrics.CRM_SLOT_WAIT_SECONDS.labels(priority).observe(waited)
        return waited

    def give_back(self, slot_us: int) -> None:
        """Return an unused slot taken ahead, when nobody reserved after it (best effort:
        otherwise it stays unused, which only costs throughput, never the quota)."""
        returned = False
        try:
            returned = self.bucket.give_back(slot_us)
        except StorageUnavailable:
            pass
        metrics.CRM_SLOT_RIDERS.labels("given_back" if returned else "wasted").inc()

    def now(self) -> float:
        """The monotonic time this bucket's waits are measured in."""
        return self._monotonic()

    def _leave(self, token: str) -> None:
        try:
            self.bucket.leave(token)
        except StorageUnavailable:
            pass  # the line forgets a silent reader by itself after RETAILCRM_QUEUE_SECONDS

    def _take(self, priority: str, deadline: float, began: float, token: str) -> float:
        while True:
            patience = max(deadline - self._monotonic(), 0.0)
            grant = self.reserve(priority, patience, token)
            if grant.state == BUSY:
                metrics.CRM_BUSY.labels(priority).inc()
                raise CrmBusy(max(1, math.ceil(grant.seconds)))
            if grant.state == IN_LINE:
                self._sleep(max(grant.seconds, _MIN_POLL_SECONDS))
                continue
            waited = self._wait_for_slot(self._monotonic() + grant.seconds, priority, began,
                                         check_late=grant.seconds > 0)
            if waited is not None:
                return waited

    def reserve(self, priority: str, patience_seconds: float, token: str) -> Grant:
        """One look at the bucket (one round trip): a slot, a place in line, or busy."""
        return self.bucket.reserve(priority == READ, patience_seconds, token)

    def slow_down(self, seconds: float) -> None:
        """No slot is granted to anyone for ``seconds`` (the CRM said 503/429)."""
        self.bucket.pause(seconds)
