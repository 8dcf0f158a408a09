"""The caller check in front of every route but the few public ones.

Runs as the app's first ``before_request`` after the request id is set, so a refused
caller gets HTTP 401 before any flow, upstream call or Redis write. Routes are protected
unless listed in ``PUBLIC_ENDPOINTS``: a new route is protected without anyone
remembering to (tests/test_callers.py walks the URL map to hold that).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request

from gurugrow import texts
from gurugrow.basics.callers import CallerPolicy, bearer_token, client_ip
from gurugrow.basics.request_scope import CALLER_BY_TOKEN
from gurugrow.config import Settings
from gurugrow.logs import log_event

# Endpoints anyone may call: liveness and the API document. The sandbox is mounted
# outside the app (sandbox/mount.py): its stand-in upstreams check their own sandbox keys,
# its own routes (outbox, stats, reset) the callers as here.
PUBLIC_ENDPOINTS = frozenset({"health.health", "openapi.openapi_json", "openapi.docs_page",
                              "openapi.root"})
# Endpoints with a policy of their own: /metrics, for scrapers (CallerPolicy.for_scrapers).
METRICS_ENDPOINT = "ops.metrics_page"
TOKEN_HEADER = "X-API-Token"
TOKEN_QUERY_PARAMETER = "token"
ERROR_CODE = "unauthorized"


def is_public(endpoint: str | None) -> bool:
    """True for the endpoints that need no caller check."""
    return endpoint in PUBLIC_ENDPOINTS


def needs_api_token(endpoint: str | None) -> bool:
    """True for the endpoints that take one of API_TOKENS (all but the public ones and
    /metrics, which has METRICS_TOKEN)."""
    return not is_public(endpoint) and endpoint != METRICS_ENDPOINT


# The 401 answer's challenge header.
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="gurugrow"')


def unauthorized_body() -> dict[str, str | None]:
    """The JSON envelope every refusal of a caller gets (HTTP 401)."""
    return {"status": "error", "errorCode": ERROR_CODE,
            "message": texts.error_message(ERROR_CODE)}


def unauthorized() -> Response:
    """The 401 answer: the JSON envelope every refusal of a caller gets."""
    response = jsonify(unauthorized_body())
    response.status_code = 401
    response.headers[CHALLENGE[0]] = CHALLENGE[1]
    return response


def request_client_ip(settings: Settings) -> str | None:
    """The caller's address, X-Forwarded-For believed only from TRUSTED_PROXIES."""
    return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"),
                     settings.trusted_networks)


def offered_tokens(settings: Settings, req: Any = None) -> list[str]:
    """Every token the request (``req``, default Flask's) carries in the accepted places
    (query only if enabled)."""
    req = request if req is None else req
    offered = [bearer_token(req.headers.get("Authorization")) or "",
               req.headers.get(TOKEN_HEADER, "").strip()]
    if settings.api_token_in_query:
        offered.append(req.args.get(TOKEN_QUERY_PARAMETER, "").strip())
    return offered


def install_caller_check(app: Flask, settings: Settings) -> None:
    """Refuse callers without a valid token / outside the networks on protected routes;
    a live start running open on purpose says so at every start."""
    policy = CallerPolicy.build(settings.api_tokens, settings.caller_networks)
    own_policies = {METRICS_ENDPOINT: CallerPolicy.for_scrapers(settings.metrics_token,
                                                                 settings.caller_networks)}
    # A live start refuses an open policy unless ALLOW_ANONYMOUS_CALLERS=1 (the CLI's app
    # on a refused configuration is never served: see create_cli_app).
    if policy.is_open and not settings.sandbox and settings.allow_anonymous_callers:
        log_event("anonymous_callers_allowed", logging.WARNING,
                  note="ALLOW_ANONYMOUS_CALLERS=1 and neither API_TOKENS nor "
                       "ALLOWED_CALLER_NETWORKS: anyone who reaches the service may call it")

    @app.before_request
    def _check_caller() -> Response | None:
        CALLER_BY_TOKEN.set(False)  # (a thread serves many requests)
        # An unknown path or method answers its own 404/405 (no flow runs for it).
        if request.url_rule is None or is_public(request.endpoint):
            return None
        deciding = own_policies.get(request.endpoint or "", policy)
        if deciding.is_open:
            return None
        address = request_client_ip(settings)
        # /metrics takes its token as a bearer token only (what Prometheus sends).
        offered = ([bearer_token(request.headers.get("Authorization")) or ""]
                   if deciding is not policy else offered_tokens(settings))
        reason = deciding.refusal(offered, address)
        if reason is None:
            CALLER_BY_TOKEN.set(deciding is policy and bool(policy.token_digests))
            return None
        log_event("caller_refused", logging.WARNING, reason=reason, endpoint=request.path,
                  ip=address)
        g.request_logged = True  # this line is the request's one line (no "request" line)
        return unauthorized()
