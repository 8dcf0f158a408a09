"""Phone normalisation (to the digits RetailCRM and GreenSMS use) and masking."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "RU"


@lru_cache(maxsize=4096)  # parsing is the costliest step of a request's validation
def normalize_phone(raw: str | None) -> str | None:
    """Return the phone as international digits (``79991234567``), or None if invalid.

    Accepts what people type: spaces, dashes, brackets, a leading ``+``, and the Russian
    trunk prefix ``8``.
    """
    if not raw:
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not 10 <= len(digits) <= 15 or len(text) > 40:
        return None
    # "8 999 ..." is the Russian trunk prefix, not a country code.
    if not text.startswith("+") and len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    candidate = "+" + digits if len(digits) > 10 else digits
    try:
        parsed = phonenumbers.parse(candidate, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return f"{parsed.country_code}{parsed.national_number}"


@lru_cache(maxsize=4096)
def mask_phone(phone: str | None) -> str | None:
    """Mask normalised digits for answers and logs: ``79991234567`` → ``+7******4567``."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 8:
        return "*" * len(digits)
    try:
        country = str(phonenumbers.parse("+" + digits).country_code)
    except phonenumbers.NumberParseException:
        country = digits[0]
    return f"+{country}{'*' * (len(digits) - len(country) - 4)}{digits[-4:]}"


@lru_cache(maxsize=4096)
def phone_region(phone: str) -> str | None:
    """ISO region of normalised digits (``RU``, ``KZ``...), or None."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + phone))
    except phonenumbers.NumberParseException:
        return None
