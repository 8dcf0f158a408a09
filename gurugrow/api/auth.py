"""The /auth/* endpoints."""

from __future__ import annotations

from flask import Blueprint

from gurugrow.api import schemas as s
from gurugrow.api.contract import (
    BINDING_REFUSALS,
    CHECK_REFUSALS,
    CONTACT_REFUSALS,
    RESEND_REFUSALS,
    SEND_REFUSALS,
    endpoint,
)
from gurugrow.api.pacing import answer_no_earlier
from gurugrow.flows import auth
from gurugrow.governor import JOURNEY

bp = Blueprint("auth", __name__, url_prefix="/auth")

bp.get("/status")(endpoint(
    s.AuthStatusQuery, s.AuthStatusResponse,
    statuses=("authorized", "not_authorized", "conflict"),
    error_codes=BINDING_REFUSALS)(auth.status))
# A start's phone lookup goes with the journey: it is asked for only after the send
# limits admitted the start, so a flood of starts cannot use the priority past them.
bp.post("/start")(answer_no_earlier(endpoint(
    s.AuthStartBody, s.AuthStartResponse, statuses=("sent",),
    error_codes=SEND_REFUSALS, crm_priority=JOURNEY)(auth.start)))
bp.post("/check")(endpoint(
    s.AuthCheckBody, s.AuthCheckResponse,
    statuses=("authorized", "invalid_code", "expired", "too_many_attempts", "conflict",
              "pending"),
    error_codes=CHECK_REFUSALS, crm_priority=JOURNEY)(auth.check))
bp.post("/contact")(endpoint(
    s.AuthContactBody, s.AuthCheckResponse,
    statuses=("authorized", "not_found", "conflict"),
    error_codes=CONTACT_REFUSALS, crm_priority=JOURNEY)(auth.contact))
bp.post("/resend")(answer_no_earlier(endpoint(
    s.AuthResendBody, s.AuthResendResponse, statuses=("sent",),
    error_codes=RESEND_REFUSALS, crm_priority=JOURNEY, crm_bound=False)(auth.resend)))
bp.post("/unlink")(endpoint(
    s.AuthUnlinkBody, s.AuthUnlinkResponse,
    statuses=("unlinked", "not_authorized", "conflict"),
    error_codes=BINDING_REFUSALS)(auth.unlink))
