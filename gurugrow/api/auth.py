"""The /auth/* endpoints."""

from __future__ import annotations

from flask import Blueprint

from gurugrow import schemas
from gurugrow.api.contract import endpoint
from gurugrow.flows import auth

bp = Blueprint("auth", __name__, url_prefix="/auth")

bp.get("/status")(endpoint(schemas.AuthStatusQuery, schemas.AuthStatusResponse)(auth.status))
bp.post("/start")(endpoint(schemas.AuthStartBody, schemas.AuthStartResponse)(auth.start))
bp.post("/check")(endpoint(schemas.AuthCheckBody, schemas.AuthCheckResponse)(auth.check))
bp.post("/resend")(endpoint(schemas.AuthResendBody, schemas.AuthResendResponse)(auth.resend))
bp.post("/unlink")(endpoint(schemas.AuthUnlinkBody, schemas.AuthUnlinkResponse)(auth.unlink))
