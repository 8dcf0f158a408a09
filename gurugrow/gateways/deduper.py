"""The shop's deduper (optional): picks one customer among several sharing a phone.

Without one (``DEDUPE_BASE_URL`` empty) ``configured`` is false and the flows answer such
a phone as unresolved, never calling it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import requests

from gurugrow.basics.errors import UpstreamRejected, UpstreamUnavailable
from gurugrow.gateways.http import HttpClient

GATEWAY = "deduper"
USABLE_STATUSES = frozenset({"single", "resolved", "resolved_with_fallback_primary"})
# A phone no customer can have (all zeros after the country code): the probe's subject.
PROBE_PHONE = "70000000000"


@dataclass(frozen=True)
class DedupeResult:
    """The deduper's verdict."""

    status: str
    final_customer_id: str | None
    request_id: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.status in USABLE_STATUSES and bool(self.final_customer_id)


class DeduperGateway:
    """``POST /api/dedupe/auto-resolve`` with ``X-API-Key``; never retried."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10,
                 connect_timeout: float = 3, session: requests.Session | None = None) -> None:
        self._http = HttpClient(GATEWAY, base_url, timeout=timeout,
                                connect_timeout=connect_timeout, session=session)
        self._headers = {"X-API-Key": api_key}
        self._configured = bool(base_url)

    @property
    def configured(self) -> bool:
        """True when a deduper is set (DEDUPE_BASE_URL)."""
        return self._configured

    def auto_resolve(self, phone: str, site: str, request_id: str) -> DedupeResult:
        """Ask which customer of ``phone`` is the one; raise on any failure."""
        body = self._auto_resolve(phone, site, request_id)
        final = body.get("finalCustomerId")
        return DedupeResult(status=str(body.get("status") or ""),
                            final_customer_id=str(final) if final not in (None, "") else None,
                            request_id=body.get("requestId"),
                            warnings=list(body.get("warnings") or []))

    def probe(self, site: str) -> str:
        """Does the deduper answer? The ``status`` of an auto-resolve of ``PROBE_PHONE``."""
        # ``PROBE_PHONE``: no customer can have it, so nothing is resolved or merged.
        # Raises ``UpstreamRejected`` on 4xx (401/403: the key) or a JSON answer that is no
        # object, ``UpstreamUnavailable`` otherwise.
        body = self._auto_resolve(PROBE_PHONE, site, str(uuid.uuid4()))
        # Any JSON answer carrying ``status`` counts (whatever its value).
        if "status" not in body:
            raise UpstreamUnavailable(GATEWAY, "answer has no status field")
        return str(body["status"])

    def _auto_resolve(self, phone: str, site: str, request_id: str) -> dict:
        if not self._configured:
            raise UpstreamUnavailable(GATEWAY, "DEDUPE_BASE_URL is not set")
        payload = {"phone": phone, "site": site, "requestSource": "auth-backend",
                   "requestId": request_id, "waitForConfirmation": False}
        status, body = self._http.request("POST", "/api/dedupe/auto-resolve", json=payload,
                                          headers=self._headers)
        if status >= 500:
            raise UpstreamUnavailable(GATEWAY, f"HTTP {status}", status)
        if status >= 400 or not isinstance(body, dict):
            raise UpstreamRejected(GATEWAY, f"HTTP {status}", status)
        return body
