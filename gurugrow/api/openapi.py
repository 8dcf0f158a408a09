"""The OpenAPI 3 document, built from the endpoints' marshmallow schemas and declared
answers (`/openapi.json`), and a page rendering it without JavaScript (`/docs`)."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template
from markupsafe import Markup, escape
from marshmallow.fields import Field

from gurugrow import texts
from gurugrow.api import schemas
from gurugrow.api.callers import TOKEN_HEADER, TOKEN_QUERY_PARAMETER, needs_api_token
from gurugrow.api.contract import EndpointContract
from gurugrow.basics.catalog import RECOMMENDED_SETS
from gurugrow.basics.identity import IDENTITY_FIELDS
from gurugrow.config import CHANNELS

bp = Blueprint("openapi", __name__)

# The sandbox's stand-ins imitate other services' APIs; they are not gurugrow's.
UNDOCUMENTED_PREFIXES = ("/sandbox", "/static")
FORM = "application/x-www-form-urlencoded"

FIELD_DESCRIPTIONS = {
    "channelType": "Messenger: telegram | vk | whatsapp | max | instagram (any case; no "
                   "other spelling: tg is invalid_channel).",
    "messengerUserId": "Stable messenger account id; the first non-empty of this, "
                       "customerExternalId, messengerAccountId, messengerAccountIdFallback "
                       "identifies the account.",
    "customerExternalId": "Identity fallback 1 (BotMarketing's external id).",
    "messengerAccountId": "Identity fallback 2.",
    "messengerAccountIdFallback": "Identity fallback 3.",
    "chatExternalId": "Accepted and ignored: a chat id never binds an account.",
    "customerId": "RetailCRM customer id. In a request only a consistency check against "
                  "the bound customer (mismatch → conflict / customer_mismatch).",
    "phone": "Phone in any common format (+7 999 123-45-67, 8999…); country must be "
             "allowed (PHONE_ALLOWED_REGIONS).",
    "deliveryRoute": "Preferred route for the code, one the channel's workflow "
                     "(DELIVERY_ROUTES_<CHANNEL>) allows; a route that refuses the code "
                     "falls back to the workflow's next.",
    "contactUserId": "The user id the messenger attached to a shared contact; must be the "
                     "sender's own messenger id (else contact_not_own).",
    "sessionId": "The session of a sent code (from /auth/start or /orders/recommended/start).",
    "code": "The code the customer received (OTP_LENGTH digits; a JSON number is "
            "zero-padded to OTP_LENGTH; a malformed or empty one answers status "
            "invalid_code like a wrong one, without costing an attempt).",
    "limit": "Orders to show, 1..5 (default ORDERS_DEFAULT_LIMIT; out of range is clamped).",
    "sourceOrderId": "RetailCRM id of the order to repeat.",
    "sourceOrderNumber": "Its number, used when sourceOrderId is empty.",
    "offerCode": "Recommended set code, any case: the sets of RECOMMENDED_SETS_FILE (the "
                 "demo's: " + " | ".join(RECOMMENDED_SETS) + "; /docs lists the service's).",
    "firstName": "Recipient first name: any printable Unicode (emoji, flags, no-break "
                 "spaces), normalised; refused only when nothing readable is left or too "
                 "long.",
    "lastName": "Recipient last name, as firstName.",
    "email": "Recipient email; an invalid one is dropped, not refused.",
    "status": "Outcome; bots branch on it.",
    "errorCode": "Why, when the outcome is not a success (null otherwise).",
    "message": "Neutral Russian sentence for errorCode (null without one).",
    "maskedPhone": "The customer's phone with the middle hidden: +7******4567.",
    "retryAfterSec": "Seconds until another code may be sent (resend_too_early, "
                     "rate_limited).",
    "authorized": "True once the messenger account is bound to the customer.",
    "verifiedUntil": "ISO 8601 UTC time until which the binding counts as verified.",
    "text": "Ready-to-send bot text.",
    "shownCount": "Number of orders in `orders`.",
    "orders": "The customer's latest visible orders, newest first.",
    "newOrderId": "RetailCRM id of the created order.",
    "newOrderNumber": "Its number (CHT…-BOT).",
    "unavailableItemName": "The first item that can no longer be ordered.",
    "orderId": "RetailCRM id of the created order.",
    "orderNumber": "Number of the order.",
    "title": "Recommended set title.",
}


# Non-contract routes after the contract's, in this order.
OPS_ORDER = ("/health", "/docs", "/openapi.json", "/metrics", "/")


@cache
def examples() -> dict[str, list[dict[str, Any]]]:
    """"METHOD /path" → examples, in the bot journey's order (gurugrow/api/examples.json).

    Each: ``title``, ``given`` (the state it needs), ``request`` fields, ``answer``.
    tests/test_docs_examples.py replays every one against the sandbox stand-ins.
    """
    return json.loads(files("gurugrow.api").joinpath("examples.json").read_text("utf-8"))


def journey_position(method: str, path: str, is_contract: bool) -> tuple[int, int, str]:
    """Sort key: contract endpoints first in journey order, then the operational routes."""
    journey = list(examples())
    key = f"{method} {path}"
    if is_contract:
        return (0, journey.index(key) if key in journey else len(journey), path)
    return (1, OPS_ORDER.index(path) if path in OPS_ORDER else len(OPS_ORDER), path)


IDENTITY_RULE = ("A messenger account is `channelType` (" + " | ".join(CHANNELS) + ") plus "
                 "the first non-empty of " + ", ".join(f"`{f}`" for f in IDENTITY_FIELDS)
                 + ". `chatExternalId`, usernames and names are accepted but never bind.")


def package_version() -> str:
    try:
        return version("gurugrow")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0"


def _converter(plugin: MarshmallowPlugin) -> OpenAPIConverter:
    """The plugin's schema converter, which APISpec sets up when given the plugin."""
    if plugin.converter is None:
        raise RuntimeError("MarshmallowPlugin used before APISpec set it up")
    return plugin.converter


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3 document of every route of ``app`` (sandbox stand-ins aside)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="gurugrow", version=package_version(), openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "Messenger authorization, orders and recommended-set orders "
                             "for BotMarketing bots over RetailCRM. Every contract answer "
                             "is HTTP 200 with a JSON envelope; bots branch on `status` "
                             "and `errorCode`. POST bodies may be JSON or form-encoded."})
    plugin.map_to_openapi_type(schemas.Text, "string", None)
    _converter(plugin).add_attribute_function(_text_attributes)
    spec.components.schema("Error", {
        "type": "object", "required": ["status", "errorCode"],
        "properties": {"status": {"type": "string", "enum": ["error"]},
                       "errorCode": {"type": "string"}, "message": {"type": "string"}}})
    security = _security_schemes(spec, app.extensions["gurugrow"].settings)
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(UNDOCUMENTED_PREFIXES):
            continue
        view = app.view_functions[rule.endpoint]
        contract: EndpointContract | None = getattr(view, "contract", None)
        routes += [(journey_position(method, rule.rule, contract is not None), method,
                    rule.rule, rule.endpoint, view, contract)
                   for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}]
    for _, method, path, endpoint_name, view, contract in sorted(routes, key=lambda r: r[:3]):
        operation = (_contract_operation(plugin, contract, method, view,
                                         path_parameters(path))
                     if contract else copy.deepcopy(OPERATIONS[(method, path)]))
        if contract:
            _add_examples(operation, examples().get(f"{method} {path}", []))
        if needs_api_token(endpoint_name):
            operation["security"] = copy.deepcopy(security)
            operation["responses"]["401"] = copy.deepcopy(UNAUTHORIZED)
        spec.path(path=openapi_path(path), operations={method.lower(): operation})
    return spec.to_dict()


# A Flask rule's variable part: ``<orderId>``, ``<int:orderId>``.
PATH_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/orders/<int:orderId>`` → ``/orders/{orderId}``."""
    return PATH_PARAMETER.sub(r"{\1}", rule)


def path_parameters(rule: str) -> tuple[str, ...]:
    """The names of a Flask rule's path parameters, in the order they appear."""
    return tuple(PATH_PARAMETER.findall(rule))


def _security_schemes(spec: APISpec, settings: Any) -> list[dict[str, list]]:
    """Declare how a caller sends its API token; the requirement any one scheme meets."""
    note = (" One of API_TOKENS; the sandbox started without API_TOKENS asks for none, "
            "and ALLOWED_CALLER_NETWORKS, when set, must hold the caller as well.")
    schemes = {
        "bearerToken": {"type": "http", "scheme": "bearer",
                        "description": "`Authorization: Bearer <token>`." + note},
        "headerToken": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER,
                        "description": f"`{TOKEN_HEADER}: <token>`." + note},
    }
    if settings.api_token_in_query:
        schemes["queryToken"] = {
            "type": "apiKey", "in": "query", "name": TOKEN_QUERY_PARAMETER,
            "description": f"`?{TOKEN_QUERY_PARAMETER}=<token>` (API_TOKEN_IN_QUERY=1, for "
                           "bot builders that cannot set headers)." + note}
    for name, scheme in schemes.items():
        spec.components.security_scheme(name, scheme)
    return [{name: []} for name in schemes]


def _add_examples(operation: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    """Request and answer examples into the operation: ``x-examples`` (the pairs, for
    /docs) and OpenAPI's own ``examples`` on the body and the 200 answer."""
    # The setup steps are the test's business; a reader gets the story in ``given``.
    operation["x-examples"] = [{k: case[k] for k in ("title", "given", "request", "answer")}
                               for case in cases]
    named = {f"{i + 1}-{case['answer']['status']}": case for i, case in enumerate(cases)}
    answer_content = operation["responses"]["200"]["content"]["application/json"]
    answer_content["examples"] = {name: {"summary": case["title"], "value": case["answer"]}
                                  for name, case in named.items()}
    for content in operation.get("requestBody", {}).get("content", {}).values():
        content["examples"] = {name: {"summary": case["title"], "value": case["request"]}
                               for name, case in named.items()}


def _text_attributes(self: OpenAPIConverter, field: Field, **kwargs: Any) -> dict[str, Any]:
    """maxLength of the project's Text fields, and the errorCode a bad value answers."""
    if isinstance(field, schemas.Text):
        attributes: dict[str, Any] = {
            "maxLength": field.max_length,
            "x-errorCode": field.metadata.get("error_code", "invalid_request")}
        if (choices := getattr(field, "enum", None)) is not None:
            attributes["enum"] = choices
        return attributes
    return {}


def _describe(properties: dict[str, Any]) -> dict[str, Any]:
    for name, prop in properties.items():
        if name in FIELD_DESCRIPTIONS:
            prop.setdefault("description", FIELD_DESCRIPTIONS[name])
    return properties


def _contract_operation(plugin: MarshmallowPlugin, contract: EndpointContract, method: str,
                        view: Any, path_names: tuple[str, ...] = ()) -> dict[str, Any]:
    converter = _converter(plugin)
    doc = (view.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    request_schema = converter.schema2jsonschema(contract.request)
    _describe(request_schema["properties"])
    required = list(getattr(contract.request, "required_fields", ()))
    if required:
        request_schema["required"] = required
    response = converter.schema2jsonschema(contract.response)
    props = _describe(response["properties"])
    props["status"]["enum"] = list(contract.statuses)
    props["errorCode"]["enum"] = [*contract.error_codes, None]
    props["errorCode"]["x-messages"] = {code: texts.error_message(code)
                                        for code in contract.error_codes}
    response["required"] = [name for name in props
                            if not contract.response.fields[name].metadata.get("optional")]
    response["additionalProperties"] = False  # an undocumented field fails validation
    operation: dict[str, Any] = {
        "summary": summary.strip(), "description": " ".join(description.split()),
        "responses": {
            "200": {"description": "The contract answer: every field present, null when "
                                   "empty.",
                    "content": {"application/json": {"schema": response}}},
            **HTTP_ERRORS,
        },
    }
    # Path parameters are in the path, always required; a GET's other fields are in the
    # query, a POST's in the body.
    properties = request_schema["properties"]
    in_query = () if method != "GET" else tuple(n for n in properties if n not in path_names)
    parameters = [
        {"name": name, "in": "path" if name in path_names else "query",
         "required": name in path_names or name in required, "schema": properties[name],
         **({"description": properties[name]["description"]}
            if "description" in properties[name] else {})}
        for name in (*path_names, *in_query)]
    if parameters:
        operation["parameters"] = parameters
    if method != "GET":
        body_schema = {**request_schema, "properties": {
            name: prop for name, prop in properties.items() if name not in path_names}}
        body_required = [n for n in required if n not in path_names]
        if body_required:
            body_schema["required"] = body_required
        else:
            body_schema.pop("required", None)
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body_schema}, FORM: {"schema": body_schema}}}
    return operation


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


UNAUTHORIZED = {
    "description": "No valid API token, or a caller outside ALLOWED_CALLER_NETWORKS "
                   "(errorCode unauthorized); answered before anything else runs.",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["status", "errorCode", "message"],
        "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["error"]},
                       "errorCode": {"type": "string", "enum": ["unauthorized"]},
                       "message": {"type": "string",
                                   "enum": [texts.error_message("unauthorized")]}}}}}}

HTTP_ERRORS = {
    "404": _error("Unknown path (errorCode not_found)."),
    "405": _error("Wrong HTTP method (errorCode method_not_allowed)."),
    "413": _error("Body larger than MAX_BODY_BYTES (errorCode body_too_large)."),
}

# Routes outside the bot contract, documented by hand.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {
        "summary": "Liveness, and Redis answering and taking writes.",
        "responses": {
            "200": {"description": "Redis answers.", "content": {"application/json": {
                "schema": {"type": "object", "required": ["status", "redis"], "properties": {
                    "status": {"type": "string", "enum": ["ok"]},
                    "redis": {"type": "string", "enum": ["ok"]}}}}}},
            "503": {"description": "Redis does not answer (unavailable), or answers but "
                                   "refuses writes (refuses_writes: out of memory under "
                                   "noeviction, a read-only replica; ``reason`` says "
                                   "Redis's words).", "content": {
                "application/json": {"schema": {
                    "type": "object", "required": ["status", "redis"], "properties": {
                        "status": {"type": "string", "enum": ["error"]},
                        "redis": {"type": "string",
                                  "enum": ["unavailable", "refuses_writes"]},
                        "reason": {"type": "string"}}}}}}}},
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics (text format 0.0.4).",
        "description": "Requests by endpoint and status, answers by errorCode, latency, "
                       "upstream calls, codes sent by route, SMS fallbacks, limit refusals, "
                       "the day's send budget and what is spent of it. Open to loopback "
                       "and ALLOWED_CALLER_NETWORKS; anyone else needs "
                       "`Authorization: Bearer <METRICS_TOKEN>`. Keep it closed in nginx "
                       "(deploy/nginx/gurugrow.conf).",
        "responses": {"200": {"description": "The metrics.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "401": _error("A caller from elsewhere without METRICS_TOKEN "
                                    "(errorCode unauthorized).")}},
    ("GET", "/openapi.json"): {
        "summary": "This document.",
        "responses": {"200": {"description": "OpenAPI 3 document.",
                              "content": {"application/json": {"schema": {
                                  "type": "object"}}}}}},
    ("GET", "/"): {
        "summary": "Points to this document: a redirect to /docs.",
        "responses": {"302": {"description": "Location: /docs."}}},
    ("GET", "/docs"): {
        "summary": "This document as a page (no JavaScript, no external resources).",
        "responses": {"200": {"description": "HTML page.",
                              "content": {"text/html": {"schema": {"type": "string"}}}}}},
}


def openapi_document() -> dict[str, Any]:
    """The document of the running app, built once per process."""
    cache = current_app.extensions.setdefault("gurugrow_openapi", {})
    if "spec" not in cache:
        cache["spec"] = build_spec(current_app)
    return cache["spec"]


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document())


@bp.get("/docs")
def docs_page():
    sets = current_app.extensions["gurugrow"].sets or RECOMMENDED_SETS
    return render_template("docs.html", spec=openapi_document(), identity_rule=IDENTITY_RULE,
                           offers=list(sets.values()))


@bp.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    """JSON as a bot sends and gets it: fields in their order, Cyrillic as is."""
    return json.dumps(value, ensure_ascii=False, indent=2)


@bp.app_template_filter("inline_code")
def inline_code(value: Any) -> Markup:
    """The inline Markdown of a description as HTML (the rest escaped): `code`,
    **bold**, [text](https://…) links; None as nothing."""
    if value is None:
        return Markup("")
    html = str(escape(value))
    html = re.sub(r"``(.+?)``", r"<code>\1</code>", html)  # docstrings' literals
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    html = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)
    html = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+|#[\w-]+)\)", r'<a href="\2">\1</a>', html)
    return Markup(html)


@bp.get("/")
def root():
    """A person opening the service's address wants the API document."""
    return redirect("/docs", code=302)
