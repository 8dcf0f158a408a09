"""Stand-ins of RetailCRM v5, GreenSMS and the deduper, served over real HTTP.

They answer as the real services do (INTEGRATIONS.md), quirks included: RetailCRM's
``success/errorMsg/errors`` envelope, ``customFields`` as ``[]`` when empty, JSON-string
form fields, 503 past the rate limit, unknown offers accepted as free-form lines, a new
customer when an order names none; GreenSMS ``{"request_id"}`` / ``{"error","code"}``.
The state is one ``SandboxState``; tests reach it to inject failures and inspect calls.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from gurugrow.logs import begin_request
from gurugrow.sandbox import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY
from gurugrow.sandbox.data import demo_data

PAGE_SIZES = (20, 50, 100)
CRM_SCOPES = ("customer_read", "customer_write", "order_read", "order_write", "store_read",
              "reference_read", "custom_fields_read", "custom_fields_write")
Answer = tuple[Any, int]


def digits(text: Any) -> str:
    return "".join(ch for ch in str(text) if ch.isdigit())


def phone_key(text: Any) -> str:
    """Stored phone → comparable digits (8… and 10-digit Russian numbers → 7…)."""
    d = digits(text)
    if len(d) == 11 and d[0] == "8":
        return "7" + d[1:]
    return "7" + d if len(d) == 10 else d


class SandboxState:
    """Everything the stand-ins know and remember; thread-safe."""

    def __init__(self, data: dict[str, Any] | None = None, *, rate_limit_per_second: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 on_message: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.rate_limit = rate_limit_per_second
        self.latency = 0.0
        self.clock = clock
        self.on_message = on_message
        self._initial = data
        self.reset()

    def reset(self) -> None:
        """Back to the demo data (or the data given), with empty logs and no failures."""
        with self.lock:
            data = json.loads(json.dumps(self._initial)) if self._initial else demo_data()
            self.customers = {str(c["id"]): c for c in data.get("customers", [])}
            self.orders = {str(o["id"]): o for o in data.get("orders", [])}
            self.products = data.get("products", [])
            self.statuses = data.get("statuses", {})
            self.status_groups = data.get("statusGroups", {})
            self.custom_fields = data.get("customFields", [])
            self.dedupe_answers = data.get("dedupe", {})
            self.telegram_failing = set(data.get("telegramFailingPhones", []))
            # Delivery status: Telegram sends to these phones are accepted but never
            # delivered, or delivered only so many seconds after the send.
            self.telegram_undelivered = set(data.get("telegramUndeliveredPhones", []))
            self.telegram_late: dict[str, float] = dict(data.get("telegramLatePhones", {}))
            # request_id → the status word GreenSMS answers for it (tests pin one here).
            self.delivery_statuses: dict[str, str] = {}
            self.status_calls: list[str] = []  # request ids asked about, in order
            self.sites = data.get("sites", [])
            # /api/credentials: what the key may do (tests narrow these).
            self.scopes: list[str] = list(data.get("scopes", CRM_SCOPES))
            self.site_access: str = data.get("siteAccess", "access_full")
            self.sms_balance = "1000.00"
            self.dedupe_default: dict[str, Any] | None = None
            self.outbox: deque[dict[str, Any]] = deque(maxlen=200)
            self.calls: list[str] = []
            self.edits: list[tuple[str, dict[str, Any]]] = []
            self.created_orders: list[dict[str, Any]] = []  # as the client sent them
            self.dedupe_calls: list[dict[str, Any]] = []
            # kind → (HTTP status, JSON body or raw text): that kind of call fails.
            self.fail: dict[str, tuple[int, Any]] = {}
            self.fail_once: dict[str, tuple[int, Any]] = {}
            self.delay: dict[str, float] = {}  # kind → seconds to wait before answering
            self.messages_sent = 0
            self.lose_create_answer = False
            self._window: deque[float] = deque()
            self.refused_over_rate = 0  # calls answered 503 for going over the rate limit
            self._next_id = 900000

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    def failure(self, kind: str) -> Answer | None:
        """The injected answer for this kind of call, if any (after an injected delay)."""
        if kind in self.delay:
            time.sleep(self.delay[kind])
        with self.lock:
            spec = self.fail_once.pop(kind, None) or self.fail.get(kind)
        if spec is None:
            return None
        status, body = spec
        if isinstance(body, str):
            return current_app.response_class(body, status, mimetype="text/html"), status
        return jsonify(body), status

    def delivery_status(self, route: str, request_id: str) -> str | None:
        """The status word of one accepted send (None: no such send by that route).

        Pinned words first; then Telegram's undelivered and late demo phones; every
        other send reads as delivered. The words are the stand-in's guess: GreenSMS's
        real vocabulary is unconfirmed (see gateways/greensms.py)."""
        with self.lock:
            self.status_calls.append(request_id)
            message = next((m for m in self.outbox if m["request_id"] == request_id
                            and m["route"] == route), None)
            pinned = self.delivery_statuses.get(request_id)
        if message is None:
            return None
        if pinned:
            return pinned
        if route == "telegram" and message["to"] in self.telegram_undelivered:
            return "undelivered"
        late = self.telegram_late.get(message["to"]) if route == "telegram" else None
        if late is not None and self.clock() - message["clock"] < late:
            return "sent"
        return "delivered"

    def over_rate_limit(self) -> bool:
        if self.rate_limit <= 0:
            return False
        with self.lock:
            now = self.clock()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                self.refused_over_rate += 1
                return True
            self._window.append(now)
            return False

    def record_message(self, route: str, to: str, txt: str) -> dict[str, Any]:
        code = txt if route == "telegram" else (re.search(r"\d{4,8}", txt) or [""])[0]
        message = {"route": route, "to": to, "txt": txt, "code": code,
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "request_id": str(uuid.uuid4()), "clock": self.clock()}
        with self.lock:
            self.outbox.appendleft(message)
            self.messages_sent += 1
        if self.on_message:
            self.on_message(message)
        return message


def state() -> SandboxState:
    return current_app.extensions["sandbox_state"]


def _crm_error(status: int, message: str, errors: Any = None) -> Answer:
    body: dict[str, Any] = {"success": False, "errorMsg": message}
    if errors is not None:
        body["errors"] = errors
    return jsonify(body), status


def _ok(**payload: Any) -> Answer:
    return jsonify({"success": True, **payload}), 200


def _page(items: list[dict[str, Any]], key: str) -> Answer:
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or int(limit) not in PAGE_SIZES:
        return _crm_error(400, "Errors in the input parameters",
                          {"limit": "This value should be 20, 50 or 100."})
    size, page = int(limit), max(int(request.args.get("page", "1") or 1), 1)
    chunk = items[(page - 1) * size: page * size]
    total_pages = max((len(items) + size - 1) // size, 1)
    return _ok(pagination={"limit": size, "totalCount": len(items), "currentPage": page,
                           "totalPageCount": total_pages}, **{key: chunk})


def _form_json(name: str) -> dict[str, Any]:
    raw = request.form.get(name)
    if raw is None:
        raise ValueError(f"Parameter '{name}' is missing")
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"Parameter '{name}' must be an object")
    return value


def _fields(entity: dict[str, Any]) -> dict[str, Any]:
    fields = entity.get("customFields")
    return fields if isinstance(fields, dict) else {}


# -- RetailCRM ------------------------------------------------------------------------
crm = Blueprint("retailcrm", __name__, url_prefix="/retailcrm")


@crm.before_request
def _crm_gate():
    st = state()
    with st.lock:
        st.calls.append(f"{request.method} {request.path.removeprefix('/retailcrm')}")
    if request.headers.get("X-API-KEY") != SANDBOX_RETAILCRM_KEY:
        return _crm_error(403, 'Wrong "apiKey" value.')
    if st.over_rate_limit():
        return _crm_error(503, "Rate limit exceeded: 10 requests per second")
    return None


@crm.errorhandler(ValueError)
def _bad_json(error: ValueError):
    return _crm_error(400, f"Errors in the input parameters: {error}")


@crm.get("/api/credentials")
def credentials():
    st = state()
    if failed := st.failure("credentials"):
        return failed
    return _ok(scopes=list(st.scopes), siteAccess=st.site_access, sitesAvailable=st.sites)


@crm.get("/api/v5/customers")
def customers():
    if failed := state().failure("customers"):
        return failed
    found = list(state().customers.values())
    if needle := request.args.get("filter[name]", "").strip().lower():
        # Loose like the real one: a substring of a name, or of the phone digits.
        needle_digits = digits(needle)[-10:]
        found = [c for c in found if (
            len(needle_digits) >= 5
            and any(needle_digits in phone_key(p.get("number")) for p in c.get("phones", []))
        ) or needle in f"{c.get('firstName', '')} {c.get('lastName', '')}".lower()]
    for key, value in request.args.items():
        if match := re.fullmatch(r"filter\[customFields\]\[(.+)\]", key):
            found = [c for c in found if str(_fields(c).get(match[1], "")) == value]
    if ids := request.args.getlist("filter[ids][]"):
        found = [c for c in found if str(c["id"]) in ids]
    return _page(found, "customers")


@crm.get("/api/v5/customers/<ref>")
def customer(ref: str):
    found = _find_customer(ref)
    return _ok(customer=found) if found else _crm_error(404, "Not found")


def _find_customer(ref: str) -> dict[str, Any] | None:
    by = request.values.get("by", "externalId")
    for c in state().customers.values():
        if str(c.get("id" if by == "id" else "externalId")) == ref:
            return c
    return None


@crm.post("/api/v5/customers/<ref>/edit")
def edit_customer(ref: str):
    st = state()
    if failed := st.failure("edit"):
        return failed
    changes = _form_json("customer")
    with st.lock:
        found = _find_customer(ref)
        if found is None:
            return _crm_error(404, "Not found")
        new_fields = changes.pop("customFields", None)
        found.update(changes)
        if isinstance(new_fields, dict):
            st.edits.append((str(found["id"]), new_fields))
            merged = {**_fields(found), **new_fields}
            # An empty value removes the field; none left → [] as RetailCRM sends it.
            found["customFields"] = {k: v for k, v in merged.items() if v not in ("", None)} or []
    return _ok(id=found["id"])


@crm.post("/api/v5/customers/create")
def create_customer():
    st = state()
    if failed := st.failure("create_customer"):
        return failed
    data = _form_json("customer")
    return _ok(id=_add_customer(st, data)["id"])


def _add_customer(st: SandboxState, data: dict[str, Any]) -> dict[str, Any]:
    with st.lock:
        created = {**data, "id": st.new_id(), "customFields": data.get("customFields") or []}
        st.customers[str(created["id"])] = created
    return created


@crm.get("/api/v5/orders")
def orders():
    if failed := state().failure("orders"):
        return failed
    found = list(state().orders.values())
    if customer_id := request.args.get("filter[customerId]"):
        found = [o for o in found if str((o.get("customer") or {}).get("id")) == customer_id]
    if numbers := request.args.getlist("filter[numbers][]"):
        found = [o for o in found if o.get("number") in numbers]
    if ids := request.args.getlist("filter[ids][]"):
        found = [o for o in found if str(o["id"]) in ids]
    # The real default order is unconfirmed: oldest first keeps clients honest.
    found.sort(key=lambda o: o.get("createdAt", ""))
    return _page(found, "orders")


@crm.get("/api/v5/orders/<ref>")
def order(ref: str):
    if failed := state().failure("order"):
        return failed
    by = request.args.get("by", "externalId")
    for o in list(state().orders.values()):  # other threads add orders meanwhile
        if str(o.get("id" if by == "id" else "externalId")) == ref:
            return _ok(order=o)
    return _crm_error(404, "Not found")


@crm.post("/api/v5/orders/create")
def create_order():
    st = state()
    if failed := st.failure("create"):
        return failed
    data = _form_json("order")
    with st.lock:
        for key, label in (("number", "number"), ("externalId", "externalId")):
            if data.get(key) and any(o.get(key) == data[key] for o in st.orders.values()):
                return _crm_error(400, "Order is not loaded",
                                  {label: f"Order with this {label} already exists"})
        if not (data.get("customer") or {}).get("id"):
            # Quirk: an order without a customer silently creates one.
            data["customer"] = {"id": _add_customer(st, {
                "firstName": data.get("firstName", ""), "lastName": data.get("lastName", ""),
                "phones": [{"number": data["phone"]}] if data.get("phone") else []})["id"]}
        oid = st.new_id()
        site = request.form.get("site", "")
        st.created_orders.append({**json.loads(json.dumps(data)), "id": oid, "site": site})
        created = {**data, "id": oid, "number": data.get("number") or f"{oid}A", "site": site,
                   "items": [_resolve_item(item) for item in data.get("items") or []],
                   "createdAt": time.strftime("%Y-%m-%d %H:%M:%S")}
        st.orders[str(oid)] = created
        lose = st.lose_create_answer
    if lose:  # the order exists but the answer never arrives
        return current_app.response_class("<html>504 Gateway Time-out</html>", 504,
                                          mimetype="text/html"), 504
    return jsonify({"success": True, "id": oid, "order": created}), 201


def _resolve_item(item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("offer") or {}
    for offer in _all_offers():
        if any(ref.get(k) and str(ref[k]) == str(offer.get(k))
               for k in ("id", "externalId", "xmlId")):
            return {**item, "offer": offer}
    # Quirk: an unknown offer is no error, the line becomes a free-form item.
    return {"quantity": item.get("quantity", 1), "productName": item.get("productName")
            or "Товар", "offer": None, "initialPrice": item.get("initialPrice", 0)}


def _all_offers() -> list[dict[str, Any]]:
    return [offer for p in state().products for offer in p.get("offers") or []]


@crm.get("/api/v5/reference/statuses")
def statuses():
    return state().failure("statuses") or _ok(statuses=state().statuses)


@crm.get("/api/v5/reference/status-groups")
def status_groups():
    return _ok(statusGroups=state().status_groups)


@crm.get("/api/v5/store/offers")
def offers():
    if failed := state().failure("offers"):
        return failed
    found = _all_offers()
    for kind, key in (("ids", "id"), ("externalIds", "externalId"), ("xmlIds", "xmlId")):
        if wanted := request.args.getlist(f"filter[{kind}][]"):
            found = [o for o in found if str(o.get(key)) in wanted]
    return _page(found, "offers")


@crm.get("/api/v5/store/products")
def products():
    if failed := state().failure("products"):
        return failed
    found = state().products
    if needle := request.args.get("filter[name]", "").strip().lower():
        # Fuzzy like the real one: a substring of name, article or an offer's article.
        found = [p for p in found if needle in p.get("name", "").lower()
                 or needle in p.get("article", "").lower()
                 or any(needle in (o.get("article") or "").lower() for o in p.get("offers", []))]
    if request.args.get("filter[active]") in ("0", "1"):
        want = request.args["filter[active]"] == "1"
        found = [p for p in found if bool(p.get("active")) == want]
    return _page(found, "products")


@crm.get("/api/v5/custom-fields")
def custom_fields():
    if failed := state().failure("custom_fields"):
        return failed
    entity = request.args.get("filter[entity]")
    found = [f for f in state().custom_fields if not entity or f["entity"] == entity]
    return _page(found, "customFields")


@crm.post("/api/v5/custom-fields/<entity>/create")
def create_custom_field(entity: str):
    if failed := state().failure("create_custom_field"):
        return failed
    field = _form_json("customField")
    if not field.get("code") or not field.get("name"):
        return _crm_error(400, "Errors in the entity format", {"code": "Required"})
    with state().lock:
        if any(f["code"] == field["code"] for f in state().custom_fields):
            return _crm_error(400, "Custom field with this code already exists")
        state().custom_fields.append({**field, "entity": entity})
    return _ok(code=field["code"])


@crm.route("/<path:rest>", methods=["GET", "POST"])
def crm_unknown(rest: str):
    return _crm_error(404, "API method not found")


# -- GreenSMS -------------------------------------------------------------------------
sms = Blueprint("greensms", __name__, url_prefix="/greensms")


def _sms_params() -> dict[str, str]:
    if request.is_json:
        body = request.get_json(silent=True)
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return request.form.to_dict()


def _bearer_ok() -> bool:
    return request.headers.get("Authorization") == f"Bearer {SANDBOX_GREENSMS_TOKEN}"


@sms.post("/account/token")
def account_token():
    """user/pass (body) → a token; the sandbox hands out its one token."""
    params = _sms_params()
    if (params.get("user"), params.get("pass")) != ("sandbox", "sandbox"):
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    return jsonify({"access_token": SANDBOX_GREENSMS_TOKEN}), 200


@sms.get("/account/balance")
def account_balance():
    st = state()
    if not _bearer_ok():
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    if failed := st.failure("balance"):
        return failed
    return jsonify({"balance": st.sms_balance}), 200


@sms.post("/<route>/send")
def send(route: str):
    st = state()
    params = _sms_params()
    bearer = request.headers.get("Authorization") == f"Bearer {SANDBOX_GREENSMS_TOKEN}"
    if not bearer and (params.get("user"), params.get("pass")) != ("sandbox", "sandbox"):
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    if route not in ("sms", "telegram", "vk"):
        return jsonify({"error": "Method not found", "code": 1}), 404
    if failed := st.failure(route):
        return failed
    to, txt = params.get("to", ""), params.get("txt", "")
    problem = _sms_problem(route, to, txt, params)
    if problem:
        return jsonify({"error": problem, "code": 2, "params": {}}), 200
    if route == "telegram" and to in st.telegram_failing:
        return jsonify({"error": "Telegram is not available for this number", "code": 2}), 200
    return jsonify({"request_id": st.record_message(route, to, txt)["request_id"]}), 200


@sms.get("/<route>/status")
def delivery_status(route: str):
    """``GET /<route>/status?id=<request_id>&extended=true`` → ``{"request_id", "status"}``
    (the real answer's shape is unconfirmed; the gateway reads it defensively)."""
    st = state()
    if not _bearer_ok():
        return jsonify({"error": "Authorization declined", "code": 0}), 401
    if route not in ("sms", "telegram", "vk"):
        return jsonify({"error": "Method not found", "code": 1}), 404
    if failed := st.failure("status"):
        return failed
    request_id = request.args.get("id", "")
    if not request_id:
        return jsonify({"error": "Validation error: id is required", "code": 1}), 200
    word = st.delivery_status(route, request_id)
    if word is None:
        return jsonify({"error": "Message not found", "code": 2}), 200
    return jsonify({"request_id": request_id, "status": word}), 200


def _sms_problem(route: str, to: str, txt: str, params: dict[str, str]) -> str | None:
    if not (to.isdigit() and 11 <= len(to) <= 14):
        return "Validation error: to must be 11-14 digits"
    if route == "telegram" and not (txt.isdigit() and 4 <= len(txt) <= 8):
        return "Validation error: txt must be a 4-8 digit code"
    if not txt or len(txt) > (918 if route == "sms" else 2048):
        return "Validation error: txt"
    if route == "vk" and not params.get("from"):
        return "Validation error: from is required"
    return None


# -- deduper --------------------------------------------------------------------------
dedupe = Blueprint("deduper", __name__, url_prefix="/deduper")


@dedupe.post("/api/dedupe/auto-resolve")
def auto_resolve():
    st = state()
    if request.headers.get("X-API-Key") != SANDBOX_DEDUPE_KEY:
        return jsonify({"detail": "Invalid API key"}), 401
    if failed := st.failure("dedupe"):
        return failed
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body.get("phone"):
        return jsonify({"detail": "phone is required"}), 422
    with st.lock:
        st.dedupe_calls.append(body)
    phone = phone_key(body["phone"])
    answer = st.dedupe_answers.get(phone) or st.dedupe_default
    if answer is None:
        owners = [c for c in st.customers.values()
                  if any(phone_key(p.get("number")) == phone for p in c.get("phones", []))]
        answer = ({"status": "single", "finalCustomerId": str(owners[0]["id"])}
                  if len(owners) == 1 else {"status": "not_found", "finalCustomerId": None})
    return jsonify({**answer, "requestId": body.get("requestId"), "warnings": []})


# -- sandbox control ------------------------------------------------------------------
control = Blueprint("control", __name__)


@control.get("/outbox")
def outbox():
    return jsonify({"messages": list(state().outbox)})


@control.get("/stats")
def stats():
    """Requests each stand-in served so far (the benchmark's upstream-call counts)."""
    st = state()
    return jsonify({"retailcrm": len(st.calls), "greensms": st.messages_sent,
                    "deduper": len(st.dedupe_calls),
                    "retailcrm_over_rate_limit": st.refused_over_rate})


@control.post("/seed-orders")
def seed_orders():
    """Copies of one order (``from``) for one customer, ``count`` times: distinct orders to
    repeat in the benchmark. Answers the new ids."""
    st = state()
    template = st.orders.get(request.args.get("from", ""))
    if template is None:
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    ids = []
    with st.lock:
        for _ in range(min(int(request.args.get("count", "1")), 10000)):
            oid = st.new_id()
            st.orders[str(oid)] = {**template, "id": oid, "number": f"S{oid}"}
            ids.append(oid)
    return jsonify({"ids": ids})


@control.post("/seed-customers")
def seed_customers():
    """``count`` customers, each bound to its own Telegram account and owning a copy of
    order ``from``: a broadcast's audience for the benchmark. Answers the account ids."""
    st = state()
    template = st.orders.get(request.args.get("from", ""))
    if template is None:
        return jsonify({"status": "error", "errorCode": "not_found"}), 404
    field = request.args.get("field", "bot_telegram_account_id")
    accounts = []
    with st.lock:
        for _ in range(min(int(request.args.get("count", "1")), 10000)):
            cid = st.new_id()
            account = f"seeded-{cid}"
            st.customers[str(cid)] = {
                "id": cid, "firstName": "Подписчик", "phones": [{"number": f"+7999{cid:07d}"}],
                "customFields": {field: account, "chatbot_interacted": "true"}}
            oid = st.new_id()
            st.orders[str(oid)] = {**template, "id": oid, "number": f"S{oid}",
                                   "customer": {"id": cid, "type": "customer"}}
            accounts.append(account)
    return jsonify({"accounts": accounts})


@control.post("/reset")
def reset():
    state().reset()
    return jsonify({"status": "reset"})


def create_standins_app(data: dict[str, Any] | None = None, *, rate_limit_per_second: int = 10,
                        clock: Callable[[], float] = time.monotonic,
                        on_message: Callable[[dict[str, Any]], None] | None = None) -> Flask:
    """The three stand-ins and the sandbox control routes, as one WSGI app."""
    app = Flask(__name__)
    app.json.ensure_ascii = False
    app.extensions["sandbox_state"] = SandboxState(
        data, rate_limit_per_second=rate_limit_per_second, clock=clock, on_message=on_message)
    for blueprint in (crm, sms, dedupe, control):
        app.register_blueprint(blueprint)

    @app.before_request
    def _adopt_request_id() -> None:
        begin_request(request.headers.get("X-Request-ID"))
        if app.extensions["sandbox_state"].latency:  # a fixed upstream latency (benchmark)
            time.sleep(app.extensions["sandbox_state"].latency)

    @app.errorhandler(404)
    def not_found(_error):
        return jsonify({"status": "error", "errorCode": "not_found"}), 404

    return app


def standins_from_env() -> Flask:
    """The stand-ins as a WSGI app for their own server process (the benchmark):
    SANDBOX_LATENCY_MS delays every answer, SANDBOX_RATE_LIMIT (0: off) per second."""
    app = create_standins_app(rate_limit_per_second=int(os.environ.get("SANDBOX_RATE_LIMIT", "0")))
    latency_ms = float(os.environ.get("SANDBOX_LATENCY_MS", "0"))
    app.extensions["sandbox_state"].latency = latency_ms / 1000
    return app
