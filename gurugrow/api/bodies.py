"""Request bodies read safely: a size limit that holds for chunked bodies too, and JSON
bodies that must be one shallow object."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, request

# Bot bodies are flat objects; nesting beyond this is not a request of the contract (and
# json.loads would recurse on it until the interpreter gives up).
MAX_JSON_DEPTH = 8
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


class BodyNotAnObject(ValueError):
    """The JSON body is malformed, nested too deeply, or not an object."""


def install_body_limit(app: Flask) -> None:
    """Read a body without Content-Length (chunked) before anything parses it.

    gunicorn passes chunked bodies with ``wsgi.input_terminated``, which werkzeug caps at
    ``MAX_CONTENT_LENGTH`` only when the body is read in full: the form parser would stop
    at the cap and silently parse what it had. Reading it here raises the 413 instead,
    answered as JSON like any other; the cached bytes are what the parsers then see.
    """

    @app.before_request
    def _read_unsized_body() -> None:
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            request.get_data(cache=True)


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when brackets in ``raw`` (outside strings) nest deeper than ``limit``."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSE:
            depth -= 1
    return False


def json_object() -> dict[str, Any]:
    """The request's JSON body as a dict; raises ``BodyNotAnObject`` otherwise."""
    raw = request.get_data(cache=True)
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise BodyNotAnObject(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw)  # bytes: UTF-8, -16 or -32, detected as RFC 8259 says
    except ValueError as e:  # not JSON, or not text
        raise BodyNotAnObject("not JSON") from e
    if not isinstance(body, dict):
        raise BodyNotAnObject("JSON body is not an object")
    return body
