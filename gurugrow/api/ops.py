"""GET /metrics: Prometheus text format. Loopback and ALLOWED_CALLER_NETWORKS may scrape
without a token; anyone else only with ``Authorization: Bearer <METRICS_TOKEN>``."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request

from gurugrow import metrics
from gurugrow.api.callers import request_client_ip, unauthorized
from gurugrow.api.contract import services
from gurugrow.callers import bearer_token, in_networks, is_loopback
from gurugrow.storage import StorageUnavailable

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics_page() -> Response:
    settings = services().settings
    address = request_client_ip(settings)
    nearby = is_loopback(address) or in_networks(address, settings.caller_networks)
    if not nearby:
        token, offered = settings.metrics_token, bearer_token(
            request.headers.get("Authorization")) or ""
        if not token or not hmac.compare_digest(offered.encode(), token.encode()):
            return unauthorized()
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
