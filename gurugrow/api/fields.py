"""Request field classes: each kind of value a bot sends is checked and converted once.

Every field takes what BotMarketing sends (a string, or a JSON number where a number
makes sense), treats an empty value as absent, and refuses anything else with a
``ValidationError``; the schema answers the field's ``error_code`` (and, where the flow
answers that code with another status, the field's ``error_status``). No value a bot can
send reaches a flow unchecked, so none can end in ``internal_error``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from marshmallow import ValidationError, fields

from gurugrow.basics.identity import normalize_channel
from gurugrow.basics.phone import normalize_phone
from gurugrow.basics.request_scope import CODE_LENGTHS, OTP_LENGTH
from gurugrow.config import CHANNELS
from gurugrow.routes import ROUTES

DEFAULT_OTP_LENGTH = 6
# What people type into a phone number besides digits.
_PHONE_CHARS = frozenset("0123456789+-(). ")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_SIGNED_INTEGER = re.compile(r"[+-]?[0-9]+")
_SESSION_ID = re.compile(r"[0-9a-f]{16}\.[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(r"[A-Za-z0-9_.-]+")
# Separators a customer may type inside a code ("048 117", "048-117").
_CODE_SEPARATORS = str.maketrans("", "", " -")



@contextmanager
def request_settings(*, otp_length: int, code_lengths: tuple[int, ...] = ()
                     ) -> Iterator[None]:
    """Settings the fields need while one request is loaded (the code's length, and the
    other lengths the workflows' routes give codes: Settings.code_lengths)."""
    token = OTP_LENGTH.set(otp_length)
    lengths = CODE_LENGTHS.set(code_lengths)
    try:
        yield
    finally:
        OTP_LENGTH.reset(token)
        CODE_LENGTHS.reset(lengths)


def clean_text(value: Any, max_length: int) -> str | None:
    """A str (or an int) trimmed; None when empty. Refuses other types, text longer than
    ``max_length``, and characters that are not printable text (control characters,
    lone surrogates, line and paragraph separators), which could forge log lines or fail
    to encode in an upstream request."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError("Must be a string.")
    text = str(value).strip()
    if len(text) > max_length:
        raise ValidationError(f"Longer than {max_length} characters.")
    # str.isprintable is False for every category refused above (Cc, Cf, Cs, Zl, Zp...)
    # and True for the space: one pass in C, on every field of every request.
    if not text.isprintable():
        raise ValidationError("Only printable characters are allowed.")
    return text or None


class Text(fields.Field):
    """A short text value: str or int accepted, trimmed; empty means absent."""

    def __init__(self, *, max_length: int = 128, error_code: str = "invalid_request",
                 error_status: str = "error", **kwargs: Any) -> None:
        metadata = {"error_code": error_code, "error_status": error_status,
                    **kwargs.pop("metadata", {})}
        super().__init__(load_default=None, allow_none=True, metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = clean_text(value, self.max_length)
        return None if text is None else self.convert(text, value)

    def convert(self, text: str, raw: Any) -> Any:
        """The value of non-empty, printable ``text`` (``raw`` as sent); subclasses check."""
        return text


# Joins emoji into one picture (👩‍👩‍👧, 🏳️‍🌈): kept between two emoji, dropped elsewhere.
_ZWJ = "\u200d"
# Tag characters: the subdivision flags' spelling (🏴 + tags + cancel tag), kept after one.
_TAGS = range(0xE0020, 0xE0080)
# What may sit between an emoji and its joiner: variation selectors, skin tones.
_EMOJI_TRAIL = frozenset("\ufe0e\ufe0f") | {chr(c) for c in range(0x1F3FB, 0x1F400)}


def _is_emoji(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk") or ord(ch) in _TAGS


def _emoji_before(text: str, index: int) -> bool:
    i = index - 1
    while i >= 0 and (text[i] in _EMOJI_TRAIL or ord(text[i]) in _TAGS):
        i -= 1
    return i >= 0 and _is_emoji(text[i])


def normalize_free_text(text: str) -> str:
    """A name or other free text as a person reads it: NFC; tabs, line breaks, no-break
    and other spaces as one space; control characters, lone surrogates and format
    characters (direction marks, zero-width spaces, BOM) removed, except the joiners and
    tags inside an emoji sequence (variation selectors are marks, kept); trimmed. What is
    left has no character that could end or forge a log line."""
    text = unicodedata.normalize("NFC", text)
    kept = []
    for index, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch.isspace() or category in ("Zs", "Zl", "Zp"):
            kept.append(" ")
        elif category in ("Cc", "Cs"):
            continue
        elif category == "Cf":
            inside_emoji = _emoji_before(text, index) and (
                ord(ch) in _TAGS or (index + 1 < len(text) and _is_emoji(text[index + 1])))
            if inside_emoji and (ch == _ZWJ or ord(ch) in _TAGS):
                kept.append(ch)
        else:
            kept.append(ch)
    return " ".join(part for part in "".join(kept).split(" ") if part)


class FreeText(Text):
    """A name or other free text a messenger allows: any printable Unicode, normalised
    (``normalize_free_text``). Refused, with the field's own errorCode, only when it is
    empty after normalising (nothing readable was sent) or longer than ``max_length``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError("Must be a string.")
        raw = str(value)
        if not raw.strip():
            return None  # empty or blank: absent, as for every field
        text = normalize_free_text(raw)
        if not text:
            raise ValidationError("Nothing readable left after normalising.")
        if len(text) > self.max_length:
            raise ValidationError(f"Longer than {self.max_length} characters.")
        return text


class Channel(Text):
    """channelType: one of ``CHANNELS`` (any case), answered lower-cased."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=32, error_code="invalid_channel", **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        channel = normalize_channel(text)
        if channel is None:
            raise ValidationError(f"One of: {', '.join(CHANNELS)}.")
        return channel


class DeliveryRoute(Text):
    """deliveryRoute: a route of gurugrow/routes.py (any case), answered lower-cased."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=32, error_code="invalid_route", **kwargs)

    @property
    def enum(self) -> list[str]:
        """The routes a request may name (the OpenAPI document's enum)."""
        return list(ROUTES)

    def convert(self, text: str, raw: Any) -> str:
        route = text.lower()
        if route not in ROUTES:
            raise ValidationError(f"One of: {', '.join(ROUTES)}.")
        return route


class Phone(Text):
    """A phone as people type it (ASCII digits and ``+-(). ``, or a JSON number),
    answered as international digits (``79991234567``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=40, error_code="invalid_phone", **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        phone = normalize_phone(text) if set(text) <= _PHONE_CHARS else None
        if phone is None:
            raise ValidationError("Not a valid phone number.")
        return phone


class Limit(Text):
    """How many orders to show: a whole number (string or JSON number), clamped to
    ``low..high`` because bots send whatever a variable holds."""

    def __init__(self, *, low: int = 1, high: int = 5, **kwargs: Any) -> None:
        super().__init__(max_length=6, error_code="invalid_limit", **kwargs)
        self.low, self.high = low, high

    def convert(self, text: str, raw: Any) -> int:
        if not _SIGNED_INTEGER.fullmatch(text):
            raise ValidationError(f"Must be a whole number {self.low}..{self.high}.")
        return min(max(int(text), self.low), self.high)


class Code(Text):
    """The code the customer received, normalised to its digits or refused as invalid_code."""
    # The code the customer received: exactly ``OTP_LENGTH`` ASCII digits, or as many as the own
    # code of a route some workflow lists has (a flash call's, a voice call's: gurugrow/routes.py);
    # spaces and dashes inside are dropped. A JSON number lost its leading zeros on the way (48117
    # for 048117), so it is zero-padded to ``OTP_LENGTH``. Anything that cannot be a code of those
    # lengths is refused here, before any attempt is counted, and answered as a wrong code is
    # (``status: invalid_code``): a bot branching on ``status`` asks again either way. It costs no
    # attempt: it cannot be the code, so it tells a guesser nothing, and a typo must not lock the
    # customer out.

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=32, error_code="invalid_code", error_status="invalid_code",
                         **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        length = OTP_LENGTH.get() or DEFAULT_OTP_LENGTH
        digits = text.translate(_CODE_SEPARATORS)
        if isinstance(raw, int) and raw >= 0:
            digits = digits.zfill(length)
        lengths = CODE_LENGTHS.get() or (length,)
        if len(digits) not in lengths or not _ASCII_DIGITS.fullmatch(digits):
            raise ValidationError(f"Must be {' or '.join(map(str, lengths))} digits.")
        return digits


class InternalId(Text):
    """A RetailCRM internal id (customerId, sourceOrderId): ASCII digits only, so it
    can only ever name one entity in a CRM path."""

    def __init__(self, *, error_code: str, **kwargs: Any) -> None:
        super().__init__(max_length=20, error_code=error_code, **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        if not _ASCII_DIGITS.fullmatch(text):
            raise ValidationError("Must be a number.")
        return str(int(text))


class AccountId(Text):
    """A messenger account id (or another opaque id): printable text up to 128
    characters, kept as a string even when it looks like a number."""

    def __init__(self, *, error_code: str = "invalid_identity", **kwargs: Any) -> None:
        super().__init__(max_length=128, error_code=error_code, **kwargs)


class SessionId(Text):
    """A session id as /auth/start answers it: ``<16 hex>.<random>``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=96, error_code="session_not_found", **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        if not _SESSION_ID.fullmatch(text):
            raise ValidationError("Not a session id.")
        return text


class Slug(Text):
    """A code from a closed catalog (offerCode): letters, digits, ``_.-``."""

    def __init__(self, *, error_code: str, max_length: int = 64, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, error_code=error_code, **kwargs)

    def convert(self, text: str, raw: Any) -> str:
        if not _SLUG.fullmatch(text):
            raise ValidationError("Letters, digits and _.- only.")
        return text
