"""GET /metrics: Prometheus text format. Who may scrape is decided with every other
caller check (api/callers.py, ``CallerPolicy.for_scrapers``): loopback and
ALLOWED_CALLER_NETWORKS without a token, anyone else with ``Authorization: Bearer
<METRICS_TOKEN>``."""

from __future__ import annotations

from flask import Blueprint, Response

from gurugrow import metrics
from gurugrow.api.contract import services
from gurugrow.storage import StorageUnavailable

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics_page() -> Response:
    _read_send_budget()
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
