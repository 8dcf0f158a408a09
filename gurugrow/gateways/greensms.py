"""GreenSMS: sends a code by Telegram, VK or SMS. Never retried: every send is paid."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from gurugrow.basics.errors import (
    SendOutcomeUnknown,
    UpstreamConnectionDropped,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gurugrow.gateways.http import HttpClient
from gurugrow.logs import log_event

GATEWAY = "greensms"
ROUTES = ("telegram", "vk", "sms")
# Lifetime asked for a token made from user/pass (status reads, the balance); it is
# kept until TOKEN_RENEW_MARGIN_SECONDS before it runs out.
TOKEN_EXPIRE_SECONDS = 300
TOKEN_RENEW_MARGIN_SECONDS = 30

# GreenSMS's status answer (docs/INTEGRATIONS.md, "GreenSMS"): ``GET /<route>/status``
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
    """GreenSMS over one Session; credentials go in a header or the JSON body, never the
    URL."""

    def __init__(self, base_url: str, *, token: str = "", user: str = "", password: str = "",
                 sms_from: str = "", vk_from: str = "", telegram_ttl: int | None = None,
                 timeout: float = 10, connect_timeout: float = 3,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = HttpClient(GATEWAY, base_url, timeout=timeout,
                                connect_timeout=connect_timeout, session=session)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._credentials = {} if token else {"user": user, "pass": password}
        self._sms_from = sms_from
        self._vk_from = vk_from
        self._telegram_ttl = telegram_ttl
        self._clock = clock
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, renew after)

    @property
    def vk_enabled(self) -> bool:
        """VK sends need a sender: GreenSMS requires ``from`` (PHP SDK schema)."""
        return bool(self._vk_from)

    def send_code(self, route: str, phone: str, code: str, sms_text: str) -> str:
        """Send ``code`` to ``phone`` (digits) by ``route``; return GreenSMS's request_id.

        Telegram gets the code alone (the gateway renders the message); VK and SMS get
        ``sms_text``. An ``error`` in the body is a refusal whatever the HTTP status.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        if route == "vk" and not self._vk_from:
            # GreenSMS refuses it (``from`` is required); the flows skip VK then.
            raise UpstreamRejected(GATEWAY, "vk: GREENSMS_VK_FROM is not set")
        # A JSON body, as GreenSMS's newest SDK (PHP 4.0) sends it; no credential in a URL.
        payload: dict[str, Any] = {"to": phone, **self._credentials}
        if route == "telegram":
            payload["txt"] = code
            if self._telegram_ttl:
                payload["ttl"] = self._telegram_ttl
        else:
            payload["txt"] = sms_text
            sender = self._vk_from if route == "vk" else self._sms_from
            if sender:
                payload["from"] = sender
            if route == "sms":
                payload["hidden"] = code  # kept out of GreenSMS's message history
        try:
            status, body = self._http.request("POST", f"/{route}/send", json=payload,
                                              headers=self._headers)
            return _answer_field(route, status, body, "request_id")
        except UpstreamError as e:
            if may_have_left(e):
                raise SendOutcomeUnknown(GATEWAY, f"{route}/send: outcome unknown ({e.message})",
                                         e.status_code) from e
            raise

    def delivery_status(self, route: str, request_id: str) -> str:
        """``delivered``, ``pending``, ``failed`` or ``unknown`` for one earlier send.

        ``GET /<route>/status`` with ``id`` and ``extended``; the answer's shape is
        read code first, word second (``DELIVERY_CODES``, ``DELIVERY_STATUSES``). A refusal raises
        ``UpstreamRejected``, an unreachable GreenSMS ``UpstreamUnavailable``.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        status, body = self._authorized_get(f"/{route}/status",
                                            [("id", request_id), ("extended", "true")])
        # status_code is read first: an answer with a code and no word is an answer too.
        _answer_field(f"{route}/status", status, body,
                      "status_code" if isinstance(body, dict) and body.get("status_code")
                      not in (None, "") else "status")
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
        status, body = self._authorized_get("/account/balance")
        return _answer_field("account/balance", status, body, "balance")

    def _authorized_get(self, path: str, params: list[tuple[str, str]] | None = None
                        ) -> tuple[int, Any]:
        """A GET with the token (or the cached user/pass token). A token GreenSMS no
        longer takes is dropped, so the next call asks for a new one."""
        if self._headers:
            return self._http.request("GET", path, params=params or [],
                                      headers=self._headers)
        token = self._account_token()
        status, body = self._http.request("GET", path, params=params or [],
                                          headers={"Authorization": f"Bearer {token}"})
        if status == 401 or (isinstance(body, dict) and body.get("code") == 0
                             and "error" in body):
            with self._token_lock:
                if self._token is not None and self._token[0] == token:
                    self._token = None
        return status, body

    def _account_token(self) -> str:
        """A user/pass token from ``POST /account/token`` (credentials in its JSON body),
        kept until shortly before it expires."""
        with self._token_lock:
            if self._token is not None and self._clock() < self._token[1]:
                return self._token[0]
            payload = {**self._credentials, "expire": TOKEN_EXPIRE_SECONDS}
            status, body = self._http.request("POST", "/account/token", json=payload)
            token = _answer_field("account/token", status, body, "access_token")
            self._token = (token, self._clock() + TOKEN_EXPIRE_SECONDS
                           - TOKEN_RENEW_MARGIN_SECONDS)
            return token


def may_have_left(error: UpstreamError) -> bool:
    """Whether a failed send may have reached GreenSMS (and so may be delivered).

    Certainly never left: GreenSMS's own error answer or a 4xx refusal, a refused
    connection, a connect timeout, a name that does not resolve. Anything else (a read
    timeout, a connection dropped under the call, a 5xx, an answer without a request_id
    or not JSON) may have: the send counts as made."""
    if isinstance(error, UpstreamRejected):
        return False
    if error.status_code is not None:
        return not 400 <= error.status_code < 500
    if isinstance(error, UpstreamConnectionDropped):
        return True
    cause = error.__cause__
    if cause is None:  # not made (no time left of the request's deadline)
        return False
    if isinstance(cause, requests.ConnectTimeout):
        return False
    if isinstance(cause, requests.Timeout):
        return True
    # Refused or unresolvable (urllib3's NewConnectionError / NameResolutionError).
    return not isinstance(cause, requests.ConnectionError)


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
