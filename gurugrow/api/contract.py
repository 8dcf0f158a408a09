"""parse → call → render: the one wrapper every contract endpoint goes through."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from gurugrow import governor as quota
from gurugrow import metrics, texts
from gurugrow.api.bodies import body_values
from gurugrow.api.callers import request_client_ip
from gurugrow.api.fields import request_settings
from gurugrow.basics.deadline import answer_deadline
from gurugrow.basics.errors import (
    CrmBusy,
    DeadlineExceeded,
    FlowRefusal,
    InProgress,
    StorageUnavailable,
    UnreadableBody,
    UpstreamError,
)
from gurugrow.flows.requests import FlowRequest
from gurugrow.logs import log_event
from gurugrow.services import Services

# A flow: its typed request in (gurugrow/flows/requests.py), its answer's fields out.
Flow = Callable[[Services, Any], Mapping[str, object]]


def services() -> Services:
    """The process's Services (built by create_app)."""
    return current_app.extensions["gurugrow"]


def request_values() -> dict[str, Any]:
    """Query string merged with the body (JSON object or form); the body wins.

    BotMarketing sends GET parameters in the query and POST bodies as either encoding.
    A repeated key counts once (its first value). Raises ``UnreadableBody`` for a body
    that is not what its Content-Type says.
    """
    values: dict[str, Any] = request.args.to_dict(flat=True)
    if request.method == "GET":
        return values
    values.update(body_values())
    return values


def first_error(schema: Schema, messages: dict[str, Any]) -> tuple[str, str]:
    """``(status, errorCode)`` of the first failing field, in the schema's declared order.

    A field whose errorCode the flow answers with another status than ``error`` says so
    in its ``error_status`` (a customerId that is no CRM id: ``conflict``, as a mismatch),
    so a value refused here is answered as the flow would answer it."""
    for name, field in schema.fields.items():
        if name in messages:
            return (field.metadata.get("error_status", "error"),
                    field.metadata.get("error_code", "invalid_request"))
    return "error", "invalid_request"


def render(schema: Schema, answer: dict[str, Any]) -> dict[str, Any]:
    """Dump through the response schema so every contract field is present."""
    if answer.get("errorCode") and not answer.get("message"):
        answer["message"] = texts.error_message(answer["errorCode"])
    return schema.dump(answer)


# Any endpoint may answer these: bad input, Redis or RetailCRM down, a bug.
COMMON_ERROR_CODES = ("invalid_request", "storage_unavailable", "crm_unavailable",
                      "internal_error")

# The refusals the blueprints declare, by family (the flows raise them as FlowRefusal).
# Every code-sending endpoint, before any code goes out:
SEND_REFUSALS = ("phone_country_not_allowed", "resend_too_early", "rate_limited",
                 "send_budget_exhausted", "cost_budget_exhausted", "dedupe_failed",
                 "delivery_failed")
# A messenger account bound to no customer, to several, or to another than customerId.
BINDING_REFUSALS = ("not_authorized", "conflict", "customer_mismatch")
# in_progress: a replay of a code whose first check still runs after waiting for it.
CHECK_REFUSALS = ("invalid_code", "expired", "too_many_attempts", "session_not_found",
                  "conflict", "in_progress")
# A shared contact: a channel not in CONTACT_VERIFIED_CHANNELS, another user's contact,
# a phone nobody has; then the per-account and per-address limits and the binding.
CONTACT_REFUSALS = ("contact_channel_not_allowed", "contact_not_own", "customer_not_found",
                    "rate_limited", "dedupe_failed", "conflict", "in_progress")
# A resend: the session's own send cap and state, then every send limit.
RESEND_REFUSALS = ("session_not_found", "too_many_attempts", *SEND_REFUSALS)
# Recommended sets: an unknown offerCode, a bundle missing from the catalog, an order
# RetailCRM refused twice (answered with the manager-handoff text), the same order
# still being placed.
ORDER_REFUSALS = ("unknown_offer", "bundle_unavailable", "order_failed", "in_progress")

# app.extensions key: when an app holds a list there (the test suite puts one on every
# app it calls, and fails on any entry), answers outside an endpoint's declared statuses
# and errorCodes are collected in it as (path, status, errorCode).
UNDOCUMENTED_ANSWERS = "gurugrow.undocumented_answers"


@dataclass(frozen=True)
class EndpointContract:
    """What an endpoint takes and answers: the source of the OpenAPI document."""

    request: Schema
    response: Schema
    statuses: tuple[str, ...]
    error_codes: tuple[str, ...]

    def allows(self, answer: dict[str, Any]) -> bool:
        code = answer.get("errorCode")
        return answer.get("status") in self.statuses and (
            code is None or code in self.error_codes)


def validation_error_codes(schema: Schema) -> tuple[str, ...]:
    """The errorCodes a request schema's fields can answer, in declared order."""
    codes = [f.metadata.get("error_code", "invalid_request") for f in schema.fields.values()]
    return tuple(dict.fromkeys(codes))


def endpoint(request_schema: type[Schema], response_schema: type[Schema], *,
             statuses: tuple[str, ...], error_codes: tuple[str, ...] = (),
             crm_priority: str = quota.READ, crm_bound: bool = True,
             ) -> Callable[[Flow], Callable]:
    """Wrap a flow function as a view answering the endpoint's envelope, HTTP 200."""
    # ``statuses`` and ``error_codes`` are the answers the flow gives; ``error``, the request
    # schema's validation codes and ``COMMON_ERROR_CODES`` are added, and ``busy`` (no RetailCRM
    # slot in time) when the endpoint calls RetailCRM. ``crm_priority``: ``journey`` for a step
    # after a code was sent, whose CRM calls go before reads.
    req, resp = request_schema(), response_schema()
    busy = ("busy",) if crm_bound else ()
    codes = tuple(dict.fromkeys((*error_codes, *validation_error_codes(req),
                                 *COMMON_ERROR_CODES, *busy)))
    validation_statuses = (f.metadata.get("error_status", "error") for f in req.fields.values())
    contract = EndpointContract(
        req, resp, tuple(dict.fromkeys(("error", *statuses, *validation_statuses))), codes)

    def decorate(flow: Flow) -> Callable:
        @functools.wraps(flow)
        def view(**path_values: Any) -> Any:
            budget = answer_budget_left()
            with quota.crm_priority(crm_priority, budget_seconds=budget), \
                    answer_deadline(budget):
                answer = render(resp, _run(flow, req, path_values,
                                           "in_progress" in contract.error_codes))
            g.contract_status = answer.get("status")  # for the request metrics
            if not contract.allows(answer):
                _undocumented(answer)
            if answer.get("errorCode"):
                _count_error_answer(contract, answer["errorCode"])
            return jsonify(answer)
        # The OpenAPI builder reads the contract off the view (openapi.build_spec).
        view.contract = contract  # type: ignore[attr-defined]
        return view
    return decorate


def contract_routes(app: Flask) -> list[tuple[str, Rule, EndpointContract]]:
    """(method, rule, contract) of every route of ``app`` served by the wrapper."""
    found = []
    for rule in app.url_map.iter_rules():
        contract = getattr(app.view_functions[rule.endpoint], "contract", None)
        if contract is not None:
            found += [(method, rule, contract)
                      for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return found


def check_path_parameters(app: Flask) -> None:
    """Refuse, at start, a contract route whose path parameter its request schema does
    not declare: the schema would drop the value unseen and the flow never get it."""
    for _, rule, contract in contract_routes(app):
        missing = sorted(set(rule.arguments) - set(contract.request.fields))
        if missing:
            raise TypeError(
                f"route {rule.rule}: path parameter(s) {', '.join(missing)} missing from "
                f"{type(contract.request).__name__}; declare each as a field of the "
                "request schema (the path value wins over a query or body field)")


def answer_budget_left() -> float:
    """Seconds left of the request's answer budget (``BOT_ANSWER_SECONDS`` from its
    arrival, before_request's ``g.started``)."""
    started = g.get("started") or time.perf_counter()
    return started + services().settings.bot_answer_seconds - time.perf_counter()


def _count_error_answer(contract: EndpointContract, error_code: str) -> None:
    """One more answer with ``error_code``; labels stay a closed set (declared codes)."""
    label = error_code if error_code in contract.error_codes else "undocumented"
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    metrics.ERROR_ANSWERS.labels(rule, label).inc()


def _undocumented(answer: dict[str, Any]) -> None:
    log_event("undocumented_answer", logging.WARNING, endpoint=request.path,
              answer_status=answer.get("status"), error_code=answer.get("errorCode"))
    collected = current_app.extensions.get(UNDOCUMENTED_ANSWERS)
    if collected is not None:
        collected.append((request.path, answer.get("status"), answer.get("errorCode")))


def _run(flow: Flow, req: Schema,
         path_values: dict[str, Any], in_progress_ok: bool = False) -> dict[str, Any]:
    try:
        svc = services()
        # A path parameter (``/orders/<orderId>``) is a field of the request schema like
        # any other, and the path wins over a query or body field of the same name.
        values = {**request_values(), **path_values}
        with request_settings(otp_length=svc.settings.otp_length,
                              code_lengths=svc.settings.code_lengths):
            data = req.load(values)
        client_ip = request_client_ip(svc.settings)
        if isinstance(data, FlowRequest):  # the schema's request_type
            data = dataclasses.replace(data, client_ip=client_ip)
        else:  # a schema without one loads a dict
            data["clientIp"] = client_ip
        return dict(flow(svc, data))
    except UnreadableBody as e:
        # Said apart from a field's own errorCode: a wrong Content-Type is not a bad field.
        log_event("request_invalid", endpoint=request.path, error_code="invalid_request",
                  content_type=(request.mimetype or "(none)")[:80], reason=e)
        return {"status": "error", "errorCode": "invalid_request",
                "message": texts.BODY_NOT_READ}
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {}
        status, code = first_error(req, messages)
        log_event("request_invalid", endpoint=request.path, error_code=code,
                  fields=",".join(sorted(messages)))
        return {"status": status, "errorCode": code}
    except FlowRefusal as refusal:
        return {"status": refusal.status, "errorCode": refusal.error_code, **refusal.fields}
    except CrmBusy as busy:
        log_event("crm_busy", logging.WARNING, endpoint=request.path,
                  retry_after=busy.retry_after)
        return {"status": "error", "errorCode": "busy", "retryAfterSec": busy.retry_after}
    except InProgress:
        return {"status": "error", "errorCode": "in_progress"}
    except DeadlineExceeded as e:
        # An upstream did not answer within the request's BOT_ANSWER_SECONDS: a write
        # answers in_progress (the bot repeats it; the repeat answers from what was made),
        # a read crm_unavailable.
        log_event("answer_deadline_reached", logging.WARNING, endpoint=request.path, error=e)
        return {"status": "error",
                "errorCode": "in_progress" if in_progress_ok else "crm_unavailable"}
    except StorageUnavailable as e:
        log_event("storage_unavailable", logging.ERROR, endpoint=request.path, error=e)
        return {"status": "error", "errorCode": "storage_unavailable"}
    except UpstreamError as e:
        log_event("upstream_failed", logging.ERROR, endpoint=request.path, error=e)
        return {"status": "error", "errorCode": "crm_unavailable"}
    except HTTPException:
        raise
    except Exception:  # a bug must still answer the bot with its envelope
        current_app.logger.exception("unhandled error")
        log_event("internal_error", logging.ERROR, endpoint=request.path)
        return {"status": "error", "errorCode": "internal_error"}
