"""GET /metrics: Prometheus text format. Who may scrape is decided with every other
caller check (api/callers.py, ``CallerPolicy.for_scrapers``): loopback and
ALLOWED_CALLER_NETWORKS without a token, anyone else with ``Authorization: Bearer
<METRICS_TOKEN>``."""

from __future__ import annotations

from flask import Blueprint, Response

from gurugrow import metrics
from gurugrow.api.contract import services
from gurugrow.basics.errors import StorageUnavailable

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics_page() -> Response:
    _read_send_budget()
    _read_mirror()
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


def _read_send_budget() -> None:
    """The day's send and cost budgets and what is spent of them, so an alert fires
    before refusals; the conversion alert's threshold, so the rule reads the setting."""
    svc = services()
    limits = svc.limits
    metrics.SEND_BUDGET.set(limits.policy.daily_budget)
    metrics.COST_BUDGET.set(svc.settings.otp_daily_cost_budget)
    metrics.CONVERSION_ALERT_RATIO.set(svc.settings.conversion_alert_ratio)
    try:
        metrics.SEND_BUDGET_USED.set(limits.budget_spent_today())
        metrics.COST_BUDGET_USED.set(limits.cost_spent_today())
    except StorageUnavailable:  # Redis down: /health and storage_unavailable say so
        pass


def _read_mirror() -> None:
    """The mirror's lag and counts, from the sync state its poller keeps in Redis."""
    store = services().mirror
    if store is None:
        return
    try:
        state = store.state()
    except StorageUnavailable:
        return
    lag = store.lag_seconds(state)
    metrics.MIRROR_MAX_LAG_SECONDS.set(services().settings.mirror_max_lag_seconds)
    metrics.MIRROR_LAG_SECONDS.set(-1 if lag is None else lag)
    for kind in ("customers", "orders"):
        metrics.MIRROR_ENTITIES.labels(kind).set(int(state.get(kind) or 0))
    for kind in ("history", "reread", "load", "marks"):
        metrics.MIRROR_SYNC_CALLS.labels(kind).set(int(state.get(f"calls_{kind}") or 0))
    loading = state.get("load_entity") not in (None, "done")
    for what, field in (("page", "load_page"), ("pages", "load_pages"),
                        ("calls", "load_calls"), ("elapsed_seconds", "load_elapsed"),
                        ("left_seconds", "load_left")):
        metrics.MIRROR_LOAD_PROGRESS.labels(what).set(
            float(state.get(field) or 0) if loading else 0)
    try:
        metrics.MIRROR_PENDING.labels("rechecks").set(store.pending_rechecks())
        metrics.MIRROR_PENDING.labels("marks").set(store.pending_marks())
    except StorageUnavailable:
        pass
    metrics.MIRROR_FULL_RELOADS.set(int(state.get("full_reloads") or 0))
