"""One log line per event, ``key=value`` pairs, each carrying the request id.

Callers pass only safe values: masked phones, never a code, key or token.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

logger = logging.getLogger("gurugrow")


def configure_logging(level: str) -> None:
    """Send gurugrow's lines to stderr in one format (idempotent)."""
    if not any(getattr(h, "_gurugrow", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler._gurugrow = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def begin_request(incoming: str | None) -> str:
    """Adopt the caller's X-Request-ID if it is sane, else make one; return it."""
    request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id


def current_request_id() -> str:
    return _request_id.get()


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``event`` with ``fields`` as one line: ``event k=v ... request_id=...``."""
    if not logger.isEnabledFor(level):
        return
    parts = [event] + [f"{k}={_format(v)}" for k, v in fields.items()]
    parts.append(f"request_id={_request_id.get()}")
    logger.log(level, " ".join(parts))


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
# Characters a bare value may hold: printable, and none that delimits or quotes a field.
_NEEDS_QUOTES = frozenset(' "\\=')


def _format(value: object) -> str:
    """A value as one token: bare when plainly printable, else quoted with every quote,
    backslash and non-printable character (CR, LF, tab, other controls, line
    separators) escaped, so no value can break or forge a line, whatever it contains."""
    text = "-" if value is None else str(value)
    if text and text.isprintable() and not _NEEDS_QUOTES.intersection(text):
        return text
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def _escape(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if ch == " " or ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
