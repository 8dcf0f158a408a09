"""Serves the stand-ins under /sandbox (sandbox mode only): in-process, or — when they run
on their own server (``SANDBOX_STANDINS_URL``, set by ``make run``) — by forwarding there,
so the app's request threads never serve its own upstream calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import requests
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request, Response

from gurugrow.api.callers import CHALLENGE, offered_tokens, unauthorized_body
from gurugrow.basics.callers import CallerPolicy, client_ip
from gurugrow.basics.phone import mask_phone
from gurugrow.config import Settings
from gurugrow.logs import begin_request, log_event
from gurugrow.sandbox.standins import create_standins_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Headers that describe one hop of a connection, not the request (RFC 9110 §7.6.1).
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                          "upgrade", "proxy-authorization", "proxy-authenticate", "host",
                          "content-length", "content-encoding"})
# The stand-in upstreams: the app's gateways call them with the sandbox keys they check.
# Every other path under /sandbox is the sandbox's own (outbox, stats, reset).
UPSTREAM_MOUNTS = ("/retailcrm/", "/greensms/", "/deduper/")


def log_message(message: dict[str, Any]) -> None:
    """Logs a code the stand-ins "sent". Sandbox only: showing the code is the point; the
    phone stays masked."""
    log_event("sandbox_code", route=message["route"], to=mask_phone(message["to"]),
              code=message["code"])


def mount_sandbox(app: Flask, ignored: list[str] | None = None) -> Flask:
    """Mount the stand-ins at /sandbox (outbox at /sandbox/outbox, reset at /sandbox/reset;
    a reset also clears this service's Redis keys, so a journey can run again at once).

    ``ignored``: the upstream variables the environment set and the sandbox overrode.
    """
    svc = app.extensions["gurugrow"]

    def clear_redis() -> None:
        deleted = svc.storage.clear_prefix()
        log_event("sandbox_reset", redis_keys_deleted=deleted)

    base_url = svc.settings.sandbox_standins_url.rstrip("/")
    if base_url:
        standins: WsgiApp = forwarding_app(base_url)
    else:
        standins = create_standins_app(on_message=log_message)
    # Wrapping wsgi_app is Flask's documented way to add WSGI middleware; typeshed sees a
    # method there.
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/sandbox": checking_callers(
            clearing_on_reset(standins, clear_redis), svc.settings)})
    log_event("sandbox_enabled", standins=base_url or "in-process",
              upstreams="/sandbox/retailcrm,/sandbox/greensms,/sandbox/deduper")
    if ignored:  # names only: the values may be real keys
        log_event("sandbox_ignores_upstream_settings", logging.WARNING,
                  variables=",".join(ignored), note="the sandbox always uses its stand-ins")
    return app


def checking_callers(standins: WsgiApp, settings: Settings) -> WsgiApp:
    """``standins``, whose own routes (all but ``UPSTREAM_MOUNTS``) refuse the callers
    the app refuses when ``API_TOKENS`` or ``ALLOWED_CALLER_NETWORKS`` is set: the outbox
    shows every code, and a reset deletes the prefix's keys."""
    policy = CallerPolicy.build(settings.api_tokens, settings.caller_networks)
    if policy.is_open:
        return standins

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(UPSTREAM_MOUNTS):
            return standins(environ, start_response)
        request = Request(environ)
        address = client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"),
                            settings.trusted_networks)
        reason = policy.refusal(offered_tokens(settings, request), address)
        if reason is None:
            return standins(environ, start_response)
        begin_request(environ.get("HTTP_X_REQUEST_ID"))
        log_event("caller_refused", logging.WARNING, reason=reason,
                  endpoint="/sandbox" + environ.get("PATH_INFO", ""), ip=address)
        response = Response(json.dumps(unauthorized_body(), ensure_ascii=False), 401,
                            mimetype="application/json", headers=[CHALLENGE])
        return response(environ, start_response)

    return wsgi


def clearing_on_reset(standins: WsgiApp, clear: Callable[[], None]) -> WsgiApp:
    """``standins``, with ``clear`` run before each ``POST /reset`` reaches them."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/reset":
            begin_request(environ.get("HTTP_X_REQUEST_ID"))
            clear()
        return standins(environ, start_response)

    return wsgi


def forwarding_app(base_url: str, timeout: float = 30.0) -> WsgiApp:
    """A WSGI app passing each request on to the stand-ins' own server at ``base_url``."""
    session = requests.Session()
    session.trust_env = False  # loopback: never through a proxy from the environment

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            upstream = session.request(
                request.method, base_url + request.path, params=request.args.items(multi=True),
                data=request.get_data(), headers=headers, timeout=timeout,
                allow_redirects=False)
        except requests.RequestException as e:
            response = Response('{"status":"error","errorCode":"sandbox_unavailable"}', 502,
                                mimetype="application/json")
            log_event("sandbox_forward_failed", error=type(e).__name__)
            return response(environ, start_response)
        response = Response(upstream.content, upstream.status_code, headers=[
            (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS])
        return response(environ, start_response)

    return wsgi
