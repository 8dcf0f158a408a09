"""What the stand-ins know and remember (``SandboxState``), and the helpers every
stand-in shares: the state of the current app, injected failures, phone digits."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, jsonify

from gurugrow.sandbox.data import demo_data

CRM_SCOPES = ("customer_read", "customer_write", "order_read", "order_write", "store_read",
              "reference_read", "custom_fields_read", "custom_fields_write")
Answer = tuple[Any, int]


def digits(text: Any) -> str:
    """The digits of ``text``, in order."""
    return "".join(ch for ch in str(text) if ch.isdigit())


def phone_key(text: Any) -> str:
    """Stored phone → comparable digits (8… and 10-digit Russian numbers → 7…)."""
    d = digits(text)
    if len(d) == 11 and d[0] == "8":
        return "7" + d[1:]
    return "7" + d if len(d) == 10 else d


# What an order is looked up by besides its id (SandboxState.orders_by).
ORDER_INDEX_KEYS = ("number", "externalId")


class SandboxState:
    """Everything the stand-ins know and remember; thread-safe."""

    def __init__(self, data: dict[str, Any] | None = None, *, rate_limit_per_second: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 on_message: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.rate_limit = rate_limit_per_second
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
            self._order_index: dict[tuple[str, str], list[str]] = {}
            self._orders_indexed = 0
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
            self.send_attempts: list[str] = []  # the route of every send asked, refused too
            self.sites = data.get("sites", [])  # the key's sites (/api/credentials)
            # The account's stores (/reference/sites), whatever the key may use.
            self.account_sites: list[str] = list(data.get("accountSites", self.sites))
            # The account's time zone (GET /api/v5/settings): its dates are local there.
            self.timezone: str = data.get("timezone", "Europe/Moscow")
            self.orders_newest_first = bool(data.get("ordersNewestFirst", False))
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
            # kind → seconds to wait after the call took effect, before answering (a slow
            # answer of a send that was made)
            self.delay_after: dict[str, float] = {}
            self.messages_sent = 0
            self.lose_create_answer: bool | int = False  # True (504) or an HTTP status
            self._window: deque[float] = deque()
            self.refused_over_rate = 0  # calls answered 503 for going over the rate limit
            self._next_id = 900000
            # /api/v5/{customers,orders}/history: every change the stand-in saw, oldest
            # first (RetailCRM's own records; ids grow by one across both kinds).
            self.history: dict[str, list[dict[str, Any]]] = {"customers": [], "orders": []}
            # Tests only: answer history pages with at most this many records while the
            # pagination counts them all (a short page with more after it).
            self.history_page_cap: int | None = None
            self._next_history_id = 0

    def local_now(self) -> str:
        """Now as RetailCRM writes dates: ``Y-m-d H:i:s`` in the account's time zone (the
        one ``/api/v5/settings`` names; UPSTREAM-FACTS.md, strong)."""
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        return datetime.now(zone).strftime("%Y-%m-%d %H:%M:%S")

    def new_id(self) -> int:
        """A fresh id for a created customer or order."""
        with self.lock:
            self._next_id += 1
            return self._next_id

    def record_history(self, kind: str, entity: dict[str, Any], field: str, old: Any = None,
                       new: Any = None, *, created: bool = False, deleted: bool = False,
                       ours: bool = True) -> None:
        """Note one change of a customer or an order (``kind``) in its history.

        The record has the documented shape (REF lines 594 and 6775): ``id``,
        ``createdAt``, ``created``/``deleted`` when so, ``source``, ``field``, ``oldValue``,
        ``newValue``, ``apiKey{current}`` and the entity's ``id`` (and ``site``). It
        assumes what no source settles: a custom field is named ``custom_<code>``, the
        entity part holds only ids, a manager's change has ``source`` ``user``."""
        with self.lock:
            self._next_history_id += 1
            record: dict[str, Any] = {
                "id": self._next_history_id,
                "createdAt": self.local_now(),
                "source": "api" if ours else "user", "field": field, "oldValue": old,
                "newValue": new, "apiKey": {"current": ours}}
            if created:
                record["created"] = True
            if deleted:
                record["deleted"] = True
            # A created or deleted record carries the whole entity; any other only ids
            # (UPSTREAM-FACTS "entity part": OrdersTest.php, the woocommerce dataset).
            part = json.loads(json.dumps(entity)) if created or deleted else {"id": entity["id"]}
            if entity.get("site"):
                part["site"] = entity["site"]
            record["customer" if kind == "customers" else "order"] = part
            self.history[kind].append(record)

    # -- a "manager" working in RetailCRM itself (tests and the bench) -------------------
    def manager_edit_customer(self, customer_id: str, **custom_fields: str) -> None:
        """Set (``""`` clears) custom fields of a customer, as a manager would."""
        with self.lock:
            customer = self.customers[str(customer_id)]
            current = customer.get("customFields")
            merged = {**(current if isinstance(current, dict) else {}), **custom_fields}
            customer["customFields"] = {k: v for k, v in merged.items() if v != ""} or []
            for code, value in custom_fields.items():
                old = current.get(code) if isinstance(current, dict) else None
                self.record_history("customers", customer, f"custom_{code}", old, value or None,
                                    ours=False)

    def manager_delete_customer(self, customer_id: str) -> None:
        """Remove a customer (deleted, or merged into another), as a manager would."""
        with self.lock:
            customer = self.customers.pop(str(customer_id))
            self.record_history("customers", customer, "id", customer["id"], None,
                                deleted=True, ours=False)

    def manager_merge_customers(self, merged_id: str, into_id: str) -> None:
        """Combine customer ``merged_id`` into ``into_id`` (RetailCRM's customers/combine):
        the merged one is gone, its history record names the result in ``combinedTo``
        (REF line 716), its orders move to the result. As RetailCRM documents it: the
        result keeps its own fields (no custom field is carried over). ASSUMED, as no
        source shows one: RetailCRM writes no orders/history record for a moved order
        (the mirror must not need one)."""
        with self.lock:
            merged = self.customers.pop(str(merged_id))
            into = self.customers[str(into_id)]
            self.record_history("customers", merged, "id", merged["id"], None, deleted=True,
                                ours=False)
            self.history["customers"][-1]["combinedTo"] = {"id": into["id"]}
            for order in self.orders.values():
                if str((order.get("customer") or {}).get("id")) == str(merged_id):
                    order["customer"] = {**order["customer"], "id": into["id"]}

    def manager_unbind_silently(self, customer_id: str, code: str) -> None:
        """Clear a custom field with no history record: a change the history missed (how
        the reconcile is tested; RetailCRM's history is not known to drop records)."""
        with self.lock:
            customer = self.customers[str(customer_id)]
            fields = customer.get("customFields")
            if isinstance(fields, dict):
                customer["customFields"] = {k: v for k, v in fields.items() if k != code} or []

    def orders_by(self, key: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        """The orders whose ``key`` (``number`` or ``externalId``) is one of ``values``,
        found as RetailCRM's database finds them, by an index: a scan of every order
        would make the stand-ins' cost grow with the thousands a benchmark makes."""
        with self.lock:
            self._index_new_orders()
            found: list[dict[str, Any]] = []
            for value in dict.fromkeys(str(v) for v in values):
                for oid in self._order_index.get((key, value), ()):
                    order = self.orders.get(oid)
                    # An order changed in place since it was indexed is not this one.
                    if order is not None and str(order.get(key)) == value:
                        found.append(order)
            return found

    def _index_new_orders(self) -> None:
        # Orders are only ever added (a dict keeps their order): index those added since.
        if len(self.orders) < self._orders_indexed:
            self._order_index, self._orders_indexed = {}, 0
        for oid, order in itertools.islice(self.orders.items(), self._orders_indexed, None):
            for key in ORDER_INDEX_KEYS:
                if order.get(key) not in (None, ""):
                    self._order_index.setdefault((key, str(order[key])), []).append(oid)
        self._orders_indexed = len(self.orders)

    def manager_set_order_status(self, order_id: str, status: str) -> None:
        """Move an order to another status, as a manager would."""
        with self.lock:
            order = self.orders[str(order_id)]
            old, order["status"] = order.get("status"), status
            self.record_history("orders", order, "status", {"code": old}, {"code": status},
                                ours=False)

    def manager_add_order(self, order: dict[str, Any]) -> None:
        """An order made elsewhere (the shop's site, a call centre)."""
        with self.lock:
            self.orders[str(order["id"])] = order
            # A new order is recorded as its status with ``created`` (OrdersTest.php).
            self.record_history("orders", order, "status", None, order.get("status"),
                                created=True, ours=False)

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

    def answer_late(self, kind: str) -> None:
        """The injected wait after a call of ``kind`` took effect, if any."""
        if kind in self.delay_after:
            time.sleep(self.delay_after[kind])

    def delivery_status(self, routes: set[str], request_id: str) -> str | None:
        """The status word of one accepted send (None: no such send by those routes, the
        ones of the module asked).

        Pinned words first; then Telegram's undelivered and late demo phones; every
        other send reads as delivered. The words are GreenSMS's documented sms/vk words
        (node SDK PR #12); ASSUMED for telegram, whose words no source lists."""
        with self.lock:
            self.status_calls.append(request_id)
            message = next((m for m in self.outbox if m["request_id"] == request_id
                            and m["route"] in routes), None)
            pinned = self.delivery_statuses.get(request_id)
        if message is None:
            return None
        if pinned:
            return pinned
        route = message["route"]
        if route == "incoming_call":
            # ASSUMED (no source lists a received call's words): the message words, not
            # ready until the customer called (``/sandbox/incoming-call``), then success.
            return "Delivery success" if message.get("called") else "Status not ready"
        if route == "telegram" and message["to"] in self.telegram_undelivered:
            return "Delivery failure"
        late = self.telegram_late.get(message["to"]) if route == "telegram" else None
        if late is not None and self.clock() - message["clock"] < late:
            return "Delivery accepted"
        return "Delivery success"

    def over_rate_limit(self) -> bool:
        """Whether this call goes over the per-second limit (counted as refused if so)."""
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

    def record_number_to_call(self, route: str, to: str) -> dict[str, Any]:
        """Puts one call/receive in the outbox: the number the customer is to call."""
        number = "7800" + "".join(secrets.choice("0123456789") for _ in range(7))
        message = self.record_message(route, to, f"Позвоните на номер +{number}", code="")
        message["number"] = number
        message["called"] = False
        return message

    def mark_called(self, phone: str) -> dict[str, Any] | None:
        """The customer of ``phone`` made the latest call asked of them (None: none)."""
        with self.lock:
            message = next((m for m in self.outbox if m["route"] == "incoming_call"
                            and m["to"] == phone), None)
            if message is not None:
                message["called"] = True
        return message

    def record_call(self, route: str, to: str, digits: int) -> dict[str, Any]:
        """Puts one flash call in the outbox: the number that calls ends with its code,
        which the stand-in chooses as GreenSMS does."""
        code = "".join(secrets.choice("0123456789") for _ in range(digits))
        caller = "7900" + "".join(secrets.choice("0123456789") for _ in range(7 - digits))
        return self.record_message(route, to, f"Входящий звонок: +{caller}{code}", code=code)

    def record_message(self, route: str, to: str, txt: str, code: str | None = None
                       ) -> dict[str, Any]:
        """Puts one accepted send in the outbox (with its code) and reports it."""
        if code is None:
            code = txt if txt.isdigit() else (re.search(r"\d{4,8}", txt) or [""])[0]
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
    """The state of the stand-ins app serving this request."""
    return current_app.extensions["sandbox_state"]
