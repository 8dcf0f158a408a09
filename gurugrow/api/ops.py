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
    _read_mirror()
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
    for kind in ("history", "reread", "load"):
        metrics.MIRROR_SYNC_CALLS.labels(kind).set(int(state.get(f"calls_{kind}") or 0))
    metrics.MIRROR_FULL_RELOADS.set(int(state.get("full_reloads") or 0))
