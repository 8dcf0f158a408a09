"""The sandbox's own routes beside the stand-ins: the outbox of codes "sent", call
counts, a reset back to the demo data, and a "manager" changing RetailCRM itself (so
`make run` shows the mirror picking changes up from the history)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gurugrow.sandbox.state import state

control = Blueprint("control", __name__)


@control.get("/outbox")
def outbox() -> ResponseReturnValue:
    """The codes the stand-ins "sent", newest first."""
    return jsonify({"messages": list(state().outbox)})


@control.get("/stats")
def stats() -> ResponseReturnValue:
    """Requests each stand-in served so far, and RetailCRM calls refused over its rate
    limit (README: watch the quota in the sandbox; the benchmark counts calls with it)."""
    st = state()
    return jsonify({"retailcrm": len(st.calls), "greensms": st.messages_sent,
                    "deduper": len(st.dedupe_calls),
                    "retailcrm_over_rate_limit": st.refused_over_rate})


@control.post("/incoming-call")
def incoming_call() -> ResponseReturnValue:
    """The customer of ``phone`` (digits) calls the number GreenSMS gave them: the
    stand-in's ``call/status`` reports that call from now on."""
    message = state().mark_called(request.values.get("phone", "").lstrip("+"))
    if message is None:
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    return jsonify({"status": "called", "number": message["number"]})


@control.post("/reset")
def reset() -> ResponseReturnValue:
    """Back to the demo data (the app also clears its Redis keys first: mount.py)."""
    state().reset()
    return jsonify({"status": "reset"})



@control.post("/manager/order-status")
def manager_order_status() -> ResponseReturnValue:
    """Move order ``orderId`` to ``status``, as a manager in RetailCRM would."""
    st, order_id = state(), request.values.get("orderId", "")
    if order_id not in st.orders or not request.values.get("status"):
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    st.manager_set_order_status(order_id, request.values["status"])
    return jsonify({"status": "changed"})


@control.post("/manager/customer-field")
def manager_customer_field() -> ResponseReturnValue:
    """Set custom field ``code`` of customer ``customerId`` to ``value`` (empty: clear),
    as a manager in RetailCRM would."""
    st, customer_id = state(), request.values.get("customerId", "")
    if customer_id not in st.customers or not request.values.get("code"):
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    st.manager_edit_customer(customer_id, **{request.values["code"]:
                                             request.values.get("value", "")})
    return jsonify({"status": "changed"})
