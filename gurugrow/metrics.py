"""Prometheus metrics: what the service did, for `/metrics`.

Under gunicorn every worker writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (set by
gunicorn.conf.py) and `/metrics` adds them up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

# Bot answers are slow when an upstream is: buckets reach the 10 s upstream timeout.
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "gurugrow_requests_total", "Requests answered, by route, HTTP status and contract status.",
    ["endpoint", "method", "http_status", "status"])
REQUEST_SECONDS = Histogram(
    "gurugrow_request_duration_seconds", "Time to answer a request, by route.",
    ["endpoint", "method"], buckets=_BUCKETS)
UPSTREAM_CALLS = Counter(
    "gurugrow_upstream_requests_total",
    "Requests to RetailCRM, GreenSMS and the deduper, by gateway, call and outcome.",
    ["gateway", "method", "outcome"])
UPSTREAM_SECONDS = Histogram(
    "gurugrow_upstream_request_duration_seconds", "Upstream request time, by gateway and call.",
    ["gateway", "method"], buckets=_BUCKETS)
CODES_SENT = Counter(
    "gurugrow_codes_sent_total", "Codes accepted by GreenSMS, by route.", ["route"])
SMS_FALLBACKS = Counter(
    "gurugrow_sms_fallbacks_total", "Codes that went by SMS after the first route failed.",
    ["from_route"])
LIMIT_REFUSALS = Counter(
    "gurugrow_limit_refusals_total",
    "Refusals by a send limit or a lockout, by kind (region, budget, cooldown, phone_day, "
    "phone_hour, ip_hour, identity_locked).", ["kind"])

# A path segment holding an id (digits in it), except the API version: one label per call
# kind, never one per customer or order.
_ID_SEGMENT = re.compile(r"/(?!v\d+(?:/|$))[^/]*\d[^/]*")


def upstream_call_name(method: str, path: str) -> str:
    """``GET /api/v5/customers/{id}`` for ``GET /api/v5/customers/626518``."""
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def upstream_outcome(http_status: int) -> str:
    """``ok``, ``http_4xx`` or ``http_5xx`` for an upstream answer."""
    if http_status < 400:
        return "ok"
    return "http_4xx" if http_status < 500 else "http_5xx"


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (all workers' when multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
