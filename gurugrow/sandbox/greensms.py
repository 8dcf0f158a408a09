"""The GreenSMS stand-in: token, balance, a send by every module of gurugrow/routes.py,
and delivery status; ``{"request_id"}`` on success (a flash call's ``call/send`` adds its
``code``, as greensms-node's e2e test reads it), ``{"error", "code"}`` on refusal, as
GreenSMS does. Each module checks its fields as greensms-php ``Schema.php`` does."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gurugrow.routes import NUMBER_TO_CALL, ROUTES, THEIR_CODE, Route
from gurugrow.sandbox import SANDBOX_GREENSMS_TOKEN
from gurugrow.sandbox.state import state

sms = Blueprint("greensms", __name__, url_prefix="/greensms")


def _sms_params() -> dict[str, str]:
    if request.is_json:
        body = request.get_json(silent=True)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return request.form.to_dict()


def _bearer_ok() -> bool:
    return request.headers.get("Authorization") == f"Bearer {SANDBOX_GREENSMS_TOKEN}"


def _password_ok(params: dict[str, str]) -> bool:
    """The sandbox's one user/pass pair (GreenSMS also takes these in place of a token)."""
    return (params.get("user"), params.get("pass")) == ("sandbox", "sandbox")


@sms.post("/account/token")
def account_token() -> ResponseReturnValue:
    """user/pass (body) → a token; the sandbox hands out its one token."""
    params = _sms_params()
    if not _password_ok(params):
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    return jsonify({"access_token": SANDBOX_GREENSMS_TOKEN}), 200


@sms.get("/account/balance")
def account_balance() -> ResponseReturnValue:
    st = state()
    if not _bearer_ok():
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    if failed := st.failure("balance"):
        return failed
    return jsonify({"balance": st.sms_balance}), 200


def _module_route(module: str, action: str = "send") -> Route | None:
    """The route a module's send (or receive) serves (gurugrow/routes.py)."""
    return next((r for r in ROUTES.values() if r.module == module and r.action == action),
                None)


@sms.post("/<route>/<action>")
def send(route: str, action: str) -> ResponseReturnValue:
    st = state()
    params = _sms_params()
    if not (_bearer_ok() or _password_ok(params)):
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    declared = _module_route(route, action)
    if declared is None:
        return jsonify({"error": "Method not found", "code": 1}), 404
    route = declared.name
    with st.lock:
        st.send_attempts.append(route)
    if failed := st.failure(route):
        return failed
    to, txt = params.get("to", ""), params.get("txt", "")
    problem = _sms_problem(declared, to, txt, params)
    if problem:
        return jsonify({"error": problem, "code": 2, "params": {}}), 200
    if route == "telegram" and to in st.telegram_failing:
        return jsonify({"error": "Telegram is not available for this number", "code": 2}), 200
    if declared.sends == NUMBER_TO_CALL:
        # call/receive: the number the customer calls (greensms-node e2e: ``number``).
        message = st.record_number_to_call(route, to)
        st.answer_late(route)
        return jsonify({"request_id": message["request_id"], "number": message["number"]}), 200
    if declared.sends == THEIR_CODE:
        # A flash call: the code is the last digits of the number that calls.
        message = st.record_call(route, to, declared.code_length or 4)
        st.answer_late(route)
        return jsonify({"request_id": message["request_id"], "code": message["code"]}), 200
    request_id = st.record_message(route, to, txt)["request_id"]
    st.answer_late(route)
    return jsonify({"request_id": request_id}), 200


# The code GreenSMS answers with each word. ASSUMED: no source pairs them; this is the
# listing order and the SMSC delivery-report bits (UPSTREAM-FACTS.md, "word <-> code").
STATUS_CODES = {"Status not ready": 0, "Delivery success": 1, "Delivery failure": 2,
                "Message read": 3, "Message buffered": 4, "Delivery accepted": 8,
                "Delivery rejected": 16, "Status request expired": 34}


@sms.get("/<route>/status")
def delivery_status(route: str) -> ResponseReturnValue:
    """``GET /<route>/status?id=<request_id>&extended=true`` → ``{"time", "status",
    "status_code"}`` (node SDK typings); an unknown id is ``Message not found``."""
    st = state()
    if not _bearer_ok():
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    names = {r.name for r in ROUTES.values() if r.module == route}
    if not names:
        return jsonify({"error": "Method not found", "code": 1}), 404
    if failed := st.failure("status"):
        return failed
    request_id = request.args.get("id", "")
    if len(request_id) != 36:
        return jsonify({"error": "Validation error: id must be 36 characters", "code": 2,
                        "params": {}}), 200
    word = st.delivery_status(names, request_id)
    if word is None:
        return jsonify({"error": "Message not found", "code": 404}), 200
    answer: dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "status": word}
    if word in STATUS_CODES:  # a word of a test's own (not GreenSMS's) carries no code
        answer["status_code"] = STATUS_CODES[word]
    return jsonify(answer), 200


def _sms_problem(declared: Route, to: str, txt: str, params: dict[str, str]
                 ) -> str | None:
    """GreenSMS's validation of one send (greensms-php Schema.php, per module)."""
    if not (to.isdigit() and 11 <= len(to) <= 14):
        return "Validation error: to must be 11-14 digits"
    if declared.txt == "code" and not (txt.isdigit() and 1 <= len(txt) <= declared.max_txt):
        return f"Validation error: txt must be 1-{declared.max_txt} digits"
    if declared.txt and (not txt or len(txt) > declared.max_txt):
        return "Validation error: txt"
    if declared.txt == "" and txt:
        return "Validation error: txt is not allowed"
    if declared.sender_required and not params.get("from"):
        return "Validation error: from is required"
    if declared.max_from and len(params.get("from", "")) > declared.max_from:
        return f"Validation error: from must be 1-{declared.max_from} characters"
    return None

