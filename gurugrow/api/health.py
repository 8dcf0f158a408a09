"""GET /health: 200 while Redis answers and takes writes, 503 when it does not answer
or refuses writes (out of memory under noeviction, a read-only replica), with why."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gurugrow.api.contract import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    state, reason = services().otp.write_state()
    if state == "ok":
        return jsonify({"status": "ok", "redis": "ok"}), 200
    body = {"status": "error", "redis": state}
    if reason:
        body["reason"] = reason
    return jsonify(body), 503
