"""GET /metrics: Prometheus text format, behind METRICS_TOKEN when one is set."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, request

from gurugrow import metrics
from gurugrow.api.contract import services

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics_page() -> Response:
    token = services().settings.metrics_token
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token and not hmac.compare_digest(offered.encode(), token.encode()):
        abort(401)
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
