"""The optional `deliveries` worker loop (`flask --app wsgi gurugrow deliveries`).

Small and synchronous: every DELIVERY_WORKER_POLL_SECONDS one pass of
``flows.auto_fallback.check_due_sends``. The web app works without it; with it, a
messenger code that does not arrive goes by SMS with nobody pressing resend.
"""

from __future__ import annotations

import logging
import threading
import time

from gurugrow.basics.errors import StorageUnavailable
from gurugrow.flows.auto_fallback import check_due_sends
from gurugrow.logs import log_event
from gurugrow.services import Services


def run_worker(svc: Services, *, once: bool = False, max_seconds: float | None = None,
               stop: threading.Event | None = None) -> dict[str, int]:
    """Run passes until ``stop`` is set, ``max_seconds`` have passed, or after one pass
    with ``once``; return how many checks ended in each way."""
    stop = stop or threading.Event()
    started = time.monotonic()
    totals: dict[str, int] = {}
    log_event("deliveries_worker_started", once=once)
    while True:
        try:
            outcomes = check_due_sends(svc, should_stop=stop.is_set)
        except StorageUnavailable as e:  # Redis away: try again at the next poll
            log_event("deliveries_pass_failed", logging.ERROR, error=e)
            outcomes = {}
        for outcome, count in outcomes.items():
            totals[outcome] = totals.get(outcome, 0) + count
        if outcomes:
            log_event("deliveries_pass", **outcomes)
        if once or stop.is_set() or (
                max_seconds is not None and time.monotonic() - started >= max_seconds):
            break
        stop.wait(svc.settings.delivery_worker_poll_seconds)
    log_event("deliveries_worker_stopped", **totals)
    return totals
