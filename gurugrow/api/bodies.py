"""Request bodies read safely: a size limit that holds for chunked bodies too, JSON
bodies that must be one shallow object, and a body that must be what its Content-Type
says (form or JSON)."""

from __future__ import annotations

import io
import json
from typing import Any

from flask import Flask, abort, request

from gurugrow.basics.errors import BodyNotAnObject, UnreadableBody

# Bot bodies are flat objects; nesting beyond this is not a request of the contract (and
# json.loads would recurse on it until the interpreter gives up).
MAX_JSON_DEPTH = 8
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


# The two bodies the contract accepts (multipart form data is read as form too).
FORM_TYPE, JSON_TYPE = "application/x-www-form-urlencoded", "application/json"
MULTIPART_TYPE = "multipart/form-data"


def body_values() -> dict[str, Any]:
    """The POST body's fields, read as its Content-Type says; ``UnreadableBody`` when it
    is not what the type says (JSON labelled as form, text/plain, no type at all, broken
    JSON). An empty body, whatever its type, has no fields."""
    raw = request.get_data(cache=True)  # werkzeug parses the form from this cached copy
    if not raw.strip():
        return {}
    if request.is_json:
        try:
            return json_object()
        except BodyNotAnObject as e:
            raise UnreadableBody(str(e)) from e
    if request.mimetype == FORM_TYPE and _reads_as_form(raw):
        return request.form.to_dict(flat=True)
    if request.mimetype == MULTIPART_TYPE and (request.form or request.files):
        return request.form.to_dict(flat=True)
    raise UnreadableBody(f"a body that is not {request.mimetype or 'typed'}")


def _reads_as_form(raw: bytes) -> bool:
    """A form-urlencoded body has ``name=value`` pairs. One that opens like JSON (``{`` or
    ``[``) is JSON labelled as form; one with no ``=`` at all is text labelled as form."""
    text = raw.lstrip()
    return not text.startswith((b"{", b"[")) and b"=" in text


def install_body_limit(app: Flask) -> None:
    """Read a chunked body in full, up to the limit, before anything parses it."""
    # gunicorn passes chunked bodies with ``wsgi.input_terminated``; werkzeug then stops reading at
    # ``MAX_CONTENT_LENGTH`` and the parsers silently take what it read. Here one byte past the
    # limit is a 413 (answered as JSON like any other), and a body within it is handed on as an
    # ordinary sized one.

    @app.before_request
    def _read_unsized_body() -> None:
        environ = request.environ
        if request.content_length is not None or not environ.get("wsgi.input_terminated"):
            return
        limit = app.config["MAX_CONTENT_LENGTH"]
        body = _read_at_most(environ["wsgi.input"], limit + 1)
        if len(body) > limit:
            abort(413)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)


def _read_at_most(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when brackets in ``raw`` (outside strings) nest deeper than ``limit``."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # a bot's flat body: no scan needed
        return False
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
