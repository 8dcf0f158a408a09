"""Serves the stand-ins under /sandbox inside the app (sandbox mode only)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gurugrow.logs import log_event
from gurugrow.phone import mask_phone
from gurugrow.sandbox.standins import create_standins_app


def _log_message(message: dict[str, Any]) -> None:
    # Sandbox only: showing the code is the point; the phone stays masked.
    log_event("sandbox_code", route=message["route"], to=mask_phone(message["to"]),
              code=message["code"])


def mount_sandbox(app: Flask, ignored: list[str] | None = None) -> Flask:
    """Mount the stand-ins at /sandbox (outbox at /sandbox/outbox, reset at /sandbox/reset).

    ``ignored``: the upstream variables the environment set and the sandbox overrode.
    """
    standins = create_standins_app(on_message=_log_message)
    app.extensions["sandbox"] = standins
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/sandbox": standins})
    log_event("sandbox_enabled", upstreams="/sandbox/retailcrm,/sandbox/greensms,/sandbox/deduper")
    if ignored:  # names only: the values may be real keys
        log_event("sandbox_ignores_upstream_settings", logging.WARNING,
                  variables=",".join(ignored), note="the sandbox always uses its stand-ins")
    return app
