"""GET /orders and POST /orders/repeat through HTTP."""

from __future__ import annotations

import pytest

from gurugrow.stores import keys as redis_keys
from tests.helpers import BODY_KINDS, get, post, redis_of, run_concurrently

ORDERS_FIELDS = {"status", "customerId", "shownCount", "orders", "text", "errorCode", "message"}
ORDER_FIELDS = {
    "sourceOrderId", "sourceOrderNumber", "orderNumber", "createdAt", "createdAtText",
    "itemsText", "deliveryAddressText", "statusGroup", "statusLabel", "deliveryCode",
    "trackingCode", "trackingUrl", "canTrackOnline", "detailText", "repeatConfirmText",
    "trackingText", "trackingNumber", "deliveryStatus"}
REPEAT_FIELDS = {"status", "customerId", "sourceOrderId", "sourceOrderNumber", "newOrderId",
                 "newOrderNumber", "unavailableItemName", "text", "errorCode", "message"}
QUERY = {"channelType": "telegram", "customerExternalId": "123456789",
         "messengerUserId": "123456789", "chatExternalId": "chat-1"}
TG_FIELD = "bot_telegram_account_id"
POST_RU = {"code": "pr-rs", "address": {"text": "Москва, Тверская"},
           "data": {"trackNumber": "TRACK123456"}}


@pytest.fixture
def bound(upstreams):
    """Customer 626518 bound to Telegram 123456789 (chatbot_interacted already set)."""
    return upstreams.add_customer(626518, "+79991234567", **{
        TG_FIELD: "123456789", "chatbot_interacted": "true"})


def test_contract_example_order(client, upstreams, bound):
    upstreams.add_order(12345, 626518, status="send-to-delivery", delivery=POST_RU)
    answer = get(client, "/orders", {**QUERY, "customerId": "626518"})
    assert answer == {
        "status": "ok",
        "customerId": "626518",
        "shownCount": 1,
        "orders": [{
            "sourceOrderId": "12345",
            "sourceOrderNumber": "12345",
            "orderNumber": "12345",
            "createdAt": "2026-06-01T07:00:00Z",
            "createdAtText": "01.06.2026",
            "itemsText": "• Миноксидил 5% x1",
            "deliveryAddressText": "Москва, Тверская",
            "statusGroup": "delivery",
            "statusLabel": "В доставке",
            "deliveryCode": "pr-rs",
            "trackingCode": "TRACK123456",
            "trackingUrl": "https://www.pochta.ru/tracking?barcode=TRACK123456",
            "canTrackOnline": True,
            "detailText": "Вот этот заказ 👇\n\n12345\n01.06.2026\nВ доставке\n\n• Миноксидил 5% x1\n\nПочта РФ: Москва, Тверская\n\nЧто сделаем?",  # noqa: E501
            "repeatConfirmText": "Заказ 12345\n\nВот этот заказ 👇\n\n12345\n01.06.2026\n\n🗒️Состав:\n• Миноксидил 5% x1\n\n🚙Доставка:\nМосква, Тверская\n\nУверены, что хотите его повторить?",  # noqa: E501
            "trackingText": "📬 Ваш заказ уже едет к вам\n\nВот ссылка для отслеживания 👇\nhttps://www.pochta.ru/tracking?barcode=TRACK123456",  # noqa: E501
            "trackingNumber": "TRACK123456",
            "deliveryStatus": "В доставке",
        }],
        "text": "Твои заказы 👇\n\nМожно отследить текущий заказ или быстро повторить прошлый.\n\n🗒️Номер заказа: 12345\n📆Оформлен: 01.06.2026\n\n🚚 Уже едет к вам\n\n• Миноксидил 5% x1\n\n🚙Москва, Тверская\n🔍Отследить заказ: https://www.pochta.ru/tracking?barcode=TRACK123456",  # noqa: E501
        "errorCode": None,
        "message": None,
    }


@pytest.mark.parametrize(("delivery", "url"), [
    ({"code": "5post", "data": {"trackNumber": "5P1"}}, "https://fivepost.ru/tracking/?id=5P1"),
    ({"code": "sdek-v-2-7b30522f5b0a597f679345a92b57c324", "trackNumber": "C1"},
     "https://www.cdek.ru/ru/tracking/?order_id=C1"),
    ({"integrationCode": "pr-rs", "trackingNumber": "R1"},
     "https://www.pochta.ru/tracking?barcode=R1"),
    ({"code": "courier", "data": {"trackNumber": "X1"}}, None),
    ({"code": "pr-rs", "data": {}}, None),
    (None, None),
])
def test_tracking_urls(client, upstreams, bound, delivery, url):
    upstreams.add_order(1, 626518, status="send-to-delivery", delivery=delivery)
    order = get(client, "/orders", QUERY)["orders"][0]
    assert set(order) == ORDER_FIELDS
    assert order["trackingUrl"] == url
    assert order["canTrackOnline"] is (url is not None)
    assert (order["trackingText"] is None) is (url is None)


def test_status_groups_exclusions_newest_first_and_limit(client, upstreams, bound):
    upstreams.add_order(1, 626518, status="new", created="2026-01-01 09:00:00")
    upstreams.add_order(2, 626518, status="assembling", created="2026-02-01 09:00:00")
    upstreams.add_order(3, 626518, status="complete", created="2026-03-01 09:00:00")
    upstreams.add_order(4, 626518, status="cancel-other", created="2026-04-01 09:00:00")
    upstreams.add_order(5, 626518, status="send-to-delivery", created="2026-05-01 09:00:00")
    upstreams.add_order(6, 999, status="new", created="2026-06-01 09:00:00")  # not theirs
    answer = get(client, "/orders", {**QUERY, "limit": "5"})
    assert [(o["sourceOrderId"], o["statusGroup"]) for o in answer["orders"]] == [
        ("5", "delivery"), ("3", "complete"), ("2", "assembling"), ("1", "assembling")]
    assert get(client, "/orders", {**QUERY, "limit": "2"})["shownCount"] == 2
    assert get(client, "/orders", QUERY)["shownCount"] == 3  # ORDERS_DEFAULT_LIMIT
    assert get(client, "/orders", {**QUERY, "limit": "99"})["shownCount"] == 4  # clamped to 5


@pytest.mark.parametrize("env_overrides", [{
    "RETAILCRM_ORDER_EXCLUDED_STATUS_CODES": "new",
    "RETAILCRM_ORDER_EXCLUDED_STATUS_NAMES": "Комплектуется",
    "RETAILCRM_ORDER_GROUP_COMPLETE_NAMES": "Доставка",
    "RETAILCRM_ORDER_GROUP_DELIVERY_CODES": "none"}])
def test_exclusions_and_groups_are_configurable(client, upstreams, bound):
    for oid, status in enumerate(["new", "assembling", "send-to-delivery"], start=1):
        upstreams.add_order(oid, 626518, status=status, created=f"2026-0{oid}-01 09:00:00")
    answer = get(client, "/orders", QUERY)
    assert [(o["sourceOrderId"], o["statusGroup"]) for o in answer["orders"]] == [
        ("3", "complete")]


@pytest.mark.parametrize("env_overrides", [{"BINDING_CACHE_SECONDS": "0",
                                            "ORDERS_CACHE_SECONDS": "0"}])
def test_reference_is_cached_so_orders_costs_two_crm_calls(client, upstreams, bound):
    """With the binding and order-list caches off (see test_call_budget for them on)."""
    upstreams.add_order(1, 626518, status="new")
    get(client, "/orders", QUERY)
    upstreams.calls.clear()
    assert get(client, "/orders", QUERY)["status"] == "ok"
    assert upstreams.calls == ["GET /api/v5/customers", "GET /api/v5/orders"]


def test_empty(client, upstreams, bound):
    upstreams.add_order(4, 626518, status="cancel-other")
    answer = get(client, "/orders", QUERY)
    assert set(answer) == ORDERS_FIELDS
    assert (answer["status"], answer["shownCount"], answer["orders"]) == ("empty", 0, [])
    assert answer["customerId"] == "626518"


def test_chatbot_interacted_marked_once(client, upstreams):
    upstreams.add_customer(7, "+79991234567", **{TG_FIELD: "123456789"})
    get(client, "/orders", QUERY)
    get(client, "/orders", QUERY)
    assert upstreams.edits == [("7", {"chatbot_interacted": "true"})]


@pytest.mark.parametrize(("setup", "query", "expected"), [
    ("none", {}, ("not_authorized", "not_authorized")),
    ("two", {}, ("conflict", "conflict")),
    ("one", {"customerId": "1"}, ("conflict", "customer_mismatch")),
    ("one", {"channelType": "icq"}, ("error", "invalid_channel")),
    ("one", {"messengerUserId": "", "customerExternalId": ""}, ("error", "invalid_identity")),
    ("one", {"limit": "many"}, ("error", "invalid_limit")),
    ("crm_down", {}, ("error", "crm_unavailable")),
    ("orders_down", {}, ("error", "crm_unavailable")),
])
def test_orders_refusals(client, upstreams, setup, query, expected):
    if setup in ("one", "two", "orders_down"):
        upstreams.add_customer(626518, "+79991234567", **{TG_FIELD: "123456789"})
    if setup == "two":
        upstreams.add_customer(2, "+79991234567", **{TG_FIELD: "123456789"})
    if setup == "crm_down":
        upstreams.fail["customers"] = (503, {"success": False, "errorMsg": "Rate limit"})
    if setup == "orders_down":
        upstreams.fail["orders"] = (502, "<html>Bad gateway</html>")
    upstreams.add_order(1, 626518)
    answer = get(client, "/orders", {**QUERY, **query})
    assert set(answer) == ORDERS_FIELDS
    assert (answer["status"], answer["errorCode"]) == expected
    assert answer["orders"] == []


# -- repeat ---------------------------------------------------------------------------
def repeat(client, kind="form", **fields):
    return post(client, "/orders/repeat", {**QUERY, "customerId": "626518", **fields}, kind)


@pytest.fixture
def source(upstreams, bound):
    upstreams.add_offer(501, "Миноксидил 5%")
    upstreams.add_offer(502, "Шампунь")
    return upstreams.add_order(123456, 626518, number="ELM278345", status="complete",
                               items=[(501, "Миноксидил 5%", 2), (502, "Шампунь", 1)],
                               delivery=POST_RU)


@pytest.mark.parametrize("ref", [{"sourceOrderId": "123456"},
                                 {"sourceOrderNumber": "ELM278345"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_repeat_creates_a_clean_copy(client, upstreams, source, kind, ref):
    answer = repeat(client, kind, **ref)
    assert set(answer) == REPEAT_FIELDS
    assert answer["status"] == "created"
    assert (answer["customerId"], answer["sourceOrderId"], answer["sourceOrderNumber"]) == (
        "626518", "123456", "ELM278345")
    number = answer["newOrderNumber"]
    assert number.startswith("CHT") and number.endswith("-BOT") and len(number) == 15
    assert "ELM278345" not in number
    assert answer["text"] == (
        f"Заказ оформлен! 👍\n\nНомер вашего заказа: {number}\n\nПока что мы не можем оформить "
        "оплату через бота, поэтому придётся подключить менеджера. Уже спешим на помощь! 🦸\n\n"
        "А если хотите что-то поменять, то можете пока написать, что нужно скорректировать, "
        "мы обязательно поможем.")
    [created] = upstreams.created
    assert answer["newOrderId"] == str(created["id"])
    assert created["site"] == "test-site"
    assert created["status"] == "new"
    assert created["customer"] == {"id": 626518}
    assert created["items"] == [{"offer": {"id": 501}, "quantity": 2},
                                {"offer": {"id": 502}, "quantity": 1}]
    assert created["delivery"] == {"address": {"text": "Москва, Тверская"}}
    assert (created["firstName"], created["lastName"], created["phone"], created["email"]) == (
        "Иван", "Иванов", "+79991234567", "ivan@example.com")
    assert "ELM278345" in created["customerComment"]
    for absent in ("manager", "managerId", "initialPrice", "payments"):
        assert absent not in created and absent not in str(created["items"])


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_repeat_with_a_missing_offer_creates_nothing(client, upstreams, source, kind):
    upstreams.offers = [o for o in upstreams.offers if o["id"] != 502]
    answer = repeat(client, kind, sourceOrderId="123456")
    assert (answer["status"], answer["unavailableItemName"]) == ("unavailable_item", "Шампунь")
    assert answer["newOrderId"] is None and upstreams.created == []


def test_repeat_with_an_inactive_offer_creates_nothing(client, upstreams, source):
    upstreams.offers[0]["active"] = False
    answer = repeat(client, sourceOrderId="123456")
    assert (answer["status"], answer["unavailableItemName"]) == (
        "unavailable_item", "Миноксидил 5%")
    assert upstreams.created == []


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_repeated_request_gets_the_first_answer(client, upstreams, source, kind):
    first = repeat(client, kind, sourceOrderId="123456")
    second = repeat(client, kind, sourceOrderId="123456")
    assert first == second
    assert len(upstreams.created) == 1


def test_concurrent_identical_repeats_create_one_order(app, upstreams, source):
    answers = run_concurrently(6, lambda: repeat(app.test_client(), sourceOrderId="123456"))
    assert len(upstreams.created) == 1
    assert {a["newOrderNumber"] for a in answers} == {upstreams.created[0]["number"]}


def test_duplicate_number_is_regenerated(client, upstreams, source, monkeypatch):
    numbers = iter([11111111, 11111111, 22222222])
    monkeypatch.setattr("gurugrow.flows.orders.secrets.randbelow", lambda _: next(numbers))
    upstreams.add_order(1, 5, number="CHT11111111-BOT")
    assert repeat(client, sourceOrderId="123456")["status"] == "created"
    answer = repeat(client, sourceOrderId="123456", customerExternalId="other")
    assert answer["newOrderNumber"] == "CHT22222222-BOT"


@pytest.mark.parametrize("env_overrides", [{}, {"REPEAT_ORDER_SITE": "other-store"}])
def test_lost_create_answer_is_resolved_by_number(client, upstreams, source, env_overrides):
    upstreams.lose_create_answer = True  # the order is created, the answer times out
    answer = repeat(client, sourceOrderId="123456")
    assert answer["status"] == "created"
    [created] = upstreams.created
    assert (answer["newOrderId"], answer["newOrderNumber"]) == (
        str(created["id"]), created["number"])
    # Looked up by number in the store it was made in.
    assert created["site"] == env_overrides.get("REPEAT_ORDER_SITE", "test-site")


@pytest.mark.parametrize(("fields", "setup", "expected"), [
    ({"sourceOrderId": "777"}, None, ("not_found", "order_not_found")),
    ({"sourceOrderId": "555"}, "foreign", ("not_found", "order_not_found")),
    ({"sourceOrderNumber": "NOPE"}, None, ("not_found", "order_not_found")),
    ({}, None, ("error", "order_not_found")),
    ({"sourceOrderId": "123456", "customerId": "1"}, None, ("conflict", "customer_mismatch")),
    ({"sourceOrderId": "123456", "channelType": "max"}, None,
     ("not_authorized", "not_authorized")),
    ({"sourceOrderId": "123456", "channelType": "x"}, None, ("error", "invalid_channel")),
    ({"sourceOrderId": "123456"}, "create_fails", ("error", "crm_unavailable")),
    ({"sourceOrderId": "123456"}, "offers_down", ("error", "crm_unavailable")),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_repeat_refusals(client, upstreams, source, kind, fields, setup, expected):
    if setup == "foreign":
        upstreams.add_order(555, 42)
    if setup == "create_fails":
        upstreams.fail["create"] = (400, {"success": False, "errorMsg": "Order is not loaded",
                                          "errors": {"delivery": "invalid"}})
    if setup == "offers_down":
        upstreams.fail["offers"] = (503, {"success": False, "errorMsg": "Rate limit"})
    answer = repeat(client, kind, **fields)
    assert set(answer) == REPEAT_FIELDS
    assert (answer["status"], answer["errorCode"]) == expected
    assert upstreams.created == []


def test_failed_repeat_is_not_remembered(client, upstreams, source):
    upstreams.fail["create"] = (400, {"success": False, "errorMsg": "Order is not loaded",
                                      "errors": ["payment"]})
    assert repeat(client, sourceOrderId="123456")["status"] == "error"
    del upstreams.fail["create"]
    assert repeat(client, sourceOrderId="123456")["status"] == "created"


# -- the newest orders, whatever RetailCRM's page order; dates from the account's zone --
def add_orders(upstreams, count: int) -> None:
    """Orders 1..count of customer 626518, one a day, order ``count`` the newest."""
    for oid in range(1, count + 1):
        upstreams.add_order(oid, 626518, status="send-to-delivery",
                            created=f"2026-{1 + (oid - 1) // 28:02d}-{1 + (oid - 1) % 28:02d} "
                                    "10:00:00")


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("count", [3, 20, 21, 45, 100, 101])
def test_the_newest_orders_are_shown_whatever_the_page_order(client, upstreams, bound,
                                                             newest_first, count):
    add_orders(upstreams, count)
    upstreams.state.orders_newest_first = newest_first
    answer = get(client, "/orders", {**QUERY, "limit": "3"})
    assert [o["orderNumber"] for o in answer["orders"]] == [
        str(count), str(count - 1), str(count - 2)]
    # Page 1 holds the newest when it is the only page or lists newest first; otherwise
    # one more page (of the size that holds the newest 20 at once, when one does).
    extra = 0 if newest_first or count <= 20 else (2 if count == 101 else 1)
    assert upstreams.crm_calls("GET /api/v5/orders") == ["GET /api/v5/orders"] * (1 + extra)


@pytest.mark.parametrize(("zone", "created", "instant", "date"), [
    ("Europe/Moscow", "2026-06-01 01:30:00", "2026-05-31T22:30:00Z", "01.06.2026"),
    ("Asia/Vladivostok", "2026-06-01 09:59:59", "2026-05-31T23:59:59Z", "01.06.2026"),
    ("UTC", "2026-06-01 01:30:00", "2026-06-01T01:30:00Z", "01.06.2026"),
    ("Mars/Olympus", "2026-06-01 01:30:00", "2026-06-01T01:30:00Z", "01.06.2026"),  # unknown
    ("", "2026-06-01 01:30:00", "2026-06-01T01:30:00Z", "01.06.2026"),
])
def test_dates_are_the_true_instant_in_utc_and_the_local_date(client, upstreams, bound, zone,
                                                              created, instant, date):
    upstreams.state.timezone = zone
    upstreams.add_order(1, 626518, status="send-to-delivery", created=created)
    [order] = get(client, "/orders", QUERY)["orders"]
    assert (order["createdAt"], order["createdAtText"]) == (instant, date)
    assert f"📆Оформлен: {date}" in get(client, "/orders", QUERY)["text"]


@pytest.mark.parametrize(("zone", "created"), [
    ("Europe/Moscow", "0001-01-01 00:00:00"),   # east of UTC: before year 1 in UTC
    ("America/New_York", "9999-12-31 23:59:59"),  # west of UTC: after year 9999
    ("Europe/Moscow", "31.12.2026 10:00"),  # not RetailCRM's format
])
def test_a_date_that_cannot_be_converted_is_shown_as_it_came(client, upstreams, bound, zone,
                                                             created):
    upstreams.state.timezone = zone
    upstreams.add_order(1, 626518, status="send-to-delivery", created=created)
    answer = get(client, "/orders", QUERY)
    assert answer["status"] == "ok"
    assert (answer["orders"][0]["createdAt"], answer["orders"][0]["createdAtText"]) == (
        created, None)


def drop_order_list(client, customer_id: str = "626518") -> None:
    redis_of(client.application).delete(
        redis_keys.orders_cache("gg:", customer_id))


def test_settings_the_key_may_not_read_are_utc_and_cached(client, upstreams, bound):
    upstreams.fail["settings"] = (403, {"success": False, "errorMsg": "Access denied."})
    upstreams.add_order(1, 626518, status="send-to-delivery", created="2026-06-01 01:30:00")
    assert get(client, "/orders", QUERY)["orders"][0]["createdAt"] == "2026-06-01T01:30:00Z"
    drop_order_list(client)
    assert get(client, "/orders", QUERY)["status"] == "ok"
    assert upstreams.crm_calls("GET /api/v5/settings") == ["GET /api/v5/settings"]


def test_an_unreachable_settings_read_is_crm_unavailable_and_not_cached(client, upstreams,
                                                                        bound):
    upstreams.fail_once["settings"] = (502, "<html>Bad Gateway</html>")
    upstreams.add_order(1, 626518, status="send-to-delivery", created="2026-06-01 01:30:00")
    answer = get(client, "/orders", QUERY)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")
    drop_order_list(client)
    assert get(client, "/orders", QUERY)["orders"][0]["createdAt"] == "2026-05-31T22:30:00Z"


def test_the_time_zone_is_read_once_with_the_statuses(client, upstreams, bound):
    upstreams.add_order(1, 626518, status="send-to-delivery")
    get(client, "/orders", QUERY)
    drop_order_list(client)
    get(client, "/orders", QUERY)
    assert upstreams.crm_calls("GET /api/v5/settings") == ["GET /api/v5/settings"]
    assert upstreams.crm_calls("GET /api/v5/reference/statuses") == [
        "GET /api/v5/reference/statuses"]


@pytest.mark.parametrize("zone", ["Europe/Moscow", "America/New_York"])
def test_an_order_the_standin_creates_is_dated_in_the_accounts_zone(client, upstreams, source,
                                                                     zone):
    """The stand-in writes a new order's createdAt as RetailCRM does, local time of the
    account; read back, it is the true instant (within the test's own minute, not hours)."""
    from datetime import UTC, datetime

    upstreams.state.timezone = zone
    new_id = repeat(client, sourceOrderId="123456")["newOrderId"]
    redis_of(client.application).delete(
        redis_keys.orders_cache("gg:", "626518"))
    [order] = [o for o in get(client, "/orders", QUERY)["orders"] if o["sourceOrderId"] == new_id]
    created = datetime.strptime(order["createdAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 120
