"""Recommended-set orders: /orders/recommended/{preview,create,start,check}."""

from __future__ import annotations

from flask import Blueprint

from gurugrow import schemas as s
from gurugrow.api.contract import endpoint
from gurugrow.flows import recommended

bp = Blueprint("recommended", __name__, url_prefix="/orders/recommended")

bp.post("/preview")(endpoint(s.RecommendedPreviewBody, s.RecommendedPreviewResponse)(
    recommended.preview))
bp.post("/create")(endpoint(s.RecommendedCreateBody, s.RecommendedCreateResponse)(
    recommended.create))
bp.post("/start")(endpoint(s.RecommendedStartBody, s.AuthStartResponse)(recommended.start))
bp.post("/check")(endpoint(s.RecommendedCheckBody, s.RecommendedCheckResponse)(
    recommended.check))
