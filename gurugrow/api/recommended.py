"""Recommended-set orders: /orders/recommended/{preview,create,start,check,resend}."""

from __future__ import annotations

from flask import Blueprint

from gurugrow.api import schemas as s
from gurugrow.api.contract import (
    BINDING_REFUSALS,
    CHECK_REFUSALS,
    ORDER_REFUSALS,
    RESEND_REFUSALS,
    SEND_REFUSALS,
    endpoint,
)
from gurugrow.api.pacing import answer_no_earlier
from gurugrow.flows import recommended
from gurugrow.governor import JOURNEY

bp = Blueprint("recommended", __name__, url_prefix="/orders/recommended")

bp.post("/preview")(endpoint(
    s.RecommendedPreviewBody, s.RecommendedPreviewResponse,
    statuses=("ok", "not_authorized", "conflict"),
    error_codes=("unknown_offer", *BINDING_REFUSALS))(recommended.preview))
bp.post("/create")(endpoint(
    s.RecommendedCreateBody, s.RecommendedCreateResponse,
    statuses=("created", "not_authorized", "conflict"),
    error_codes=(*ORDER_REFUSALS, *BINDING_REFUSALS), crm_priority=JOURNEY)(recommended.create))
bp.post("/start")(answer_no_earlier(endpoint(
    s.RecommendedStartBody, s.AuthStartResponse, statuses=("sent",),
    error_codes=("unknown_offer", "bundle_unavailable", *SEND_REFUSALS))(recommended.start)))
bp.post("/check")(endpoint(
    s.RecommendedCheckBody, s.RecommendedCheckResponse,
    statuses=("created", "invalid_code", "expired", "too_many_attempts", "conflict",
              "pending"),
    error_codes=(*CHECK_REFUSALS, *ORDER_REFUSALS), crm_priority=JOURNEY)(recommended.check))
bp.post("/resend")(answer_no_earlier(endpoint(
    s.RecommendedResendBody, s.AuthResendResponse, statuses=("sent",),
    error_codes=RESEND_REFUSALS, crm_priority=JOURNEY, crm_bound=False)(recommended.resend)))
