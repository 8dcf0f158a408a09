"""The stand-ins of RetailCRM v5, GreenSMS and the deduper, served over real HTTP as one
WSGI app: one module per upstream (retailcrm.py, greensms.py, deduper.py), the sandbox's
own routes (control.py), and one ``SandboxState`` (state.py) that tests reach to inject
failures and inspect calls. They answer as the real services do, quirks included
(each stand-in's docstring lists them). Benchmark-only routes live in bench/standins.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider

from gurugrow.logs import begin_request
from gurugrow.sandbox.control import control
from gurugrow.sandbox.deduper import dedupe
from gurugrow.sandbox.greensms import sms
from gurugrow.sandbox.retailcrm import crm
from gurugrow.sandbox.state import SandboxState

__all__ = ["SandboxState", "create_standins_app"]


def create_standins_app(data: dict[str, Any] | None = None, *, rate_limit_per_second: int = 10,
                        clock: Callable[[], float] = time.monotonic,
                        on_message: Callable[[dict[str, Any]], None] | None = None) -> Flask:
    """The three stand-ins and the sandbox control routes, as one WSGI app."""
    app = Flask(__name__)
    app.json = json_provider = DefaultJSONProvider(app)
    json_provider.ensure_ascii = False  # Russian names as they are, like RetailCRM
    app.extensions["sandbox_state"] = SandboxState(
        data, rate_limit_per_second=rate_limit_per_second, clock=clock, on_message=on_message)
    for blueprint in (crm, sms, dedupe, control):
        app.register_blueprint(blueprint)

    @app.before_request
    def _adopt_request_id() -> None:
        begin_request(request.headers.get("X-Request-ID"))

    @app.errorhandler(404)
    def not_found(_error):
        return jsonify({"status": "error", "errorCode": "not_found"}), 404

    @app.errorhandler(405)
    def method_not_allowed(error):
        # JSON like every other answer here (werkzeug's default is an HTML page).
        response = jsonify({"status": "error", "errorCode": "method_not_allowed"})
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
        return response, 405

    return app
