"""Prometheus metrics: what the service did, for `/metrics`.

Under gunicorn every worker writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (set by
gunicorn.conf.py) and `/metrics` adds them up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from gurugrow.routes import ROUTES

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
    "gurugrow_sms_fallbacks_total", "Codes that went by the workflow's next route after the "
    "first failed (by SMS with the default workflows).",
    ["from_route"])
LIMIT_REFUSALS = Counter(
    "gurugrow_limit_refusals_total",
    "Refusals by a send limit or a lockout, by kind (region, budget, cooldown, phone_day, "
    "phone_hour, ip_hour, account_hour, account_day, identity_locked).", ["kind"])

# RetailCRM quota (the shared bucket), circuit breaker and caches.
CRM_SLOTS = Counter(
    "gurugrow_crm_slots_total", "RetailCRM call slots taken from the shared bucket, by "
    "priority (journey: a step after a code was sent; read: status and order reads).",
    ["priority"])
CRM_SLOT_WAIT_SECONDS = Histogram(
    "gurugrow_crm_slot_wait_seconds", "Time a RetailCRM call waited for a slot, by priority.",
    ["priority"], buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CRM_SLOT_RIDERS = Counter(
    "gurugrow_crm_slot_riders_total", "Slots asked for in another Redis step's round trip "
    "(a code check's, a start's), by outcome: kept (granted), none (no spare slot: the "
    "call asks the bucket itself), used, given_back (unused, returned), wasted (unused and "
    "not returnable, or woke too late).", ["outcome"])
CRM_BUSY = Counter(
    "gurugrow_crm_busy_total",
    "Requests answered errorCode=busy: no RetailCRM slot within RETAILCRM_QUEUE_SECONDS.",
    ["priority"])
CRM_WAITING_ROOM_FULL = Counter(
    "gurugrow_crm_waiting_room_full_total",
    "Of those, answered at once: the worker already had RETAILCRM_MAX_WAITING waiting.",
    ["priority"])
CRM_THROTTLED = Counter(
    "gurugrow_crm_throttled_total", "RetailCRM answers 503 or 429 (over the key's quota).",
    ["http_status"])
CRM_BREAKER_OPEN = Gauge(
    "gurugrow_crm_breaker_open", "1 while the RetailCRM circuit breaker is open.",
    multiprocess_mode="livemax")
CACHE_LOOKUPS = Counter(
    "gurugrow_cache_lookups_total", "Cache lookups, by cache (binding, orders, statuses: with the "
    "account time zone) and "
    "result (hit, miss).", ["cache", "result"])

# The RetailCRM mirror (docs/MIRROR.md): reads counted by each worker; the rest is what
# the mirror poller keeps in its sync state, read from Redis at each scrape.
MIRROR_READS = Counter(
    "gurugrow_mirror_reads_total", "Binding and order-list reads (what) answered from the "
    "mirror or live (source: mirror, live); live while CRM_MIRROR=1 means the mirror was "
    "stale, incomplete for the customer, or broken.", ["what", "source"])
MIRROR_LAG_SECONDS = Gauge(
    "gurugrow_mirror_lag_seconds", "Seconds since the mirror's last successful sync (-1: "
    "never synced, or Redis was flushed).", multiprocess_mode="mostrecent")
MIRROR_MAX_LAG_SECONDS = Gauge(
    "gurugrow_mirror_max_lag_seconds", "MIRROR_MAX_LAG_SECONDS: past this lag reads go "
    "live (the alert's threshold).", multiprocess_mode="mostrecent")
MIRROR_ENTITIES = Gauge(
    "gurugrow_mirror_entities", "Entities in the mirror, by kind (customers, orders), "
    "exact after each full load.", ["kind"], multiprocess_mode="mostrecent")
MIRROR_SYNC_CALLS = Gauge(
    "gurugrow_mirror_sync_calls", "RetailCRM calls the mirror poller made since its last "
    "full load, by kind (history, reread, load): a counter kept in Redis.", ["kind"],
    multiprocess_mode="mostrecent")
MIRROR_LOAD_PROGRESS = Gauge(
    "gurugrow_mirror_load_progress", "The mirror's load in progress: pages read of its "
    "listing, by what (page, pages, calls, elapsed_seconds, left_seconds); 0 "
    "when no load runs.", ["what"], multiprocess_mode="mostrecent")
MIRROR_PENDING = Gauge(
    "gurugrow_mirror_pending", "Waiting for the mirror poller, by what (rechecks: entities "
    "to re-read; marks: chatbot_interacted marks to write).", ["what"],
    multiprocess_mode="mostrecent")
MIRROR_FULL_RELOADS = Gauge(
    "gurugrow_mirror_full_reloads", "Full loads the mirror poller has made (kept in "
    "Redis; reset by a flush).", multiprocess_mode="mostrecent")

# Code delivery tracking (GreenSMS status) and the deliveries worker.
DELIVERIES = Counter(
    "gurugrow_deliveries_total", "Code sends by route and delivery outcome (sent, delivered, "
    "failed, unknown).", ["route", "outcome"])
DELIVERY_SECONDS = Histogram(
    "gurugrow_delivery_seconds", "Time from a send to its delivered status, by route.",
    ["route"], buckets=(1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0))
AUTO_FALLBACKS = Counter(
    "gurugrow_auto_fallbacks_total", "Codes the deliveries worker re-sent by SMS after a "
    "messenger send was not delivered in time, by the first route.", ["from_route"])

# What operators are paged on (deploy/prometheus/alerts.yml): answers by errorCode (the
# codes the contracts declare, a closed set) and the day's send budget, read at scrape.
ERROR_ANSWERS = Counter(
    "gurugrow_error_answers_total", "Contract answers carrying an errorCode, by route and "
    "errorCode (storage_unavailable: Redis; crm_unavailable: RetailCRM; delivery_failed: "
    "no route took the code).", ["endpoint", "error_code"])


def _budget_gauges(name: str, setting: str, what: str) -> tuple[Gauge, Gauge]:
    """A daily budget's gauges: what is used of it today (UTC day) and the budget."""
    used = Gauge(f"gurugrow_{name}_used", f"{what.capitalize()} admitted today (UTC day) "
                 f"against {setting}, read from Redis at each scrape.",
                 multiprocess_mode="mostrecent")
    budget = Gauge(f"gurugrow_{name}", f"{setting}: {what} per UTC day, whole service "
                   "(0: no budget).", multiprocess_mode="mostrecent")
    return used, budget


SEND_BUDGET_USED, SEND_BUDGET = _budget_gauges("send_budget", "OTP_DAILY_SEND_BUDGET", "codes")

# Verification by method and what codes cost (CODE_PRICES); the conversion alert's
# threshold (CONVERSION_ALERT_RATIO) is exported so the rule reads the app's setting.
VERIFICATIONS = Counter(
    "gurugrow_verifications_total", "Successful verifications (a code checked or a contact "
    "bound), by method (telegram_otp, vk_otp, sms_otp, telegram_contact, max_contact).",
    ["method"])
CODE_COST = Counter(
    "gurugrow_code_cost_total", "What the codes GreenSMS accepted cost, by route, in the "
    "shop's currency (CODE_PRICES).", ["route"])
CONVERSION_ALERT_RATIO = Gauge(
    "gurugrow_conversion_alert_ratio", "CONVERSION_ALERT_RATIO: the conversion alert fires "
    "when a route's codes verified / codes sent over 1 h falls below it.",
    multiprocess_mode="mostrecent")
COST_BUDGET_USED, COST_BUDGET = _budget_gauges("cost_budget", "OTP_DAILY_COST_BUDGET",
                                               "priced cost of codes")


# Every route's series exists from the start (0 until used), so the dashboard and the
# cost panels list each declared route (gurugrow/routes.py).
for _route in ROUTES:
    CODES_SENT.labels(_route)
    CODE_COST.labels(_route)


def upstream_call_name(method: str, route: str) -> str:
    """The ``call`` label: the method and the gateway's route template
    (``GET /api/v5/customers/{id}``), never a path with an id or anything a request sent,
    so the label set is closed."""
    return f"{method} {route}"


# Any token is a method to an HTTP server: a label takes only the standard ones.
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def method_label(method: str) -> str:
    """The request's method as a label: a standard method, else ``other``."""
    return method if method in _HTTP_METHODS else "other"


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
