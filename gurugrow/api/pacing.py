"""Answers that take the same time whatever happened inside: a floor on an endpoint's
answer time, so timing does not tell whose phone a code start was for."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import g

from gurugrow.api.contract import services
from gurugrow.logs import log_event


def answer_no_earlier(view: Callable[..., Any]) -> Callable[..., Any]:
    """Hold the view's finished answer until ``START_MIN_SECONDS`` after the request
    arrived (before_request's ``g.started``): every outcome of the path, a decoy, one
    customer, the deduper, an SMS fallback or a refusal, leaves at the same moment.

    Only what happens after the floor (writing the answer) and a path slower than the
    floor remain visible; the latter is logged, so the floor can be raised.
    """

    @functools.wraps(view)
    def paced(*args: Any, **kwargs: Any) -> Any:
        started = g.get("started") or time.perf_counter()
        response = view(*args, **kwargs)
        floor = services().settings.start_min_seconds
        left = started + floor - time.perf_counter()
        if left > 0:
            time.sleep(left)
        elif floor > 0:
            log_event("answer_floor_overrun", logging.WARNING, floor_ms=f"{floor * 1000:.0f}",
                      over_ms=f"{-left * 1000:.1f}")
        return response

    return paced
