"""Demo data of the sandbox: invented people, orders and catalog (no real data).

Phones and what each shows on /auth/start (and the recommended start):
- 79990000001  one customer (1001): a normal code by the chosen route
- 79990000002  two customers (1002, 1003): the deduper resolves them to 1003
- 79990000003  two customers (1004, 1005): the deduper cannot resolve → error, no code
- 79990000004  nobody: the same "sent" answer, nothing sent (recommended: a new customer)
- 79990000005  one customer (1007) whose Telegram route fails: the code goes by SMS
- 79990000006  customer 1006, already bound to Telegram id 100500, with orders in every
  status group (/orders, /orders/repeat), and the one in the contract's examples
- 79990000007  one customer (1008) whose Telegram send is accepted but never delivered
  (its status reads failed): /auth/resend, or the `deliveries` worker, sends it by SMS
- 79990000008  one customer (1009) whose Telegram code arrives late (delivered only
  TELEGRAM_LATE_SECONDS after the send, past DELIVERY_FALLBACK_AFTER_SECONDS)

Offer codes of recommended sets: male_hairloss_basic and female_hairloss_basic resolve to
catalog bundles; beard_growth's bundle is missing from the catalog (no order is created).

To add data for a new flow, add entries to the lists below; ``demo_data()`` returns a
fresh copy each time, so the sandbox's /sandbox/reset restores exactly this.
"""

from __future__ import annotations

import copy
from typing import Any

TELEGRAM_FAILING_PHONES = frozenset({"79990000005"})
# Delivery tracking: Telegram accepts these sends; one is never delivered, one is late.
TELEGRAM_UNDELIVERED_PHONES = frozenset({"79990000007"})
TELEGRAM_LATE_SECONDS = 45
TELEGRAM_LATE_PHONES = {"79990000008": TELEGRAM_LATE_SECONDS}

_CUSTOMERS: list[dict[str, Any]] = [
    {"id": 1001, "firstName": "Анна", "lastName": "Смирнова", "email": "anna@example.com",
     "phones": [{"number": "+7 (999) 000-00-01"}], "customFields": []},
    {"id": 1002, "firstName": "Борис", "lastName": "Кузнецов", "email": "boris@example.com",
     "phones": [{"number": "8 999 000 00 02"}], "customFields": []},
    {"id": 1003, "firstName": "Борис", "lastName": "Кузнецов", "email": "",
     "phones": [{"number": "+79990000002"}], "customFields": []},
    {"id": 1004, "firstName": "Вера", "lastName": "Попова",
     "phones": [{"number": "+7 999 000-00-03"}], "customFields": []},
    {"id": 1005, "firstName": "Вера", "lastName": "Попова",
     "phones": [{"number": "89990000003"}], "customFields": []},
    {"id": 1006, "firstName": "Иван", "lastName": "Иванов", "email": "ivan@example.com",
     "phones": [{"number": "+7 (999) 000-00-06"}],
     "customFields": {"bot_telegram_account_id": "100500", "chatbot_interacted": "true",
                      "bot_last_verified_channel": "telegram",
                      "bot_last_verification_method": "telegram_otp"}},
    {"id": 1007, "firstName": "Глеб", "lastName": "Соколов",
     "phones": [{"number": "+7 999 000-00-05"}], "customFields": []},
    {"id": 1008, "firstName": "Дарья", "lastName": "Орлова",
     "phones": [{"number": "+7 999 000-00-07"}], "customFields": []},
    {"id": 1009, "firstName": "Егор", "lastName": "Волков",
     "phones": [{"number": "+7 999 000-00-08"}], "customFields": []},
]

_OFFERS: list[dict[str, Any]] = [
    {"id": 501, "externalId": "minox-5", "xmlId": "x-501", "article": "MNX-5",
     "name": "Миноксидил 5%", "active": True, "quantity": 40},
    {"id": 502, "externalId": "shampoo-keto", "xmlId": "x-502", "article": "SHP-KETO",
     "name": "Шампунь с кетоконазолом", "active": True, "quantity": 25},
    {"id": 503, "externalId": "biotin-60", "xmlId": "x-503", "article": "BIO-60",
     "name": "Биотин, 60 капсул", "active": True, "quantity": 10},
    {"id": 504, "externalId": "serum-old", "xmlId": "x-504", "article": "SRM-OLD",
     "name": "Сыворотка (снята с продажи)", "active": False, "quantity": 0},
]

_PRODUCTS: list[dict[str, Any]] = [
    {"id": 51, "article": "MNX-5", "name": "Миноксидил 5%", "active": True, "offers": [501]},
    {"id": 52, "article": "SHP-KETO", "name": "Шампунь с кетоконазолом", "active": True,
     "offers": [502]},
    {"id": 53, "article": "BIO-60", "name": "Биотин", "active": True, "offers": [503]},
    {"id": 54, "article": "SRM-OLD", "name": "Сыворотка", "active": False, "offers": [504]},
    {"id": 31, "article": "SET-MALE-BASIC", "name": "Набор для мужчин базовый", "active": True,
     "offers": [{"id": 310, "externalId": "set-male-basic", "xmlId": "x-310",
                 "article": "SET-MALE-BASIC", "name": "Набор для мужчин базовый",
                 "active": True, "quantity": 12}]},
    {"id": 32, "article": "SET-FEMALE-BASIC", "name": "Набор для женщин базовый",
     "active": True,
     "offers": [{"id": 320, "externalId": "set-female-basic", "xmlId": "x-320",
                 "article": "SET-FEMALE-BASIC", "name": "Набор для женщин базовый",
                 "active": True, "quantity": 7}]},
    {"id": 33, "article": "SET-MALE-BASIC-OLD", "name": "Набор для мужчин (архив)",
     "active": False,
     "offers": [{"id": 330, "externalId": "set-male-old", "xmlId": "x-330",
                 "article": "SET-MALE-BASIC-OLD", "name": "Набор для мужчин (архив)",
                 "active": False, "quantity": 0}]},
]

# (code, name, group code)
_STATUSES = [
    ("new", "Новый", "new"), ("availability-confirmed", "Наличие подтверждено", "approval"),
    ("assembling", "Комплектуется", "assembling"),
    ("ruchnaia-obrabotka", "Ручная обработка", "approval"),
    ("send-to-delivery", "Передан в доставку", "delivery"),
    ("delivering", "Доставляется", "delivery"), ("complete", "Выполнен", "complete"),
    ("cancel-other", "Отменён", "cancel"),
]
_GROUPS = [("new", "Новый"), ("approval", "Согласование"), ("assembling", "Комплектация"),
           ("delivery", "Доставка"), ("complete", "Выполнен"), ("cancel", "Отменен")]


def _order(oid: int, number: str, created: str, status: str, items: list[tuple[int, int]],
           delivery: dict[str, Any] | None = None) -> dict[str, Any]:
    offers = {o["id"]: o for o in _OFFERS}
    order = {
        "id": oid, "number": number, "createdAt": created, "status": status,
        "site": "1minoxidil-ru", "customer": {"id": 1006, "type": "customer"},
        "firstName": "Иван", "lastName": "Иванов", "phone": "+79990000006",
        "email": "ivan@example.com",
        "items": [{"id": oid * 10 + i, "quantity": qty, "initialPrice": 990,
                   "offer": {k: offers[offer_id][k] for k in (
                       "id", "externalId", "xmlId", "article", "name")}
                   | {"displayName": offers[offer_id]["name"]}}
                  for i, (offer_id, qty) in enumerate(items)],
    }
    if delivery is not None:
        order["delivery"] = delivery
    return order


_ORDERS = [
    _order(5001, "12345", "2026-06-01 10:00:00", "send-to-delivery", [(501, 1)],
           {"code": "pr-rs", "address": {"text": "Москва, Тверская"},
            "data": {"trackNumber": "TRACK123456"}}),
    _order(5002, "ELM278345", "2026-05-20 12:30:00", "delivering", [(501, 2), (502, 1)],
           {"code": "5post", "address": {"text": "Москва, ул. Ленина, 1 (постамат)"},
            "data": {"trackNumber": "5POST000123"}}),
    _order(5003, "ELM278301", "2026-05-10 09:15:00", "send-to-delivery", [(503, 1)],
           {"code": "sdek-v-2-7b30522f5b0a597f679345a92b57c324",
            "integrationCode": "sdek-v-2", "address": {"text": "Казань, ул. Баумана, 5"},
            "data": {"trackNumber": "1234567890"}}),
    _order(5004, "ELM278400", "2026-05-05 18:00:00", "new", [(502, 2)]),
    _order(5005, "ELM278399", "2026-05-01 08:00:00", "assembling", [(501, 1)],
           {"code": "courier", "address": {"text": "Москва, Арбат, 10"}}),
    _order(5006, "ELM278100", "2026-04-01 11:00:00", "complete", [(501, 3), (503, 1)],
           {"code": "pr-rs", "address": {"text": "Москва, Тверская"},
            "data": {"trackNumber": "TRACK000001"}}),
    _order(5007, "ELM278050", "2026-03-15 11:00:00", "cancel-other", [(502, 1)]),
    _order(5008, "ELM277900", "2026-03-01 11:00:00", "complete", [(501, 1), (504, 1)],
           {"code": "pr-rs", "address": {"text": "Москва, Тверская"}}),
]

_CUSTOMER_FIELDS = [
    "bot_telegram_account_id", "bot_vk_account_id", "bot_whatsapp_account_id",
    "bot_max_account_id", "bot_instagram_account_id", "bot_last_verified_channel",
    "bot_last_verified_at", "bot_last_verification_method", "chatbot_interacted",
]


def demo_data() -> dict[str, Any]:
    """A fresh deep copy of the demo data, in the shapes RetailCRM answers with."""
    offers = {o["id"]: o for o in _OFFERS}
    products = [{**p, "offers": [offers[o] if isinstance(o, int) else o for o in p["offers"]]}
                for p in _PRODUCTS]
    return copy.deepcopy({
        "customers": _CUSTOMERS,
        "orders": _ORDERS,
        "products": products,
        "statuses": {code: {"code": code, "name": name, "active": True, "ordering": i * 10,
                            "group": group} for i, (code, name, group) in enumerate(_STATUSES)},
        "statusGroups": {code: {"code": code, "name": name, "active": True,
                                "ordering": i * 10,
                                "statuses": [s for s, _, g in _STATUSES if g == code]}
                         for i, (code, name) in enumerate(_GROUPS)},
        "customFields": [{"code": c, "name": c, "type": "string", "entity": "customer"}
                         for c in _CUSTOMER_FIELDS],
        "dedupe": {"79990000002": {"status": "resolved", "finalCustomerId": "1003"},
                   "79990000003": {"status": "not_found", "finalCustomerId": None}},
        "telegramFailingPhones": sorted(TELEGRAM_FAILING_PHONES),
        "telegramUndeliveredPhones": sorted(TELEGRAM_UNDELIVERED_PHONES),
        "telegramLatePhones": dict(TELEGRAM_LATE_PHONES),
        "sites": ["1minoxidil-ru"],
    })
