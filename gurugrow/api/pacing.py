"""Answers that take the same time whatever happened inside: a floor on an endpoint's
answer time, so timing does not tell whose phone a code start was for."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import g

from gurugrow.api.contract import services, validation_error_codes
from gurugrow.logs import log_event

# Refusals decided before the phone is looked up (and the same for every phone): the send
# limits, a session's own state, no RetailCRM slot for the lookup. Their timing tells
# nothing, so they answer at once, as do the request schema's validation errors.
DECIDED_BEFORE_LOOKUP = frozenset({
    "phone_country_not_allowed", "resend_too_early", "rate_limited",
    "send_budget_exhausted", "session_not_found", "too_many_attempts", "busy"})


def answer_no_earlier(view: Callable[..., Any]) -> Callable[..., Any]:
    """Hold a start's answer until ``START_MIN_SECONDS`` after its arrival."""
    # Hold the view's finished answer until ``START_MIN_SECONDS`` after the request arrived
    # (before_request's ``g.started``): every outcome of the path that may have looked the phone up,
    # a decoy, one customer, the deduper, an SMS fallback or an upstream failure, leaves at the same
    # moment. A refusal decided before any lookup (``DECIDED_BEFORE_LOOKUP``, a validation error)
    # answers at once: under a flood of invalid starts no thread is held for the floor.
    #
    # Only what happens after the floor (writing the answer) and a path slower than the floor remain
    # visible; the latter is logged, so the floor can be raised.
    contract = getattr(view, "contract", None)
    at_once = DECIDED_BEFORE_LOOKUP | (
        frozenset(validation_error_codes(contract.request)) if contract else frozenset())

    @functools.wraps(view)
    def paced(*args: Any, **kwargs: Any) -> Any:
        started = g.get("started") or time.perf_counter()
        response = view(*args, **kwargs)
        body = response.get_json(silent=True) if hasattr(response, "get_json") else None
        if isinstance(body, dict) and body.get("errorCode") in at_once:
            return response
        floor = services().settings.start_min_seconds
        left = started + floor - time.perf_counter()
        if left > 0:
            time.sleep(left)
        elif floor > 0:
            log_event("answer_floor_overrun", logging.WARNING, floor_ms=f"{floor * 1000:.0f}",
                      over_ms=f"{-left * 1000:.1f}")
        return response

    return paced
