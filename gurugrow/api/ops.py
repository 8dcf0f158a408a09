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
    """The day's send budget and what is spent of it, so an alert fires before refusals."""
    limits = services().limits
    metrics.SEND_BUDGET.set(limits.policy.daily_budget)
    try:
        metrics.SEND_BUDGET_USED.set(limits.budget_spent_today())
    except StorageUnavailable:  # Redis down: /health and storage_unavailable say so
        pass
