"""GET /health: 200 while Redis answers, 503 when it does not."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gurugrow.api.contract import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    redis_ok = services().otp.ping()
    body = {"status": "ok" if redis_ok else "error",
            "redis": "ok" if redis_ok else "unavailable"}
    return jsonify(body), 200 if redis_ok else 503
