"""GreenSMS: sends a code by Telegram, VK or SMS. Never retried: every send is paid."""

from __future__ import annotations

import logging
from typing import Any

import requests

from gurugrow.gateways.errors import UpstreamRejected, UpstreamUnavailable
from gurugrow.gateways.http import HttpClient
from gurugrow.logs import log_event

GATEWAY = "greensms"
ROUTES = ("telegram", "vk", "sms")
# Lifetime asked for a token made from user/pass just to read the balance.
TOKEN_EXPIRE_SECONDS = 300

# GreenSMS's status answer (docs/INTEGRATIONS.md, "GreenSMS status"): ``GET /<route>/status``
# answers ``{"time", "status", "status_code", ...}`` (node SDK typings, PR #9 and #12). The
# code is read first, the word second; anything else, and every error answer ("Message not
# found" included), is ``unknown`` -- never ``failed``, never a reason to skip a cooldown.
#
# Codes: the pairing of code and word is an inference (listing order and the SMSC
# delivery-report bits), no source pairs them: 0 not ready, 1 delivered, 2 failed, 3 read,
# 4 buffered, 8 accepted by the operator, 16 rejected, 34 expired.
DELIVERY_CODES = {0: "pending", 1: "delivered", 2: "failed", 3: "delivered", 4: "pending",
                  8: "pending", 16: "failed", 34: "failed"}
# Words, lower-cased: the documented sms words, ``Message read`` (vk, viber, whatsapp), and
# Telegram Gateway's own words (GreenSMS's telegram words are documented nowhere).
DELIVERY_STATUSES = {
    "status not ready": "pending", "delivery success": "delivered",
    "delivery failure": "failed", "message buffered": "pending",
    "delivery accepted": "pending", "delivery rejected": "failed",
    "status request expired": "failed", "message read": "delivered",
    # Telegram Gateway (core.telegram.org/gateway/api#deliverystatus)
    "sent": "pending", "delivered": "delivered", "read": "delivered", "expired": "failed",
    "revoked": "failed",
}


class GreenSmsGateway:
    """GreenSMS over one Session; credentials go in a header or the body, never the URL."""

    def __init__(self, base_url: str, *, token: str = "", user: str = "", password: str = "",
                 sms_from: str = "", vk_from: str = "", telegram_ttl: int | None = None,
                 timeout: float = 10, connect_timeout: float = 3,
                 session: requests.Session | None = None) -> None:
        self._http = HttpClient(GATEWAY, base_url, timeout=timeout,
                                connect_timeout=connect_timeout, session=session)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._credentials = {} if token else {"user": user, "pass": password}
        self._sms_from = sms_from
        self._vk_from = vk_from
        self._telegram_ttl = telegram_ttl

    def send_code(self, route: str, phone: str, code: str, sms_text: str) -> str:
        """Send ``code`` to ``phone`` (digits) by ``route``; return GreenSMS's request_id.

        Telegram gets the code alone (the gateway renders the message); VK and SMS get
        ``sms_text``. An ``error`` in the body is a refusal whatever the HTTP status.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        form: dict[str, Any] = {"to": phone, **self._credentials}
        if route == "telegram":
            form["txt"] = code
            if self._telegram_ttl:
                form["ttl"] = self._telegram_ttl
        else:
            form["txt"] = sms_text
            sender = self._vk_from if route == "vk" else self._sms_from
            if sender:
                form["from"] = sender
        status, body = self._http.request("POST", f"/{route}/send", data=form,
                                          headers=self._headers)
        return _answer_field(route, status, body, "request_id")

    def delivery_status(self, route: str, request_id: str) -> str:
        """``delivered``, ``pending``, ``failed`` or ``unknown`` for one earlier send.

        ``GET /<route>/status`` with ``id`` and ``extended``; the answer's shape is
        read code first, word second (``DELIVERY_CODES``, ``DELIVERY_STATUSES``). A refusal raises
        ``UpstreamRejected``, an unreachable GreenSMS ``UpstreamUnavailable``.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        headers = self._headers or {"Authorization": f"Bearer {self._account_token()}"}
        status, body = self._http.request("GET", f"/{route}/status",
                                          params=[("id", request_id), ("extended", "true")],
                                          headers=headers)
        _answer_field(f"{route}/status", status, body, "status")
        mapped = delivery_status_of(body)
        if mapped == "unknown":  # a word or code to add to the tables, once understood
            log_event("greensms_status_unmapped", logging.WARNING, route=route,
                      raw_status=str(body.get("status"))[:40],
                      raw_code=str(body.get("status_code"))[:10])
        return mapped

    def account_balance(self) -> str:
        """The account balance (``GET /account/balance``): proves the credentials work.

        With a token it travels as the Bearer header, as for sends. With user/pass they go
        in the body of ``POST /account/token`` (never a URL), and the short-lived token it
        answers reads the balance. A refusal raises ``UpstreamRejected`` whose
        ``status_code`` is the HTTP status and ``errors`` GreenSMS's ``{error, code}``.
        """
        headers = self._headers or {"Authorization": f"Bearer {self._account_token()}"}
        status, body = self._http.request("GET", "/account/balance", headers=headers)
        return _answer_field("account/balance", status, body, "balance")

    def _account_token(self) -> str:
        form = {**self._credentials, "expire": TOKEN_EXPIRE_SECONDS}
        status, body = self._http.request("POST", "/account/token", data=form)
        return _answer_field("account/token", status, body, "access_token")


def delivery_status_of(answer: dict[str, Any]) -> str:
    """delivered | pending | failed | unknown for one GreenSMS status answer: its
    ``status_code`` when it is a known code, else its ``status`` word."""
    code = answer.get("status_code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and code in DELIVERY_CODES:
        return DELIVERY_CODES[code]
    word = answer.get("status")
    if not isinstance(word, str):
        return "unknown"
    return DELIVERY_STATUSES.get(" ".join(word.split()).lower(), "unknown")


def _answer_field(what: str, status: int, body: Any, key: str) -> str:
    """``body[key]`` of a GreenSMS answer. An ``error`` in the body is a refusal whatever
    the HTTP status (``errors`` carries GreenSMS's ``{error, code}``); so is 401/403."""
    if isinstance(body, dict) and "error" in body:
        raise UpstreamRejected(GATEWAY, f"{what}: {body['error']}", status,
                               {"error": body.get("error"), "code": body.get("code")})
    if status in (401, 403):
        raise UpstreamRejected(GATEWAY, f"{what}: HTTP {status}", status)
    if not isinstance(body, dict) or body.get(key) in (None, "") or status >= 400:
        raise UpstreamUnavailable(GATEWAY, f"{what}: HTTP {status} without {key}", status)
    return str(body[key])
