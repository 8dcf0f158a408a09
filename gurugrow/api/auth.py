"""The /auth/* endpoints."""

from __future__ import annotations

from flask import Blueprint

from gurugrow import schemas as s
from gurugrow.api.contract import endpoint
from gurugrow.api.pacing import answer_no_earlier
from gurugrow.flows import auth
from gurugrow.gateways.quota import JOURNEY

bp = Blueprint("auth", __name__, url_prefix="/auth")

# The refusals every code-sending endpoint can give before any code goes out.
SEND_REFUSALS = ("phone_country_not_allowed", "resend_too_early", "rate_limited",
                 "send_budget_exhausted", "dedupe_failed", "delivery_failed")
# A messenger account bound to no customer, to several, or to another than customerId.
BINDING_REFUSALS = ("not_authorized", "conflict", "customer_mismatch")
# in_progress: a replay of a code whose first check still runs after waiting for it.
CHECK_REFUSALS = ("invalid_code", "expired", "too_many_attempts", "session_not_found",
                  "conflict", "in_progress")
# A resend: the session's own send cap and state, then every send limit.
RESEND_REFUSALS = ("session_not_found", "too_many_attempts", *SEND_REFUSALS)

bp.get("/status")(endpoint(
    s.AuthStatusQuery, s.AuthStatusResponse,
    statuses=("authorized", "not_authorized", "conflict"),
    error_codes=BINDING_REFUSALS)(auth.status))
bp.post("/start")(answer_no_earlier(endpoint(
    s.AuthStartBody, s.AuthStartResponse, statuses=("sent",),
    error_codes=SEND_REFUSALS)(auth.start)))
bp.post("/check")(endpoint(
    s.AuthCheckBody, s.AuthCheckResponse,
    statuses=("authorized", "invalid_code", "expired", "too_many_attempts", "conflict"),
    error_codes=CHECK_REFUSALS, crm_priority=JOURNEY)(auth.check))
bp.post("/resend")(answer_no_earlier(endpoint(
    s.AuthResendBody, s.AuthResendResponse, statuses=("sent",),
    error_codes=RESEND_REFUSALS, crm_priority=JOURNEY, crm_bound=False)(auth.resend)))
bp.post("/unlink")(endpoint(
    s.AuthUnlinkBody, s.AuthUnlinkResponse,
    statuses=("unlinked", "not_authorized", "conflict"),
    error_codes=BINDING_REFUSALS)(auth.unlink))
