"""The stand-ins as the benchmark (and the tests that measure like it) run them: on their
own server, with a fixed latency and routes that seed many customers and orders at once.
None of this ships in the gurugrow package.

    gunicorn ... "bench.standins:standins_from_env()"
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from gurugrow.sandbox.standins import create_standins_app
from gurugrow.sandbox.state import state

seeding = Blueprint("seeding", __name__)


@seeding.post("/seed-orders")
def seed_orders() -> ResponseReturnValue:
    """Copies of one order (``from``) for one customer, ``count`` times: distinct orders to
    repeat in the benchmark. Answers the new ids."""
    st = state()
    template = st.orders.get(request.args.get("from", ""))
    if template is None:
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    ids = []
    with st.lock:
        for _ in range(min(int(request.args.get("count", "1")), 10000)):
            oid = st.new_id()
            st.orders[str(oid)] = {**template, "id": oid, "number": f"S{oid}"}
            ids.append(oid)
    return jsonify({"ids": ids})


@seeding.post("/seed-customers")
def seed_customers() -> ResponseReturnValue:
    """``count`` customers, each bound to its own Telegram account and owning ``orders``
    (default 1) copies of order ``from``: a broadcast's audience for the benchmark.
    Answers the account ids."""
    st = state()
    template = st.orders.get(request.args.get("from", ""))
    if template is None:
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    field = request.args.get("field", "bot_telegram_account_id")
    bound = request.args.get("bound", "1") != "0"  # 0: customers no messenger holds
    accounts = []
    with st.lock:
        for _ in range(min(int(request.args.get("count", "1")), 10000)):
            cid = st.new_id()
            account = f"seeded-{cid}"
            st.customers[str(cid)] = {
                "id": cid, "firstName": "Подписчик", "phones": [{"number": f"+7999{cid:07d}"}],
                "customFields": {field: account, "chatbot_interacted": "true"} if bound
                else []}
            for _ in range(min(int(request.args.get("orders", "1")), 100)):
                oid = st.new_id()
                st.orders[str(oid)] = {**template, "id": oid, "number": f"S{oid}",
                                       "customer": {"id": cid, "type": "customer"}}
            if bound:
                accounts.append(account)
    return jsonify({"accounts": accounts})


def bench_standins_app(*, rate_limit_per_second: int = 0, latency_seconds: float = 0.0
                       ) -> Flask:
    """The sandbox stand-ins plus the seeding routes; every answer waits
    ``latency_seconds`` first (an upstream's own time), before the rate limit counts it."""
    app = create_standins_app(rate_limit_per_second=rate_limit_per_second)
    app.register_blueprint(seeding)
    if latency_seconds:
        @app.before_request
        def _upstream_latency() -> None:
            time.sleep(latency_seconds)
    return app


def standins_from_env() -> Flask:
    """``bench_standins_app`` for its own server process: SANDBOX_LATENCY_MS (default 0)
    delays every answer, SANDBOX_RATE_LIMIT (default 0: off) caps calls per second."""
    return bench_standins_app(
        rate_limit_per_second=int(os.environ.get("SANDBOX_RATE_LIMIT", "0")),
        latency_seconds=float(os.environ.get("SANDBOX_LATENCY_MS", "0")) / 1000)
