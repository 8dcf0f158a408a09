"""GreenSMS: sends a code by any route of gurugrow/routes.py (Telegram, VK, WhatsApp,
Viber, SMS, a flash call, a voice call). Never retried: every send is paid."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from gurugrow.basics.errors import (
    SendOutcomeUnknown,
    UpstreamConnectionDropped,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gurugrow.basics.json_types import JsonObject, JsonValue
from gurugrow.gateways.http import HttpClient
from gurugrow.logs import log_event
from gurugrow.routes import (
    CALL_STATUSES,
    INCOMING_CALL_STATUSES,
    NUMBER_TO_CALL,
    ROUTES,
    THEIR_CODE,
    Route,
)

GATEWAY = "greensms"
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
# The call and voice modules' words. ASSUMED: the SDKs type them as the message words
# (node SDK ``StatusResponse``); the call words below are read defensively besides them,
# any other word is ``unknown`` (docs/INTEGRATIONS.md, "GreenSMS routes").
CALL_STATUS_WORDS = {**DELIVERY_STATUSES, "call answered": "delivered",
                     "call success": "delivered", "call failed": "failed",
                     "call rejected": "failed", "no answer": "failed", "busy": "failed"}
# A received call (``call/receive``, then ``GET /call/status``): GreenSMS documents no
# word for it. ASSUMED, read defensively: only a word or code that plainly says the call
# came (the message vocabulary's success, and call words) verifies; a plain "not yet"
# is pending; anything else is unknown, which never verifies (docs/INTEGRATIONS.md).
INCOMING_CALL_CODES = {0: "pending", 1: "delivered"}
INCOMING_CALL_WORDS = {"status not ready": "pending", "delivery success": "delivered",
                       "call received": "delivered", "received": "delivered",
                       "call success": "delivered", "success": "delivered",
                       "waiting": "pending", "pending": "pending",
                       "status request expired": "failed", "expired": "failed"}


@dataclass(frozen=True)
class SendAnswer:
    """GreenSMS's answer to one accepted send: its request id, and for a route whose
    code GreenSMS chooses (a flash call) that code, for a received call the number to
    call."""

    request_id: str
    code: str | None = None
    number: str | None = None


class GreenSmsGateway:
    """GreenSMS over one Session; credentials go in a header or the JSON body, never the
    URL."""

    def __init__(self, base_url: str, *, token: str = "", user: str = "", password: str = "",
                 sms_from: str = "", vk_from: str = "",
                 senders: Mapping[str, str] | None = None, telegram_ttl: int | None = None,
                 timeout: float = 10, connect_timeout: float = 3,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = HttpClient(GATEWAY, base_url, timeout=timeout,
                                connect_timeout=connect_timeout, session=session)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._credentials = {} if token else {"user": user, "pass": password}
        # route -> ``from`` (the route's sender setting); sms_from/vk_from name two of them.
        self._senders = {"sms": sms_from, "vk": vk_from, **(senders or {})}
        self._telegram_ttl = telegram_ttl
        self._clock = clock
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, renew after)

    def sender(self, route: str) -> str:
        """The ``from`` of ``route``'s sends ('' when none is set)."""
        return self._senders.get(route) or ""

    def send_code(self, route: str, phone: str, code: str, text: str) -> SendAnswer:
        """Send ``code`` to ``phone`` (digits) by ``route``; return GreenSMS's answer."""
        declared = _route(route)
        sender = self.sender(route)
        if declared.sender_required and not sender:
            # GreenSMS refuses it (``from`` is required); the flows skip the route then.
            raise UpstreamRejected(GATEWAY, f"{route}: {declared.sender_setting} is not set")
        payload: JsonObject = {"to": phone}
        # The route's declaration (gurugrow/routes.py) says what goes in ``txt``: the code
        # alone (telegram, voice), ``text`` (the messengers, SMS), or nothing (a flash call,
        # whose code is GreenSMS's and comes back in the answer).
        if declared.txt == "code":
            payload["txt"] = code
        elif declared.txt == "text":
            payload["txt"] = text
        if sender:
            payload["from"] = sender
        if route == "sms":
            payload["hidden"] = code  # kept out of GreenSMS's message history
        if route == "telegram" and self._telegram_ttl:
            payload["ttl"] = self._telegram_ttl
        # An ``error`` in the body is a refusal whatever the HTTP status.
        return self._send(declared, payload)

    def _send(self, declared: Route, payload: JsonObject) -> SendAnswer:
        """The one request path of every send: ``POST /<module>/<action>`` with a JSON body,
        as GreenSMS's newest SDK (PHP 4.0) sends it; no credential in a URL. A failure
        that may have reached GreenSMS raises ``SendOutcomeUnknown`` (``may_have_left``)."""
        path = f"/{declared.module}/{declared.action}"
        try:
            status, body = self._http.request(
                "POST", path, json={**payload, **self._credentials}, headers=self._headers)
            return _send_answer(declared, status, body)
        except UpstreamError as e:
            if may_have_left(e):
                raise SendOutcomeUnknown(GATEWAY, f"{path}: outcome unknown ({e.message})",
                                         e.status_code) from e
            raise

    def delivery_status(self, route: str, request_id: str) -> str:
        """``delivered``, ``pending``, ``failed`` or ``unknown`` for one earlier send."""
        # ``GET /<module>/status`` (the route's module) with ``id`` and ``extended``. A
        # refusal raises ``UpstreamRejected``, an unreachable GreenSMS
        # ``UpstreamUnavailable``.
        declared = _route(route)
        status, body = self._authorized_get(f"/{declared.module}/status",
                                            [("id", request_id), ("extended", "true")])
        # status_code is read first: an answer with a code and no word is an answer too.
        _answer_field(f"{route}/status", status, body,
                      "status_code" if isinstance(body, dict) and body.get("status_code")
                      not in (None, "") else "status")
        # The answer's shape is read code first, word second (``DELIVERY_CODES``,
        # ``DELIVERY_STATUSES``).
        mapped = delivery_status_of(body, declared.statuses)
        if mapped == "unknown":  # a word or code to add to the tables, once understood
            log_event("greensms_status_unmapped", logging.WARNING, route=route,
                      raw_status=str(body.get("status"))[:40],
                      raw_code=str(body.get("status_code"))[:10])
        return mapped

    def account_balance(self) -> str:
        """The account balance (``GET /account/balance``): proves the credentials work."""
        # With a token it travels as the Bearer header, as for sends. With user/pass they go
        # in the body of ``POST /account/token`` (never a URL), and the short-lived token it
        # answers reads the balance.
        status, body = self._authorized_get("/account/balance")
        # A refusal raises ``UpstreamRejected`` whose ``status_code`` is the HTTP status and
        # ``errors`` GreenSMS's ``{error, code}``.
        return _answer_field("account/balance", status, body, "balance")

    def _authorized_get(self, path: str, params: list[tuple[str, str]] | None = None
                        ) -> tuple[int, JsonValue]:
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


def _route(route: str) -> Route:
    declared = ROUTES.get(route)
    if declared is None:
        raise ValueError(f"unknown route {route!r}")
    return declared


def _send_answer(declared: Route, status: int, body: JsonValue) -> SendAnswer:
    """A send's answer as its route reads it: the request id, and a flash call's code or
    an incoming call's number to call."""
    request_id = _answer_field(declared.name, status, body, "request_id")
    if declared.sends == NUMBER_TO_CALL:
        number = _answer_field(declared.name, status, body, "number")
        digits = number.lstrip("+")
        if not (digits.isdigit() and 10 <= len(digits) <= 15):
            raise UpstreamUnavailable(GATEWAY, f"{declared.name}: no number to call", status)
        return SendAnswer(request_id, number=digits)
    if declared.sends != THEIR_CODE:
        return SendAnswer(request_id)
    # A flash call: the code is the last digits of the calling number, GreenSMS's.
    code = _answer_field(declared.name, status, body, "code")
    if not (code.isdigit() and len(code) == declared.code_length):
        raise UpstreamUnavailable(GATEWAY, f"{declared.name}: code not of "
                                  f"{declared.code_length} digits", status)
    return SendAnswer(request_id, code)


def may_have_left(error: UpstreamError) -> bool:
    """Whether a failed send may have reached GreenSMS (and so may be delivered)."""
    # Certainly never left: GreenSMS's own error answer or a 4xx refusal, a refused
    # connection, a connect timeout, a name that does not resolve. Anything else (a read
    # timeout, a connection dropped under the call, a 5xx, an answer without a request_id
    # or not JSON) may have: the send counts as made.
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


def delivery_status_of(answer: JsonObject, statuses: str = "message") -> str:
    """delivered | pending | failed | unknown for one GreenSMS status answer: its
    ``status_code`` when it is a known code, else its ``status`` word (of the route's
    vocabulary, ``statuses``)."""
    incoming = statuses == INCOMING_CALL_STATUSES
    codes = INCOMING_CALL_CODES if incoming else DELIVERY_CODES
    code = answer.get("status_code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and code in codes:
        return codes[code]
    word = answer.get("status")
    if not isinstance(word, str):
        return "unknown"
    words = (INCOMING_CALL_WORDS if incoming
             else CALL_STATUS_WORDS if statuses == CALL_STATUSES else DELIVERY_STATUSES)
    return words.get(" ".join(word.split()).lower(), "unknown")


def _answer_field(what: str, status: int, body: JsonValue, key: str) -> str:
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
