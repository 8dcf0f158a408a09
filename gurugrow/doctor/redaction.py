"""What a doctor line may show: URLs without credentials, and no configured secret."""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit, urlunsplit

from gurugrow.config import Settings


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment (what a line may show)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    netloc = f"{host}:{port}" if port else host
    if parts.username or parts.password:
        netloc = f"***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Redactor:
    """Replaces every configured secret in a line (a defence against an upstream that
    echoes what it was sent)."""

    def __init__(self, settings: Settings) -> None:
        values = [getattr(settings, f.name) for f in fields(Settings) if f.metadata["secret"]]
        values += [v for many in values if isinstance(many, tuple) for v in many]
        self._secrets = sorted({v for v in values if isinstance(v, str) and len(v) >= 4},
                               key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "***")
        return text
