"""The sandbox's own routes beside the stand-ins: the outbox of codes "sent", call
counts, and a reset back to the demo data."""

from __future__ import annotations

from flask import Blueprint, jsonify
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


@control.post("/reset")
def reset() -> ResponseReturnValue:
    """Back to the demo data (the app also clears its Redis keys first: mount.py)."""
    state().reset()
    return jsonify({"status": "reset"})

