"""RetailCRM, GreenSMS and the deduper for unit tests: the sandbox stand-ins, reached
through ``responses`` (mocked at the transport, no socket), starting empty.

The stand-ins answer as the real services do (envelopes, ``customFields: []``, GreenSMS
``request_id``/``error``); this adapter adds the few helpers tests use to arrange data
and read what was called. ``fail``/``fail_once`` make one kind of call answer a given
(status, JSON body or raw text): customers, edit, orders, order, create, statuses,
offers, products, create_customer, telegram, vk, sms, dedupe.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import responses

from gurugrow.sandbox.data import demo_data
from gurugrow.sandbox.standins import create_standins_app

CRM = "https://crm.test"
SMS = "https://sms.test"
DEDUPE = "https://dedupe.test"


def _empty_data() -> dict[str, Any]:
    reference = demo_data()
    return {"statuses": reference["statuses"], "statusGroups": reference["statusGroups"],
            "customFields": reference["customFields"],
            "sites": ["test-site", "1minoxidil-ru"]}


class Upstreams:
    """The stand-ins on a ``responses`` mock, plus arrange/inspect helpers."""

    def __init__(self, rsps: responses.RequestsMock, data: dict[str, Any] | None = None
                 ) -> None:
        """``data``: what the stand-ins start with (default: nothing but references)."""
        self.app = create_standins_app(data or _empty_data(), rate_limit_per_second=0)
        self.state = self.app.extensions["sandbox_state"]
        self._client = self.app.test_client()
        # "METHOD /path" → seconds the upstream takes to answer it (a real call's time).
        self.delay: dict[str, float] = {}
        for base, mount in ((CRM, "/retailcrm"), (SMS, "/greensms"), (DEDUPE, "/deduper")):
            for method in ("GET", "POST"):
                rsps.add_callback(method, re.compile(re.escape(base) + r"/.*"),
                                  self._forward(base, mount))

    def _forward(self, base: str, mount: str):
        def callback(request) -> tuple[int, dict[str, str], bytes]:
            parts = urlsplit(request.url)
            if pause := self.delay.get(f"{request.method} {parts.path}"):
                time.sleep(pause)
            body = request.body.encode() if isinstance(request.body, str) else request.body
            response = self._client.open(
                mount + parts.path, method=request.method, query_string=parts.query,
                headers=dict(request.headers), data=body or b"")
            headers = {"Content-Type": response.content_type}
            if "Retry-After" in response.headers:
                headers["Retry-After"] = response.headers["Retry-After"]
            return response.status_code, headers, response.data
        return callback

    # -- arrange ----------------------------------------------------------------------
    def add_customer(self, cid: int, phone: str, **custom_fields: str) -> dict[str, Any]:
        customer = {"id": cid, "firstName": "Тест", "lastName": f"Клиент{cid}",
                    "phones": [{"number": phone}], "customFields": dict(custom_fields) or []}
        self.state.customers[str(cid)] = customer
        return customer

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
        self.state.orders[str(oid)] = order
        return order

    def add_offer(self, offer_id: int, name: str, active: bool = True) -> None:
        offer = {"id": offer_id, "externalId": f"ext-{offer_id}", "xmlId": f"xml-{offer_id}",
                 "article": f"ART-{offer_id}", "name": name, "active": active, "quantity": 5}
        self.state.products.append({"id": offer_id, "article": offer["article"], "name": name,
                                    "active": True, "offers": [offer]})

    def add_bundle(self, product_id: int, article: str, *, active: bool = True,
                   offer_active: bool = True) -> None:
        self.state.products.append({
            "id": product_id, "article": article, "name": f"Набор {article}", "active": active,
            "offers": [{"id": product_id * 10, "externalId": f"ext-{product_id * 10}",
                        "xmlId": "", "article": article, "name": f"Набор {article}",
                        "active": offer_active, "quantity": 5}]})

    @property
    def offers(self) -> list[dict[str, Any]]:
        return [o for p in self.state.products for o in p["offers"]]

    @offers.setter
    def offers(self, keep: list[dict[str, Any]]) -> None:
        for product in self.state.products:
            product["offers"] = [o for o in product["offers"] if o in keep]

    @property
    def dedupe_answer(self) -> dict[str, Any] | None:
        return self.state.dedupe_default

    @dedupe_answer.setter
    def dedupe_answer(self, answer: dict[str, Any]) -> None:
        self.state.dedupe_default = answer

    @property
    def lose_create_answer(self) -> bool | int:
        return self.state.lose_create_answer

    @lose_create_answer.setter
    def lose_create_answer(self, value: bool | int) -> None:
        self.state.lose_create_answer = value

    # -- inspect ----------------------------------------------------------------------
    @property
    def customers(self) -> dict[str, dict[str, Any]]:
        return self.state.customers

    @property
    def fail(self) -> dict[str, tuple[int, Any]]:
        return self.state.fail

    @property
    def fail_once(self) -> dict[str, tuple[int, Any]]:
        return self.state.fail_once

    @property
    def edits(self) -> list[tuple[str, dict[str, Any]]]:
        return self.state.edits

    @property
    def created(self) -> list[dict[str, Any]]:
        return self.state.created_orders

    @property
    def dedupe_calls(self) -> list[dict[str, Any]]:
        return self.state.dedupe_calls

    @property
    def calls(self) -> list[str]:
        return self.state.calls

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Messages GreenSMS accepted, oldest first."""
        return list(reversed(self.state.outbox))

    def codes_sent(self) -> list[str]:
        return [m["code"] for m in self.sent]

    def field(self, cid: int, code: str) -> str | None:
        fields = self.state.customers[str(cid)]["customFields"] or {}
        return fields.get(code)

    def crm_calls(self, prefix: str = "") -> list[str]:
        return [c for c in self.calls if c.startswith(prefix)]
