"""The mirror poller's loop (`flask --app wsgi gurugrow mirror`, ``make mirror``).

One poller at a time across hosts: a lease in Redis (``mirror_store``), renewed while it
works; a second one waits and takes over when the first stops or dies, from the saved
history position. One ``Sync.sync_pass`` every MIRROR_POLL_SECONDS while changes flow;
idle, the interval doubles pass by pass up to half of MIRROR_MAX_LAG_SECONDS (so an idle
mirror costs a few calls a minute and is never stale for it); a failure (RetailCRM,
Redis, a lost lease) is logged and tried again at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from gurugrow.basics.errors import CrmBusy, LeaseLost, StorageUnavailable, UpstreamError
from gurugrow.flows.mirror_sync import Sync
from gurugrow.logs import log_event
from gurugrow.services import Services
from gurugrow.stores.mirror import MirrorStore
from gurugrow.stores.once import LeaseRenewer


def lease_seconds(poll_seconds: float) -> float:
    """How long the lease lasts unrenewed: a successor takes over within this."""
    return max(3 * poll_seconds, 15.0)


def run_mirror(svc: Services, *, once: bool = False, max_seconds: float | None = None,
               stop: threading.Event | None = None,
               progress: Callable[[str], None] = lambda line: None) -> dict[str, int]:
    """Run sync passes until ``stop``, ``max_seconds`` or, with ``once``, after one (a
    ``standby`` one when another poller holds the lease); return the passes by outcome."""
    if svc.mirror is None:
        raise RuntimeError("CRM_MIRROR is off")
    store: MirrorStore = svc.mirror
    stop = stop or threading.Event()
    poll = svc.settings.mirror_poll_seconds
    idle_cap = max(poll, svc.settings.mirror_max_lag_seconds / 2)
    interval = poll
    hold = lease_seconds(poll)
    token = uuid.uuid4().hex
    started = time.monotonic()
    totals: dict[str, int] = {}
    log_event("mirror_started", once=once)

    def renew() -> bool:
        return store.take_lease(token, hold)

    try:
        while not stop.is_set():
            outcome, busy = _one_pass(svc, store, token, hold, renew, progress)
            totals[outcome] = totals.get(outcome, 0) + 1
            if once or (max_seconds is not None and time.monotonic() - started >= max_seconds):
                break
            interval = next_interval(interval, poll, idle_cap, busy or outcome != "synced")
            if outcome != "behind":  # catching up goes on at once
                stop.wait(interval)
    finally:
        try:
            store.release_lease(token)
        except StorageUnavailable:
            pass
    log_event("mirror_stopped", **totals)
    return totals


def next_interval(interval: float, poll: float, idle_cap: float, busy: bool) -> float:
    """The wait before the next pass: MIRROR_POLL_SECONDS after a pass that found
    changes (or failed, or stood by), else twice the last wait, up to ``idle_cap``."""
    return poll if busy else min(interval * 2, idle_cap)


def _one_pass(svc: Services, store: MirrorStore, token: str, hold: float,
              renew: Callable[[], bool], progress: Callable[[str], None]) -> tuple[str, bool]:
    """One pass: its outcome, and whether it found anything to do."""
    try:
        if not store.take_lease(token, hold):
            return "standby", True
        sync = Sync(svc, store, token, progress)
        with LeaseRenewer(renew, every=hold / 3):
            done = sync.sync_pass(svc.clock)
        if set(done) - {"history"}:  # an idle pass (the history reads only) logs nothing
            log_event("mirror_pass", **done)
        busy = bool(set(done) - {"history", "marks"}) or store.pending_marks() > 0
        return ("behind" if done.get("behind") else "synced"), busy
    except LeaseLost:
        log_event("mirror_lease_lost", logging.WARNING)
        return "lease_lost", True
    except (UpstreamError, CrmBusy) as e:
        log_event("mirror_pass_failed", logging.WARNING, error=e)
        return "crm_failed", True
    except StorageUnavailable as e:
        log_event("mirror_pass_failed", logging.ERROR, error=e)
        return "storage_failed", True
