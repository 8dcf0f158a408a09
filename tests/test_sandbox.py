"""The sandbox: stand-ins answer in the real services' shapes, quirks included;
the real gateways work against them over real HTTP; sandbox routes exist only in sandbox."""

from __future__ import annotations

import json
import threading

import fakeredis
import pytest
from werkzeug.serving import make_server

from gurugrow import create_app
from gurugrow.basics.errors import UpstreamRejected, UpstreamUnavailable
from gurugrow.gateways.deduper import DeduperGateway
from gurugrow.gateways.greensms import GreenSmsGateway
from gurugrow.gateways.retailcrm import RetailCrmGateway
from gurugrow.sandbox import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY
from gurugrow.sandbox.run import choose_redis_url
from gurugrow.sandbox.standins import create_standins_app
from tests.conftest import TEST_ENV

CRM_HEADERS = {"X-API-KEY": SANDBOX_RETAILCRM_KEY}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def standins(clock):
    return create_standins_app(clock=clock)


@pytest.fixture
def sb(standins):
    return standins.test_client()


def crm_get(sb, path, **params):
    return sb.get(f"/retailcrm{path}", query_string=params, headers=CRM_HEADERS)


def crm_post(sb, path, **form):
    return sb.post(f"/retailcrm{path}", data=form, headers=CRM_HEADERS)


# -- RetailCRM ------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}])
def test_wrong_key_is_403_envelope(sb, headers):
    response = sb.get("/retailcrm/api/v5/customers", headers=headers)
    assert response.status_code == 403
    assert response.get_json() == {"success": False, "errorMsg": 'Wrong "apiKey" value.'}


def test_rate_limit_answers_503_past_ten_per_second(sb, clock):
    codes = [crm_get(sb, "/api/v5/reference/statuses").status_code for _ in range(11)]
    assert codes == [200] * 10 + [503]
    assert crm_get(sb, "/api/v5/reference/statuses").get_json()["success"] is False
    clock.now += 1.0
    assert crm_get(sb, "/api/v5/reference/statuses").status_code == 200


def test_customer_search_is_loose_and_custom_fields_can_be_empty_list(sb):
    body = crm_get(sb, "/api/v5/customers", **{"filter[name]": "79990000002"}).get_json()
    assert body["success"] is True
    assert sorted(c["id"] for c in body["customers"]) == [1002, 1003]  # "8 999…" matches too
    assert body["pagination"]["totalCount"] == 2
    assert body["customers"][0]["customFields"] == []


@pytest.mark.parametrize(("limit", "status"), [("20", 200), ("50", 200), ("100", 200),
                                               ("10", 400), ("x", 400)])
def test_page_sizes(sb, limit, status):
    response = crm_get(sb, "/api/v5/orders", limit=limit)
    assert response.status_code == status
    if status == 400:
        assert response.get_json()["errors"] == {"limit": "This value should be 20, 50 or 100."}


def test_edit_merges_and_clears_to_empty_list(sb):
    edit = crm_post(sb, "/api/v5/customers/1001/edit", by="id", site="1minoxidil-ru",
                    customer=json.dumps({"customFields": {"bot_vk_account_id": "7"}}))
    assert edit.get_json() == {"success": True, "id": 1001}
    found = crm_get(sb, "/api/v5/customers", **{"filter[customFields][bot_vk_account_id]": "7"})
    assert [c["id"] for c in found.get_json()["customers"]] == [1001]
    crm_post(sb, "/api/v5/customers/1001/edit", by="id",
             customer=json.dumps({"customFields": {"bot_vk_account_id": ""}}))
    customer = crm_get(sb, "/api/v5/customers/1001", by="id").get_json()["customer"]
    assert customer["customFields"] == []


def test_edit_without_by_id_looks_up_external_id(sb):
    response = crm_post(sb, "/api/v5/customers/1001/edit",
                        customer=json.dumps({"customFields": {"x": "1"}}))
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("get", "/reset", "POST"), ("post", "/outbox", "GET"), ("delete", "/stats", "GET")])
def test_a_wrong_method_on_the_sandbox_routes_is_405_json(sb, method, path, allowed):
    response = getattr(sb, method)(path)
    assert (response.status_code, response.get_json()) == (
        405, {"status": "error", "errorCode": "method_not_allowed"})
    assert allowed in response.headers["Allow"]


def test_malformed_json_field_is_400_envelope(sb):
    response = crm_post(sb, "/api/v5/customers/1001/edit", by="id", customer="{nope")
    assert response.status_code == 400
    assert response.get_json()["success"] is False


def test_unknown_offer_becomes_a_free_form_line(sb, standins):
    order = {"customer": {"id": 1001}, "items": [{"offer": {"id": 999999}, "quantity": 1}]}
    response = crm_post(sb, "/api/v5/orders/create", site="1minoxidil-ru",
                        order=json.dumps(order))
    assert response.status_code == 201
    created = response.get_json()["order"]
    assert created["items"][0]["offer"] is None
    assert created["items"][0]["productName"] == "Товар"


def test_order_without_customer_creates_one(sb, standins):
    before = len(standins.extensions["sandbox_state"].customers)
    order = {"firstName": "Новый", "phone": "79995554433",
             "items": [{"offer": {"id": 501}, "quantity": 1}]}
    created = crm_post(sb, "/api/v5/orders/create", order=json.dumps(order)).get_json()
    assert created["order"]["customer"]["id"]
    assert len(standins.extensions["sandbox_state"].customers) == before + 1


def test_duplicate_number_is_refused(sb):
    order = {"number": "12345", "customer": {"id": 1006}, "items": []}
    response = crm_post(sb, "/api/v5/orders/create", order=json.dumps(order))
    assert response.status_code == 400
    assert "number" in response.get_json()["errors"]


def test_reference_is_keyed_by_code(sb):
    statuses = crm_get(sb, "/api/v5/reference/statuses").get_json()["statuses"]
    assert statuses["send-to-delivery"]["group"] == "delivery"
    groups = crm_get(sb, "/api/v5/reference/status-groups").get_json()["statusGroups"]
    assert "cancel-other" in groups["cancel"]["statuses"]


def test_products_filter_is_fuzzy(sb):
    found = crm_get(sb, "/api/v5/store/products", **{"filter[name]": "SET-MALE-BASIC"})
    assert {p["article"] for p in found.get_json()["products"]} == {
        "SET-MALE-BASIC", "SET-MALE-BASIC-OLD"}


def test_unknown_method_is_404_envelope(sb):
    response = crm_get(sb, "/api/v5/nothing-here")
    assert (response.status_code, response.get_json()["success"]) == (404, False)


# -- GreenSMS -------------------------------------------------------------------------
@pytest.mark.parametrize(("route", "form", "expected"), [
    ("telegram", {"to": "79990000001", "txt": "123456"}, "request_id"),
    ("sms", {"to": "79990000001", "txt": "Код 123456"}, "request_id"),
    ("vk", {"to": "79990000001", "txt": "Код 123456", "from": "shop"}, "request_id"),
    ("vk", {"to": "79990000001", "txt": "Код 123456"}, "error"),
    ("telegram", {"to": "79990000001", "txt": "Код 123456"}, "error"),
    ("sms", {"to": "+7 999", "txt": "x"}, "error"),
    ("telegram", {"to": "79990000005", "txt": "123456"}, "error"),
])
def test_greensms_answers(sb, route, form, expected):
    response = sb.post(f"/greensms/{route}/send", data=form,
                       headers={"Authorization": f"Bearer {SANDBOX_GREENSMS_TOKEN}"})
    body = response.get_json()
    assert response.status_code == 200
    assert expected in body
    if expected == "error":
        assert body["code"] == 2


@pytest.mark.parametrize(("headers", "form"), [
    ({}, {"to": "79990000001", "txt": "1"}),
    ({"Authorization": "Bearer nope"}, {"to": "79990000001", "txt": "1"}),
    ({}, {"user": "sandbox", "pass": "wrong", "to": "79990000001", "txt": "1"}),
])
def test_greensms_auth_declined(sb, headers, form):
    response = sb.post("/greensms/sms/send", data=form, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "Authorization declined", "code": 0}


def test_outbox_and_reset(sb):
    sb.post("/greensms/sms/send", json={"user": "sandbox", "pass": "sandbox",
                                        "to": "79990000001", "txt": "Код 4321"})
    [message] = sb.get("/outbox").get_json()["messages"]
    assert (message["route"], message["code"]) == ("sms", "4321")
    crm_post(sb, "/api/v5/customers/1001/edit", by="id",
             customer=json.dumps({"customFields": {"x": "1"}}))
    assert sb.post("/reset").get_json() == {"status": "reset"}
    assert sb.get("/outbox").get_json()["messages"] == []
    customer = crm_get(sb, "/api/v5/customers/1001", by="id").get_json()["customer"]
    assert customer["customFields"] == []


# -- deduper --------------------------------------------------------------------------
@pytest.mark.parametrize(("phone", "status", "final"), [
    ("79990000002", "resolved", "1003"),
    ("79990000003", "not_found", None),
    ("79990000001", "single", "1001"),
    ("79990000004", "not_found", None),
])
def test_deduper_answers(sb, phone, status, final):
    body = sb.post("/deduper/api/dedupe/auto-resolve", headers={"X-API-Key": SANDBOX_DEDUPE_KEY},
                   json={"phone": phone, "site": "s", "requestSource": "auth-backend",
                         "requestId": "r-1", "waitForConfirmation": False}).get_json()
    assert (body["status"], body["finalCustomerId"], body["requestId"]) == (status, final, "r-1")


def test_deduper_checks_its_key(sb):
    response = sb.post("/deduper/api/dedupe/auto-resolve", json={"phone": "79990000002"})
    assert response.status_code == 401


# -- the real gateways over real HTTP ---------------------------------------------------
@pytest.fixture
def live_standins():
    app = create_standins_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app.extensions["sandbox_state"]
    server.shutdown()


def test_gateways_against_the_live_standins(live_standins):
    base, state = live_standins
    state.rate_limit = 0  # the rate limit has its own test below
    crm = RetailCrmGateway(f"{base}/retailcrm", SANDBOX_RETAILCRM_KEY, "1minoxidil-ru",
                           sleep=lambda _: None)
    assert [c.id for c in crm.find_customers_by_phone("79990000002")] == ["1002", "1003"]
    assert [c.id for c in crm.find_customers_by_custom_field(
        "bot_telegram_account_id", "100500")] == ["1006"]
    crm.edit_customer_custom_fields("1001", {"bot_max_account_id": "m-1"})
    assert state.customers["1001"]["customFields"] == {"bot_max_account_id": "m-1"}
    assert len(crm.list_customer_orders("1006", 20)) == 8
    assert crm.get_statuses()["complete"]["group"] == "complete"
    assert [o["id"] for o in crm.find_offers(["501", "504"], [], [])] == [501, 504]
    created = crm.create_order({"customer": {"id": 1001}, "externalId": "e-1",
                                "items": [{"offer": {"id": 501}, "quantity": 1}]})
    found = crm.get_order_by_external_id("e-1")
    assert found is not None and found.id == created.id and found.external_id == "e-1"
    sms = GreenSmsGateway(f"{base}/greensms", token=SANDBOX_GREENSMS_TOKEN, vk_from="shop")
    assert sms.send_code("telegram", "79990000001", "123456", "Код 123456")
    with pytest.raises(UpstreamRejected):
        sms.send_code("telegram", "79990000005", "123456", "Код 123456")
    assert state.outbox[0]["code"] == "123456"
    dedupe = DeduperGateway(f"{base}/deduper", SANDBOX_DEDUPE_KEY)
    assert dedupe.auto_resolve("79990000002", "s", "r").final_customer_id == "1003"
    state.fail["statuses"] = (405, "<html><body>405 Not Allowed</body></html>")
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        crm.get_statuses()


def test_crm_gateway_retries_rate_limited_reads(live_standins):
    base, state = live_standins
    state.rate_limit = 2
    slept: list[float] = []
    crm = RetailCrmGateway(f"{base}/retailcrm", SANDBOX_RETAILCRM_KEY, "", max_retries=3,
                           sleep=lambda s: (slept.append(s), state._window.clear()))
    for _ in range(4):
        assert crm.get_statuses()
    assert slept  # some reads hit 503 and were retried


# -- sandbox mode wiring ----------------------------------------------------------------
def test_sandbox_routes_only_in_sandbox_mode():
    plain = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis()).test_client()
    assert plain.get("/sandbox/outbox").status_code == 404
    assert plain.post("/sandbox/reset").status_code == 404
    sandbox = create_app({"GURUGROW_SANDBOX": "1"}, redis_client=fakeredis.FakeRedis())
    client = sandbox.test_client()
    assert client.get("/sandbox/outbox").get_json() == {"messages": []}
    assert client.post("/sandbox/reset").get_json() == {"status": "reset"}


SANDBOX_TOKEN = "sandbox-caller-token-0123456789"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"X-API-Token": "wrong-token-0123456789abc"}, 401),
    ({"Authorization": f"Bearer {SANDBOX_TOKEN}"}, 200), ({"X-API-Token": SANDBOX_TOKEN}, 200)])
def test_the_sandbox_own_routes_honour_api_tokens(headers, status):
    """With API_TOKENS set, the outbox (every code) and the reset (deletes the prefix's
    keys) refuse a caller without the token, and a refused reset deletes nothing."""
    from tests.conftest import anonymous_client

    redis_client = fakeredis.FakeRedis()
    app = create_app({"GURUGROW_SANDBOX": "1", "API_TOKENS": SANDBOX_TOKEN},
                     redis_client=redis_client)
    redis_client.set("gg:kept", "1")
    client = anonymous_client(app)
    outbox = client.get("/sandbox/outbox", headers=headers)
    reset = client.post("/sandbox/reset", headers=headers)
    assert (outbox.status_code, reset.status_code) == (status, status)
    if status == 401:
        assert outbox.get_json()["errorCode"] == reset.get_json()["errorCode"] == "unauthorized"
        assert redis_client.get("gg:kept") == b"1"
    else:
        assert outbox.get_json() == {"messages": []}
        assert reset.get_json() == {"status": "reset"} and redis_client.get("gg:kept") is None


def test_sandbox_needs_no_configuration():
    settings = create_app({"GURUGROW_SANDBOX": "1", "APP_PORT": "8123"},
                          redis_client=fakeredis.FakeRedis()).extensions["gurugrow"].settings
    assert settings.retailcrm_base_url == "http://127.0.0.1:8123/sandbox/retailcrm"
    assert settings.greensms_base_url == "http://127.0.0.1:8123/sandbox/greensms"


@pytest.mark.parametrize(("env", "which", "expected"), [
    ({"REDIS_URL": "redis://example:6379/1"}, None, "redis://example:6379/1"),
    ({}, None, "memory://"),
])
def test_sandbox_redis_choice(monkeypatch, env, which, expected):
    monkeypatch.setattr("gurugrow.sandbox.run.shutil.which", lambda _: which)
    assert choose_redis_url(env) == expected


def test_embedded_store_is_refused_outside_sandbox():
    from gurugrow import ConfigError, Settings

    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.load({**TEST_ENV, "REDIS_URL": "memory://"})
