"""Answers outside the contract (unknown path, wrong method, body too large) as JSON."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError

from gurugrow import texts
from gurugrow.logs import log_event

_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          413: "body_too_large"}


def register_error_handlers(app: Flask) -> None:
    """Every HTTP error the app raises becomes ``{"status": "error", "errorCode": ...}``."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        code = error.code or 500
        error_code = _CODES.get(code, "http_error")
        message = texts.ERROR_MESSAGES.get(error_code, texts.ERROR_MESSAGES["bad_request"])
        body = {"status": "error", "errorCode": error_code, "message": message}
        return jsonify(body), code

    @app.errorhandler(Exception)
    def unhandled(error: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error")
        log_event("internal_error", logging.ERROR, error=type(error).__name__)
        body = {"status": "error", "errorCode": "internal_error",
                "message": InternalServerError.description}
        return jsonify(body), 500

    answer_options_with_allow(app)


def answer_options_with_allow(app: Flask) -> None:
    """``OPTIONS`` on a route answers 204 with ``Allow`` (the methods it takes) and no
    body, instead of Flask's empty ``text/html`` 200."""
    default = app.make_default_options_response

    def options_response() -> Response:
        response = default()
        response.status_code = 204
        response.set_data(b"")
        response.headers.pop("Content-Type", None)
        response.headers.pop("Content-Length", None)
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]
