"""Run-once: an operation done once per key, its result replayed, under a
renewed lease that lapses by itself when the worker dies."""

from __future__ import annotations

import heapq
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from gurugrow.basics.errors import InProgress, StorageUnavailable
from gurugrow.stores.client import (
    PipelineRider,
    Riders,
    WriteBatch,
    redis_guard,
    registered_script,
    run_script,
    written,
)
from gurugrow.stores.scripts import load_script


class _Renewal:
    """One lease being renewed: when it is next due, and whether it still runs."""

    __slots__ = ("renew", "every", "due", "active")

    def __init__(self, renew: Callable[[], bool], every: float, due: float) -> None:
        self.renew, self.every, self.due, self.active = renew, every, due, True


class _Renewals:
    """One background thread per process renews every running lease when it falls due.

    Not a thread per lease: a thread start and join on every claimed code or repeat
    costs more CPU than the Redis round trips of the request itself.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        # After a fork the parent's thread and lock do not exist here: start afresh.
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Renewal]] = []
        self._count = itertools.count()
        self._running: _Renewal | None = None
        self._thread: threading.Thread | None = None

    def add(self, renew: Callable[[], bool], every: float) -> _Renewal:
        if self._pid != os.getpid():
            self._reset()
        entry = _Renewal(renew, every, time.monotonic() + every)
        with self._cond:
            heapq.heappush(self._heap, (entry.due, next(self._count), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-renewer",
                                                daemon=True)
                self._thread.start()
            if self._heap[0][2] is entry:  # due before the one the thread waits for
                self._cond.notify()
        return entry

    def remove(self, entry: _Renewal) -> None:
        """Stop renewing ``entry``; returns once no renewal of it is in flight, so the
        caller may settle the lease knowing nothing renews it afterwards."""
        with self._cond:
            entry.active = False
            while self._running is entry:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and not self._heap[0][2].active:
                    heapq.heappop(self._heap)  # removed while waiting: drop it
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, entry = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._running = entry
            try:
                kept = entry.renew()
            except Exception:  # noqa: BLE001 - a failed renewal must not kill the work
                kept = True  # Redis may be back by the next turn
            with self._cond:
                self._running = None
                if kept and entry.active:
                    entry.due = time.monotonic() + entry.every
                    heapq.heappush(self._heap, (entry.due, next(self._count), entry))
                # else lost: someone took over; stop renewing someone else's lease
                self._cond.notify_all()


_RENEWALS = _Renewals()


class LeaseRenewer:
    """Calls ``renew`` every ``every`` seconds (on the process's renewal thread) while
    the ``with`` block runs, so a lease outlives slow work but lapses soon after a crash.
    Stops after ``renew`` returns False (the lease was lost)."""

    def __init__(self, renew: Callable[[], bool], every: float) -> None:
        self._renew = renew
        self._every = every
        self._entry: _Renewal | None = None

    def __enter__(self) -> LeaseRenewer:
        self._entry = _RENEWALS.add(self._renew, self._every)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._entry is not None:
            _RENEWALS.remove(self._entry)


# The marker of one idempotent operation is a hash (its ``result`` once kept, and the
# ``notes`` of the attempt that ran it); the attempt running it holds a lease key with a
# short TTL, renewed while it works. A crashed attempt's lease lapses by itself and the
# next attempt takes over, with the notes (e.g. the order number it was creating).
_CLAIM_SCRIPT = load_script("once_claim")


_NOTE_SCRIPT = load_script("once_note")


# Only the lease's holder finishes: when another attempt took over (this one's lease
# lapsed), its result is the one to keep and this one writes nothing. A lapsed lease
# nobody took still lets the holder keep its result, or a replay would redo the work.
_FINISH_SCRIPT = load_script("once_finish")


# Extends a lease (KEYS[1]) only while its holder (ARGV[1]) still holds it.
RENEW_LEASE_SCRIPT = load_script("once_renew_lease")


class Lease:
    """One attempt's hold on an operation. ``resumed`` says an earlier attempt ran (and
    crashed or failed); ``notes`` are what it wrote down. ``note`` writes this attempt's,
    before a step whose effect the next attempt must be able to find (an order number)."""

    def __init__(self, client: redis.Redis, keys: list[str], lease_seconds: float,
                 notes: dict[str, Any]) -> None:
        self._client = client
        self._keys = keys
        self._ms = max(int(lease_seconds * 1000), 1)
        self.token = uuid.uuid4().hex
        self.notes = notes
        self.resumed = False  # an earlier attempt ran (and died or failed) before this one
        # It waited for another attempt first: what rode on the first claim is older news.
        self.waited = False

    def note(self, rider: PipelineRider | None = None, **fields: Any) -> None:
        """Remember ``fields`` with the operation (kept until its window ends); ``rider``
        rides the same round trip."""
        self.notes = {**self.notes, **fields}
        run_script(self._client, registered_script(self._client, _NOTE_SCRIPT), self._keys,
                   [self.token, json.dumps(self.notes, ensure_ascii=False)], rider)

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (lapsed and taken over)."""
        with redis_guard():
            return bool(registered_script(self._client, RENEW_LEASE_SCRIPT)(
                keys=self._keys[1:], args=[self.token, self._ms]))


class ClaimAhead:
    """The first claim of a run-once operation, riding another step's round trip (a
    ``PipelineRider``); ``run_once(..., ahead=)`` starts from its answer, and
    ``give_up`` frees what it claimed when the operation is not run after all."""

    def __init__(self, client: redis.Redis, key: str, lease_key: str, window: int,
                 lease_seconds: float) -> None:
        self._client = client
        self.keys = [key, lease_key]
        self.window = window
        self.lease = Lease(client, self.keys, lease_seconds, {})
        self.answer: list[Any] | None = None  # the claim script's, once it rode
        self.taken = False  # run_once started from it

    def queue(self, pipe: Any) -> None:
        script = registered_script(self._client, _CLAIM_SCRIPT)
        pipe.evalsha(script.sha, len(self.keys), *self.keys, self.lease.token,
                     self.lease._ms, self.window)

    def receive(self, answer: Any) -> None:
        # A script Redis lost (or a failure): no answer, run_once claims on its own.
        if not isinstance(answer, Exception):
            self.answer = answer

    def take(self) -> list[Any] | None:
        """The claim's answer for run_once to start from, once (None: it got none)."""
        if self.taken or self.answer is None:
            return None
        self.taken = True
        return self.answer

    def give_up(self) -> None:
        """Free the lease this claim took, unless run_once took it over."""
        answer = self.take()
        if answer is not None and _state(answer[0]) in ("claimed", "resumed"):
            _free_lease(self._client, self.keys, self.lease.token, self.window)


def _state(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _free_lease(client: redis.Redis, keys: list[str], token: str, window: int) -> None:
    """Free a lease without keeping a result; best effort: an unfreed one lapses by
    itself, so a failure here must not hide the error that brought us here."""
    try:
        with redis_guard():
            registered_script(client, _FINISH_SCRIPT)(keys=keys, args=[token, "", window])
    except StorageUnavailable:
        pass


def run_once(client: redis.Redis, key: str, lease_key: str, window: int,
             operation: Callable[[Lease], dict], *,
             keep: Callable[[dict], bool] = lambda result: True,
             wait_seconds: float = 10.0, poll: float = 0.05,
             lease_seconds: float = 1.0, rider: PipelineRider | Riders | None = None,
             batch: WriteBatch | None = None, ahead: ClaimAhead | None = None) -> dict:
    """Run ``operation`` once per ``key`` within ``window`` seconds; repeats get its result.
    With ``batch``, a finished operation's lease is freed when that batch is sent; with
    ``ahead``, the first claim is the one that rode another step (``rider`` then unused)."""
    # ``lease_key`` (same cluster slot) is held while an attempt runs it.
    #
    # The running attempt holds a lease of ``lease_seconds``, renewed while it works. A concurrent
    # repeat waits up to ``wait_seconds`` for the first one's result, then raises InProgress; when
    # the lease lapses (the worker died) it takes over at once, with the notes the first attempt
    # left in ``Lease.notes``. A result that ``keep`` rejects, or an exception, frees the operation
    # for the next call (notes are kept). ``rider`` rides on the first claim's round trip.
    keys = [key, lease_key]
    deadline = time.monotonic() + wait_seconds
    waited = False
    claimed = ahead.take() if ahead is not None else None
    while True:
        if claimed is not None and ahead is not None:
            lease, (state, raw) = ahead.lease, claimed
            claimed = rider = None
        else:
            lease = Lease(client, keys, lease_seconds, {})
            state, raw = run_script(client, registered_script(client, _CLAIM_SCRIPT), keys,
                                    [lease.token, lease._ms, window], rider)
            rider = None
        lease.waited = waited
        state = _state(state)
        if state == "done":
            return json.loads(raw)
        if state in ("claimed", "resumed"):
            lease.resumed = state == "resumed"
            break
        if time.monotonic() >= deadline:
            raise InProgress(key)
        waited = True
        time.sleep(poll)
    lease.notes = json.loads(raw) if raw else {}
    finish = registered_script(client, _FINISH_SCRIPT)
    try:
        with LeaseRenewer(lease.renew, every=lease_seconds / 4):
            result = operation(lease)
    except BaseException:
        _free_lease(client, keys, lease.token, window)
        raise
    kept = json.dumps(result, ensure_ascii=False) if keep(result) else ""
    with written(client, batch) as writes:
        # Freed last in the caller's batch, after the writes the operation guards. A free
        # that fails costs nothing a kept result needs: the lease lapses by itself.
        writes.script(finish, keys, [lease.token, kept, window], last=True,
                      on_failure=None if kept else _lapses_by_itself)
    return result


def _lapses_by_itself(error: Exception) -> None:
    """A lease not freed: the next attempt waits out its few seconds."""
