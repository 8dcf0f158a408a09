"""The deduper stand-in: ``auto-resolve`` finds the one customer owning a phone (or the
answer a test pinned for it)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gurugrow.sandbox import SANDBOX_DEDUPE_KEY
from gurugrow.sandbox.state import phone_key, state

dedupe = Blueprint("deduper", __name__, url_prefix="/deduper")


@dedupe.post("/api/dedupe/auto-resolve")
def auto_resolve() -> ResponseReturnValue:
    st = state()
    if request.headers.get("X-API-Key") != SANDBOX_DEDUPE_KEY:
        return jsonify({"detail": "Invalid API key"}), 401
    if failed := st.failure("dedupe"):
        return failed
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body.get("phone"):
        return jsonify({"detail": "phone is required"}), 422
    with st.lock:
        st.dedupe_calls.append(body)
    phone = phone_key(body["phone"])
    answer = st.dedupe_answers.get(phone) or st.dedupe_default
    if answer is None:
        owners = [c for c in st.customers.values()
                  if any(phone_key(p.get("number")) == phone for p in c.get("phones", []))]
        answer = ({"status": "single", "finalCustomerId": str(owners[0]["id"])}
                  if len(owners) == 1 else {"status": "not_found", "finalCustomerId": None})
    return jsonify({**answer, "requestId": body.get("requestId"), "warnings": []})

