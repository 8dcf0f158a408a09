"""POST /orders/recommended/{preview,create,start,check} through HTTP."""

from __future__ import annotations

import pytest

from gurugrow.flows.recommended import customer_external_id
from gurugrow.stores.otp import OtpSession
from tests.helpers import BODY_KINDS, TG, post, run_concurrently

TG_FIELD = "bot_telegram_account_id"
PREVIEW_FIELDS = {"status", "customerId", "offerCode", "title", "text", "errorCode", "message"}
CREATE_FIELDS = {"status", "customerId", "offerCode", "orderId", "orderNumber", "text",
                 "errorCode", "message"}
START_FIELDS = {"status", "sessionId", "maskedPhone", "retryAfterSec", "errorCode", "message",
                "deliveryRoute"}
CHECK_FIELDS = CREATE_FIELDS | {"authorized", "verifiedUntil"}
RECIPIENT = {"firstName": "Иван", "lastName": "Иванов", "phone": "79991234567",
             "email": "mail@example.com"}
HANDOFF = ("Не получилось оформить заказ автоматически 😔\n\nУже подключаем менеджера: он "
           "поможет оформить заказ. А можно попробовать ещё раз чуть позже.")
TRANSIENT = (503, {"success": False, "errorMsg": "Rate limit exceeded"})


@pytest.fixture
def catalog(upstreams):
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    upstreams.add_bundle(32, "SET-MALE-BASIC-XL")  # fuzzy neighbour: must not be taken
    upstreams.add_bundle(33, "SET-FEMALE-BASIC", active=False)
    return upstreams


@pytest.fixture
def bound(upstreams):
    return upstreams.add_customer(626518, "+79991234567", **{
        TG_FIELD: "123456789", "chatbot_interacted": "true"})


def call(client, action, kind="form", **fields):
    return post(client, f"/orders/recommended/{action}", {**TG, **fields}, kind)


# -- authorized path ------------------------------------------------------------------
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_preview(client, bound, kind):
    answer = call(client, "preview", kind, offerCode="male_hairloss_basic", customerId="626518")
    assert set(answer) == PREVIEW_FIELDS
    assert (answer["status"], answer["customerId"], answer["offerCode"]) == (
        "ok", "626518", "male_hairloss_basic")
    assert answer["text"] == (
        "Базовый набор против выпадения волос для мужчин\n\nВ набор входит:\n"
        "• Миноксидил 5%, 60 мл\n• Шампунь с кетоконазолом\n• Биотин, 60 капсул\n\n"
        "Оформляем заказ?")


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_create_for_authorized_customer(client, catalog, bound, kind):
    answer = call(client, "create", kind, offerCode="male_hairloss_basic",
                  customerId="626518", **{**RECIPIENT, "email": "not-an-email"})
    assert set(answer) == CREATE_FIELDS
    assert answer["status"] == "created"
    [order] = catalog.created
    assert answer["orderId"] == str(order["id"])
    assert order["site"] == "1minoxidil-ru" and order["status"] == "ruchnaia-obrabotka"
    assert order["customer"] == {"id": 626518}
    assert order["items"] == [{"offer": {"id": 310}, "quantity": 1}]
    assert order["customerComment"] == (
        "Заказ создан чат-ботом по рекомендации: male_hairloss_basic")
    assert (order["firstName"], order["lastName"], order["phone"]) == (
        "Иван", "Иванов", "79991234567")
    assert "email" not in order  # invalid email dropped, not an error
    for absent in ("delivery", "manager", "managerId"):
        assert absent not in order


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_missing_or_inactive_bundle_creates_nothing(client, catalog, bound, kind):
    for code in ("beard_growth", "female_hairloss_basic"):
        answer = call(client, "create", kind, offerCode=code, **RECIPIENT)
        assert (answer["status"], answer["errorCode"]) == ("error", "bundle_unavailable")
    assert catalog.created == []


def test_transient_failure_is_retried_once(client, catalog, bound):
    catalog.fail_once["create"] = TRANSIENT
    answer = call(client, "create", offerCode="male_hairloss_basic", **RECIPIENT)
    assert answer["status"] == "created"
    assert len(catalog.created) == 1


def test_two_failures_hand_over_to_a_manager(client, catalog, bound):
    catalog.fail["create"] = TRANSIENT
    answer = call(client, "create", offerCode="male_hairloss_basic", **RECIPIENT)
    assert (answer["status"], answer["errorCode"], answer["text"]) == (
        "error", "order_failed", HANDOFF)
    assert catalog.crm_calls("POST /api/v5/orders/create") == [
        "POST /api/v5/orders/create"] * 2
    del catalog.fail["create"]  # the failure is not remembered: trying again works
    assert call(client, "create", offerCode="male_hairloss_basic",
                **RECIPIENT)["status"] == "created"


def test_lost_answer_is_found_by_external_id(client, catalog, bound):
    catalog.lose_create_answer = True
    answer = call(client, "create", offerCode="male_hairloss_basic", **RECIPIENT)
    assert answer["status"] == "created"
    assert len(catalog.created) == 1


def test_double_tap_creates_one_order(app, catalog, bound):
    answers = run_concurrently(5, lambda: call(app.test_client(), "create",
                                               offerCode="male_hairloss_basic", **RECIPIENT))
    assert len(catalog.created) == 1
    assert {a["orderId"] for a in answers} == {str(catalog.created[0]["id"])}


@pytest.mark.parametrize(("action", "fields", "expected"), [
    ("preview", {"offerCode": "nope"}, ("error", "unknown_offer")),
    ("preview", {"offerCode": ""}, ("error", "unknown_offer")),
    ("preview", {"offerCode": "male_hairloss_basic", "customerId": "1"},
     ("conflict", "customer_mismatch")),
    ("preview", {"offerCode": "male_hairloss_basic", "messengerUserId": "stranger"},
     ("not_authorized", "not_authorized")),
    ("create", {"offerCode": "nope"}, ("error", "unknown_offer")),
    ("create", {"offerCode": "male_hairloss_basic", "phone": "12"}, ("error", "invalid_phone")),
    ("create", {"offerCode": "male_hairloss_basic", "channelType": "fax"},
     ("error", "invalid_channel")),
    ("create", {"offerCode": "male_hairloss_basic", "messengerUserId": "stranger"},
     ("not_authorized", "not_authorized")),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_authorized_path_refusals(client, catalog, bound, kind, action, fields, expected):
    answer = call(client, action, kind, **fields)
    assert set(answer) == (PREVIEW_FIELDS if action == "preview" else CREATE_FIELDS)
    assert (answer["status"], answer["errorCode"]) == expected
    assert catalog.created == []


def test_products_down_is_an_error(client, catalog, bound):
    catalog.fail["products"] = (503, {"success": False, "errorMsg": "Rate limit"})
    answer = call(client, "create", offerCode="male_hairloss_basic", **RECIPIENT)
    assert (answer["status"], answer["errorCode"]) == ("error", "crm_unavailable")


# -- non-authorized path --------------------------------------------------------------
def start(client, kind="form", **fields):
    return call(client, "start", kind, offerCode="male_hairloss_basic", **RECIPIENT, **fields)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_new_customer_is_created_bound_and_ordered(client, catalog, kind):
    answer = start(client, kind, deliveryRoute="telegram")
    assert set(answer) == START_FIELDS
    assert (answer["status"], answer["maskedPhone"]) == ("sent", "+7******4567")
    assert [m["route"] for m in catalog.sent] == ["telegram"]  # unknown phone: still sent
    result = call(client, "check", kind, sessionId=answer["sessionId"],
                  code=catalog.codes_sent()[0])
    assert set(result) == CHECK_FIELDS
    assert (result["status"], result["authorized"]) == ("created", True)
    [customer] = [c for c in catalog.customers.values() if c["id"] >= 700000]
    assert result["customerId"] == str(customer["id"])
    assert customer["phones"] == [{"number": "79991234567"}]
    assert customer["customFields"][TG_FIELD] == "123456789"
    assert customer["email"] == "mail@example.com"
    [order] = catalog.created
    assert order["customer"] == {"id": customer["id"]}


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_known_customer_is_bound_and_ordered(client, catalog, kind):
    catalog.add_customer(5, "+7 999 123-45-67")
    session_id = start(client, kind)["sessionId"]
    result = call(client, "check", kind, sessionId=session_id, code=catalog.codes_sent()[0])
    assert (result["status"], result["customerId"]) == ("created", "5")
    assert catalog.field(5, TG_FIELD) == "123456789"
    assert catalog.created[0]["customer"] == {"id": 5}


def test_duplicates_resolved_by_the_deduper(client, catalog):
    catalog.add_customer(1, "79991234567")
    catalog.add_customer(2, "89991234567")
    catalog.dedupe_answer = {"status": "single", "finalCustomerId": 2}
    session_id = start(client)["sessionId"]
    result = call(client, "check", sessionId=session_id, code=catalog.codes_sent()[0])
    assert result["customerId"] == "2"


def test_unresolved_duplicates_send_no_code(client, catalog):
    catalog.add_customer(1, "79991234567")
    catalog.add_customer(2, "89991234567")
    catalog.dedupe_answer = {"status": "not_found", "finalCustomerId": None}
    answer = start(client)
    assert (answer["status"], answer["errorCode"]) == ("error", "dedupe_failed")
    assert catalog.sent == []


def test_double_check_creates_one_order(client, catalog):
    session_id = start(client)["sessionId"]
    code = catalog.codes_sent()[0]
    first = call(client, "check", sessionId=session_id, code=code)
    second = call(client, "check", sessionId=session_id, code=code)
    assert first["status"] == "created"
    assert second == first  # the replay gets the same order back
    assert len(catalog.created) == 1
    assert len([c for c in catalog.customers.values() if c["id"] >= 700000]) == 1


def test_failed_order_keeps_the_code_and_the_new_customer(client, catalog):
    session_id = start(client)["sessionId"]
    code = catalog.codes_sent()[0]
    catalog.fail["create"] = TRANSIENT
    failed = call(client, "check", sessionId=session_id, code=code)
    assert (failed["status"], failed["errorCode"], failed["text"]) == (
        "error", "order_failed", HANDOFF)
    del catalog.fail["create"]
    again = call(client, "check", sessionId=session_id, code=code)
    assert again["status"] == "created"
    assert len([c for c in catalog.customers.values() if c["id"] >= 700000]) == 1
    assert len(catalog.created) == 1


@pytest.mark.parametrize(("fields", "expected"), [
    ({"offerCode": "nope"}, ("error", "unknown_offer")),
    ({"offerCode": "beard_growth"}, ("error", "bundle_unavailable")),
    ({"phone": "000"}, ("error", "invalid_phone")),
    ({"phone": ""}, ("error", "invalid_phone")),
    ({"deliveryRoute": "mail"}, ("error", "invalid_route")),
    ({"messengerUserId": ""}, ("error", "invalid_identity")),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_start_refusals(client, catalog, kind, fields, expected):
    answer = call(client, "start", kind, **{"offerCode": "male_hairloss_basic", **RECIPIENT,
                                            **fields})
    assert set(answer) == START_FIELDS
    assert (answer["status"], answer["errorCode"]) == expected
    assert catalog.sent == []


@pytest.mark.parametrize(("setup", "expected"), [
    ("wrong_code", ("invalid_code", "invalid_code")),
    ("other_identity", ("error", "session_not_found")),
    ("auth_session", ("error", "session_not_found")),
    ("bound_elsewhere", ("conflict", "conflict")),
])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_check_refusals(client, catalog, kind, setup, expected):
    if setup == "auth_session":
        catalog.add_customer(5, "79991234567")
        session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"})["sessionId"]
    else:
        session_id = start(client, kind)["sessionId"]
    code = catalog.codes_sent()[0]
    fields = {"sessionId": session_id, "code": code}
    if setup == "wrong_code":
        fields["code"] = "000000" if code != "000000" else "111111"
    if setup == "other_identity":
        fields["messengerUserId"] = "someone-else"
    if setup == "bound_elsewhere":
        catalog.add_customer(9, "79995550000", **{TG_FIELD: "123456789"})
    answer = call(client, "check", kind, **fields)
    assert set(answer) == CHECK_FIELDS
    assert (answer["status"], answer["errorCode"]) == expected
    assert catalog.created == []


# -- resend: /auth/resend serves recommended sessions; /orders/recommended/resend is its alias
@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("path", ["/auth/resend", "/orders/recommended/resend"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_resend_of_a_recommended_session_completes_its_own_check(client, catalog, kind, path):
    session_id = start(client, kind)["sessionId"]
    answer = post(client, path, {"sessionId": session_id, "channelType": "telegram",
                                 "deliveryRoute": "sms"}, kind)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "sms")
    first, second = catalog.codes_sent()
    if first != second:  # the replaced code no longer serves
        assert call(client, "check", kind, sessionId=session_id,
                    code=first)["status"] == "invalid_code"
    result = call(client, "check", kind, sessionId=session_id, code=second)
    assert (result["status"], result["authorized"]) == ("created", True)
    assert len(catalog.created) == 1


@pytest.mark.parametrize("env_overrides", [{"OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_recommended_resend_is_an_alias_serving_auth_sessions_too(client, catalog, kind):
    catalog.add_customer(5, "79991234567")
    session_id = post(client, "/auth/start", {**TG, "phone": "79991234567"}, kind)["sessionId"]
    answer = call(client, "resend", kind, sessionId=session_id)
    assert answer["status"] == "sent"
    result = post(client, "/auth/check", {**TG, "sessionId": session_id,
                                          "code": catalog.codes_sent()[-1]}, kind)
    assert (result["status"], result["customerId"]) == ("authorized", "5")


@pytest.mark.parametrize("lost", [502, True])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_lost_create_answer_is_found_in_its_own_store(client, catalog, kind, lost):
    """RECOMMENDED_ORDER_SITE (1minoxidil-ru) is not RETAILCRM_SITE (test-site): the
    order's externalId is looked up where it was made, so the check ends with one order."""
    catalog.add_customer(5, "+7 999 123-45-67")
    session_id = start(client, kind)["sessionId"]
    catalog.lose_create_answer = lost  # stored, then the answer is lost
    result = call(client, "check", kind, sessionId=session_id, code=catalog.codes_sent()[0])
    assert result["status"] == "created"
    [order] = catalog.created
    assert (result["orderId"], order["site"]) == (str(order["id"]), "1minoxidil-ru")
    assert catalog.crm_calls("POST /api/v5/orders/create") == ["POST /api/v5/orders/create"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_lost_customer_create_is_found_by_its_external_id(client, catalog, kind):
    """The create landed but its answer was lost: the repeat of the check finds that
    customer by the externalId noted before the create, in its store, and creates none."""
    session_id = start(client, kind)["sessionId"]
    code = catalog.codes_sent()[0]
    catalog.fail["create_customer"] = TRANSIENT
    failed = call(client, "check", kind, sessionId=session_id, code=code)
    assert (failed["status"], failed["errorCode"]) == ("error", "crm_unavailable")
    del catalog.fail["create_customer"]
    creates = [c for c in catalog.calls if c.endswith("customers/create")]
    assert len(creates) == 1
    # What the lost answer's create made, under the externalId the check noted.
    external_id = customer_external_id(OtpSession(session_id, "", "", "", None))
    landed = catalog.add_customer(700900, "+79991234567", **{TG_FIELD: "123456789"})
    landed.update(externalId=external_id, site="1minoxidil-ru")
    again = call(client, "check", kind, sessionId=session_id, code=code)
    assert (again["status"], again["customerId"]) == ("created", "700900")
    assert [c for c in catalog.calls if c.endswith("customers/create")] == creates
    assert f"GET /api/v5/customers/{external_id}" in catalog.calls
    assert len(catalog.created) == 1
