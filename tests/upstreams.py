"""Transport-level doubles (``responses``) of RetailCRM, GreenSMS and the deduper.

Answers are shaped like the real ones (INTEGRATIONS.md): RetailCRM's success envelope,
``customFields`` as ``[]`` when empty, GreenSMS ``{"request_id"}`` / ``{"error","code"}``.
A test sets ``fail`` to make one kind of call answer a given (status, body).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

CRM = "https://crm.test"
SMS = "https://sms.test"
DEDUPE = "https://dedupe.test"

Answer = tuple[int, dict[str, str], str]


def _json(status: int, body: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class Upstreams:
    """All three upstreams on one ``responses`` mock, with call logs and failure switches."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.edits: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, str]] = []
        self.dedupe_calls: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.lose_create_answer = False
        self.offers: list[dict[str, Any]] = []
        self.products: list[dict[str, Any]] = []
        self.calls: list[str] = []  # "METHOD /path" of every CRM call, in order
        self.statuses = {
            code: {"code": code, "name": name, "active": True, "ordering": i, "group": group}
            for i, (code, name, group) in enumerate([
                ("new", "Новый", "new"), ("assembling", "Комплектуется", "assembling"),
                ("send-to-delivery", "Передан в доставку", "delivery"),
                ("complete", "Выполнен", "complete"), ("cancel-other", "Отменён", "cancel")])}
        self.status_groups = {
            code: {"code": code, "name": name, "active": True, "ordering": i,
                   "statuses": [s for s, v in self.statuses.items() if v["group"] == code]}
            for i, (code, name) in enumerate([
                ("new", "Новый"), ("assembling", "Комплектация"), ("delivery", "Доставка"),
                ("complete", "Выполнен"), ("cancel", "Отменен")])}
        self.dedupe_answer: dict[str, Any] = {"status": "resolved", "finalCustomerId": None}
        # kind → (status, body-or-raw-text); kinds: customers, edit, orders, order, create,
        # statuses, offers, products, create_customer, telegram, vk, sms, dedupe
        self.fail: dict[str, tuple[int, Any]] = {}
        self.fail_once: dict[str, tuple[int, Any]] = {}  # the next such call only
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/customers(\?.*)?$"), self._list)
        rsps.add_callback("POST", re.compile(rf"{CRM}/api/v5/customers/(\d+)/edit"), self._edit)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/orders(\?.*)?$"), self._orders)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/orders/([^/?]+)(\?.*)?$"),
                          self._order)
        rsps.add_callback("POST", f"{CRM}/api/v5/customers/create", self._create_customer)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/store/products(\?.*)?$"),
                          self._products)
        rsps.add_callback("POST", f"{CRM}/api/v5/orders/create", self._create_order)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/reference/statuses(\?.*)?$"),
                          self._statuses)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/reference/status-groups(\?.*)?$"),
                          self._status_groups)
        rsps.add_callback("GET", re.compile(rf"{CRM}/api/v5/store/offers(\?.*)?$"), self._offers)
        rsps.add_callback("POST", re.compile(rf"{SMS}/(telegram|vk|sms)/send"), self._send)
        rsps.add_callback("POST", f"{DEDUPE}/api/dedupe/auto-resolve", self._dedupe)

    # -- data -------------------------------------------------------------------------
    def add_customer(self, cid: int, phone: str, **custom_fields: str) -> dict[str, Any]:
        customer = {"id": cid, "firstName": "Тест", "lastName": f"Клиент{cid}",
                    "phones": [{"number": phone}], "customFields": dict(custom_fields) or []}
        self.customers[str(cid)] = customer
        return customer

    def field(self, cid: int, code: str) -> str | None:
        fields = self.customers[str(cid)]["customFields"] or {}
        return fields.get(code)

    def codes_sent(self) -> list[str]:
        return [m["code"] for m in self.sent]

    def add_order(self, oid: int, customer_id: int, *, number: str | None = None,
                  status: str = "new", created: str = "2026-06-01 10:00:00",
                  items: list[tuple[int, str, int]] = ((501, "Миноксидил 5%", 1),),
                  delivery: dict[str, Any] | None = None) -> dict[str, Any]:
        order = {
            "id": oid, "number": number or str(oid), "createdAt": created, "status": status,
            "site": "test-site", "customer": {"id": customer_id, "type": "customer"},
            "firstName": "Иван", "lastName": "Иванов", "phone": "+79991234567",
            "email": "ivan@example.com",
            "items": [{"id": oid * 10 + i, "quantity": qty, "initialPrice": 990,
                       "offer": {"id": offer_id, "externalId": f"ext-{offer_id}",
                                 "xmlId": f"xml-{offer_id}", "name": name, "displayName": name}}
                      for i, (offer_id, name, qty) in enumerate(items)],
        }
        if delivery is not None:
            order["delivery"] = delivery
        self.orders[str(oid)] = order
        return order

    def add_offer(self, offer_id: int, name: str, active: bool = True) -> None:
        self.offers.append({"id": offer_id, "externalId": f"ext-{offer_id}",
                            "xmlId": f"xml-{offer_id}", "name": name, "active": active})

    def add_bundle(self, product_id: int, article: str, *, active: bool = True,
                   offer_active: bool = True) -> None:
        self.products.append({
            "id": product_id, "article": article, "name": f"Набор {article}", "active": active,
            "offers": [{"id": product_id * 10, "externalId": f"ext-{product_id * 10}",
                        "xmlId": "", "article": article, "name": f"Набор {article}",
                        "active": offer_active, "quantity": 5}]})

    def crm_calls(self, prefix: str = "") -> list[str]:
        return [c for c in self.calls if c.startswith(prefix)]

    # -- callbacks --------------------------------------------------------------------
    def _failure(self, kind: str) -> Answer | None:
        if kind in self.fail_once:
            status, body = self.fail_once.pop(kind)
        elif kind in self.fail:
            status, body = self.fail[kind]
        else:
            return None
        if isinstance(body, str):
            return status, {"Content-Type": "text/html"}, body
        return _json(status, body)

    def _log(self, request) -> None:
        self.calls.append(f"{request.method} {urlsplit(request.url).path}")

    def _list(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("customers"):
            return failed
        query = parse_qs(urlsplit(request.url).query)
        found = list(self.customers.values())
        if "filter[name]" in query:
            # Loose on purpose, like RetailCRM: a substring of the phone digits matches.
            needle = _digits(query["filter[name]"][0])[-10:]
            found = [c for c in found if any(needle in _digits(p["number"]) for p in c["phones"])]
        for key, values in query.items():
            if match := re.fullmatch(r"filter\[customFields\]\[(.+)\]", key):
                found = [c for c in found if (c["customFields"] or {}).get(match[1]) == values[0]]
        return _json(200, {"success": True, "pagination": {
            "limit": 20, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1},
            "customers": found})

    def _edit(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("edit"):
            return failed
        cid = re.search(r"/customers/(\d+)/edit", request.url)[1]
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        assert form["by"] == ["id"], "edits by internal id must say by=id"
        changes = json.loads(form["customer"][0])["customFields"]
        self.edits.append((cid, changes))
        customer = self.customers[cid]
        fields = dict(customer["customFields"] or {})
        fields.update(changes)
        customer["customFields"] = {k: v for k, v in fields.items() if v != ""} or []
        return _json(200, {"success": True, "id": int(cid)})

    def _send(self, request) -> Answer:
        route = re.search(r"/(telegram|vk|sms)/send", request.url)[1]
        if failed := self._failure(route):
            return failed
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        code = form["txt"] if route == "telegram" else re.search(r"\d{4,8}", form["txt"])[0]
        self.sent.append({"route": route, "to": form["to"], "code": code, "txt": form["txt"]})
        return _json(200, {"request_id": str(uuid.uuid4())})

    def _dedupe(self, request) -> Answer:
        if failed := self._failure("dedupe"):
            return failed
        self.dedupe_calls.append(json.loads(request.body))
        return _json(200, {**self.dedupe_answer, "requestId": self.dedupe_calls[-1]["requestId"],
                           "warnings": []})

    def _orders(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("orders"):
            return failed
        query = parse_qs(urlsplit(request.url).query)
        found = list(self.orders.values())
        if "filter[customerId]" in query:
            found = [o for o in found if str(o["customer"]["id"]) == query["filter[customerId]"][0]]
        if "filter[numbers][]" in query:
            found = [o for o in found if o["number"] in query["filter[numbers][]"]]
        limit = int(query.get("limit", ["20"])[0])
        if limit not in (20, 50, 100):
            return _json(400, {"success": False, "errorMsg": "Errors in the input parameters",
                               "errors": {"limit": "This value should be 20, 50 or 100."}})
        # RetailCRM's default order is unconfirmed: answer oldest first to catch reliance.
        found.sort(key=lambda o: o["createdAt"])
        return _json(200, {"success": True, "pagination": {
            "limit": limit, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1},
            "orders": found[:limit]})

    def _order(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("order"):
            return failed
        ref = re.search(r"/orders/([^/?]+)", request.url)[1]
        by = parse_qs(urlsplit(request.url).query).get("by", ["externalId"])[0]
        found = [o for o in self.orders.values()
                 if str(o.get("id" if by == "id" else "externalId")) == ref]
        if not found:
            return _json(404, {"success": False, "errorMsg": "Not found"})
        return _json(200, {"success": True, "order": found[0]})

    def _create_order(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("create"):
            return failed
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        order = json.loads(form["order"][0])
        if order.get("externalId") and any(
                o.get("externalId") == order["externalId"] for o in self.orders.values()):
            return _json(400, {"success": False, "errorMsg": "Order is not loaded",
                               "errors": {"externalId": "Order already exists."}})
        if order.get("number") and any(
                o["number"] == order["number"] for o in self.orders.values()):
            return _json(400, {"success": False, "errorMsg": "Order is not loaded",
                               "errors": {"number": "Order with this number already exists"}})
        oid = 900000 + len(self.created)
        self.created.append({**order, "id": oid, "site": form.get("site", [""])[0]})
        order.setdefault("number", f"{oid}A")
        self.orders[str(oid)] = {**order, "id": oid, "createdAt": "2026-07-01 12:00:00"}
        if self.lose_create_answer is True:
            return 504, {"Content-Type": "text/html"}, "<html>Gateway Timeout</html>"
        if self.lose_create_answer == "reject":
            return _json(400, {"success": False, "errorMsg": "Order is not loaded"})
        return _json(201, {"success": True, "id": oid, "order": {"id": oid, **order}})

    def _statuses(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("statuses"):
            return failed
        return _json(200, {"success": True, "statuses": self.statuses})

    def _status_groups(self, request) -> Answer:
        self._log(request)
        return _json(200, {"success": True, "statusGroups": self.status_groups})

    def _offers(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("offers"):
            return failed
        query = parse_qs(urlsplit(request.url).query)
        wanted = {("id", v) for v in query.get("filter[ids][]", [])}
        wanted |= {("externalId", v) for v in query.get("filter[externalIds][]", [])}
        wanted |= {("xmlId", v) for v in query.get("filter[xmlIds][]", [])}
        found = [o for o in self.offers
                 if any((k, str(o.get(k))) in wanted for k in ("id", "externalId", "xmlId"))]
        return _json(200, {"success": True, "pagination": {
            "limit": 20, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1},
            "offers": found})

    def _create_customer(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("create_customer"):
            return failed
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        customer = json.loads(form["customer"][0])
        cid = 700000 + len(self.customers)
        self.customers[str(cid)] = {**customer, "id": cid,
                                    "customFields": customer.get("customFields") or []}
        return _json(201, {"success": True, "id": cid})

    def _products(self, request) -> Answer:
        self._log(request)
        if failed := self._failure("products"):
            return failed
        needle = parse_qs(urlsplit(request.url).query).get("filter[name]", [""])[0].lower()
        # Fuzzy like RetailCRM: a prefix of the article is enough to match.
        found = [p for p in self.products if needle[:6] in p["article"].lower()
                 or needle[:6] in p["name"].lower()]
        return _json(200, {"success": True, "pagination": {
            "limit": 100, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1},
            "products": found})
