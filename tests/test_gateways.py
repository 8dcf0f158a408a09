"""Gateway transport rules, with raw upstream answers mocked by ``responses``."""

from __future__ import annotations

import json
from http.client import RemoteDisconnected
from urllib.parse import parse_qs

import fakeredis
import pytest
import requests
from prometheus_client import REGISTRY
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from gurugrow.basics.errors import (
    NotFound,
    UpstreamConnectionDropped,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gurugrow.gateways.deduper import DeduperGateway
from gurugrow.gateways.greensms import GreenSmsGateway, SendAnswer
from gurugrow.gateways.retailcrm import Customer, RetailCrmGateway
from gurugrow.governor import CrmQuota

CRM = "https://crm.example"
KEY = "crm-key-do-not-leak"


@pytest.fixture
def slept():
    return []


@pytest.fixture
def crm(slept):
    return RetailCrmGateway(CRM + "/", KEY, "site-1", timeout=7, connect_timeout=2,
                            max_retries=2, sleep=slept.append)


def test_every_call_has_connect_and_read_timeouts_and_key_only_in_header(rsps, crm):
    rsps.get(f"{CRM}/api/v5/reference/statuses", json={"success": True, "statuses": {}})
    crm.get_statuses()
    call = rsps.calls[0]
    assert call.request.req_kwargs["timeout"] == (2, 7)
    assert call.request.headers["X-API-KEY"] == KEY
    assert KEY not in call.request.url


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"success": False, "errorMsg": "Errors", "errors": {"phone": "bad"}}, UpstreamRejected),
    (400, {"success": False, "errorMsg": "Errors", "errors": ["bad"]}, UpstreamRejected),
    (200, {"success": False, "errorMsg": "Access denied"}, UpstreamRejected),
    (403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'}, UpstreamRejected),
    (404, {"success": False, "errorMsg": "Not found"}, NotFound),
    (500, {"success": False, "errorMsg": "Internal"}, UpstreamUnavailable),
    (405, "<html>Not Allowed</html>", UpstreamUnavailable),
    (200, "{truncated", UpstreamUnavailable),
    (200, [], UpstreamUnavailable),
])
def test_crm_answers_become_typed_errors(rsps, crm, status, body, error):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    rsps.post(f"{CRM}/api/v5/customers/1/edit", status=status, **kwargs)
    with pytest.raises(error):
        crm.edit_customer_custom_fields("1", {"a": "b"})


def test_rejection_keeps_the_errors(rsps, crm):
    rsps.post(f"{CRM}/api/v5/orders/create", status=400,
              json={"success": False, "errorMsg": "Order is not loaded",
                    "errors": {"number": "exists"}})
    with pytest.raises(UpstreamRejected) as caught:
        crm.create_order({"customer": {"id": 1}})
    assert caught.value.errors == {"number": "exists"} and caught.value.status_code == 400


@pytest.mark.parametrize("exc", [requests.ConnectTimeout, requests.ReadTimeout,
                                 requests.ConnectionError])
def test_network_failures_are_unavailable(rsps, crm, exc):
    rsps.get(f"{CRM}/api/v5/reference/statuses", body=exc("boom"))
    with pytest.raises(UpstreamUnavailable) as caught:
        crm.get_statuses()
    assert isinstance(caught.value.__cause__, exc)


def test_reads_are_retried_on_503_and_429_a_bounded_number_of_times(rsps, crm, slept):
    url = f"{CRM}/api/v5/reference/statuses"
    rsps.get(url, status=503, json={"success": False, "errorMsg": "Rate limit"})
    rsps.get(url, status=429, json={"success": False, "errorMsg": "Too many"})
    rsps.get(url, json={"success": True, "statuses": {"new": {}}})
    assert crm.get_statuses() == {"new": {}}
    assert len(slept) == 2 and all(0 < s <= 3 for s in slept)


def test_retries_give_up(rsps, crm, slept):
    rsps.get(f"{CRM}/api/v5/reference/statuses", status=503,
             json={"success": False, "errorMsg": "Rate limit"})
    with pytest.raises(UpstreamUnavailable):
        crm.get_statuses()
    assert len(rsps.calls) == 3


def dropped(note: str = "Connection aborted.") -> requests.ConnectionError:
    """What requests raises when an open connection is closed under a call (a reset, or
    a pooled keep-alive connection the server had just closed)."""
    return requests.ConnectionError(ProtocolError(note, RemoteDisconnected(
        "Remote end closed connection without response")))


def refused() -> requests.ConnectionError:
    """What requests raises when no connection could be made."""
    return requests.ConnectionError(MaxRetryError(None, CRM, NewConnectionError(
        None, "Connection refused")))


@pytest.mark.parametrize(("failure", "calls"), [
    (dropped, 2),  # sent again on a new connection, and answered
    (refused, 1),  # nobody listens: a repeat would only wait longer
    (requests.ReadTimeout, 1),  # the CRM is slow: a repeat would double the wait
])
def test_a_read_is_sent_again_only_after_a_dropped_connection(rsps, crm, failure, calls):
    url = f"{CRM}/api/v5/reference/statuses"
    rsps.get(url, body=failure())
    if calls == 2:
        rsps.get(url, json={"success": True, "statuses": {"new": {}}})
        assert crm.get_statuses() == {"new": {}}
    else:
        with pytest.raises(UpstreamUnavailable):
            crm.get_statuses()
    assert len(rsps.calls) == calls


def test_a_read_dropped_every_time_gives_up_after_the_retries(rsps, crm):
    rsps.get(f"{CRM}/api/v5/reference/statuses", body=dropped())
    with pytest.raises(UpstreamConnectionDropped):
        crm.get_statuses()
    assert len(rsps.calls) == 3


def test_a_write_is_never_sent_again_after_a_dropped_connection(rsps, crm):
    # The CRM may have applied it before the connection closed.
    rsps.post(f"{CRM}/api/v5/orders/create", body=dropped())
    with pytest.raises(UpstreamUnavailable):
        crm.create_order({"customer": {"id": 1}})
    assert len(rsps.calls) == 1


def test_writes_are_never_retried(rsps, crm):
    rsps.post(f"{CRM}/api/v5/orders/create", status=503,
              json={"success": False, "errorMsg": "Rate limit"})
    with pytest.raises(UpstreamUnavailable):
        crm.create_order({"customer": {"id": 1}})
    assert len(rsps.calls) == 1


THROTTLED = {503: {"success": False, "errorMsg": "Rate limit exceeded"},
             429: {"success": False, "errorMsg": "Too many requests"}}


@pytest.mark.parametrize(("first", "second", "calls", "ok"), [
    (503, 200, 2, True), (429, 200, 2, True),  # the quota refused it: once more
    (503, 503, 2, False), (429, 503, 2, False),  # once, not more
    (502, 200, 1, False), (500, 200, 1, False), (504, 200, 1, False),  # may have applied
    ("timeout", 200, 1, False), ("dropped", 200, 1, False),
])
def test_an_edit_is_repeated_once_only_after_a_503_or_429(rsps, crm, first, second, calls,
                                                          ok):
    url = f"{CRM}/api/v5/customers/42/edit"
    if first == "timeout":
        rsps.post(url, body=requests.ReadTimeout())
    elif first == "dropped":
        rsps.post(url, body=dropped())
    else:
        rsps.post(url, status=first, json=THROTTLED.get(first, {"success": False}))
    if calls == 2:  # else a repeat would get the first answer again, and count
        rsps.post(url, status=second, json={"success": True, "id": 42} if second == 200
                  else THROTTLED[second])
    if ok:
        crm.edit_customer_custom_fields("42", {"bot_telegram_account_id": "1"})
    else:
        with pytest.raises(UpstreamUnavailable):
            crm.edit_customer_custom_fields("42", {"bot_telegram_account_id": "1"})
    assert len(rsps.calls) == calls


@pytest.mark.parametrize("call", ["read dropped", "edit throttled"])
def test_a_call_sent_again_takes_a_slot_of_the_shared_bucket_again(rsps, slept, call):
    bucket = CrmQuota(fakeredis.FakeRedis(), "gg:", rate_limit=10000, queue_seconds=5,
                      read_horizon_seconds=1)
    crm = RetailCrmGateway(CRM, KEY, "site-1", max_retries=2, sleep=slept.append,
                           quota=bucket)
    if call == "read dropped":
        url = f"{CRM}/api/v5/reference/statuses"
        rsps.get(url, body=dropped())
        rsps.get(url, json={"success": True, "statuses": {}})
        send = crm.get_statuses
    else:
        url = f"{CRM}/api/v5/customers/42/edit"
        rsps.post(url, status=503, json=THROTTLED[503])
        rsps.post(url, json={"success": True, "id": 42})
        send = lambda: crm.edit_customer_custom_fields("42", {"f": "1"})  # noqa: E731
    before = REGISTRY.get_sample_value("gurugrow_crm_slots_total", {"priority": "journey"})
    send()
    after = REGISTRY.get_sample_value("gurugrow_crm_slots_total", {"priority": "journey"})
    assert after - (before or 0) == 2 and len(rsps.calls) == 2


def test_edit_sends_by_id_site_and_json_customer(rsps, crm):
    rsps.post(f"{CRM}/api/v5/customers/42/edit", json={"success": True, "id": 42})
    crm.edit_customer_custom_fields("42", {"bot_telegram_account_id": "Ж1"})
    form = parse_qs(rsps.calls[0].request.body)
    assert form["by"] == ["id"] and form["site"] == ["site-1"]
    assert json.loads(form["customer"][0]) == {"customFields": {"bot_telegram_account_id": "Ж1"}}


def test_phone_search_compares_numbers_exactly(rsps, crm):
    rsps.get(f"{CRM}/api/v5/customers", json={"success": True, "customers": [
        {"id": 1, "phones": [{"number": "8 (999) 123-45-67"}]},
        {"id": 2, "phones": [{"number": "+7 999 123-45-678"}]},
        {"id": 3, "phones": [{"number": "9991234567"}], "customFields": []},
        {"id": 4}]})
    assert [c.id for c in crm.find_customers_by_phone("79991234567")] == ["1", "3"]
    assert "filter%5Bname%5D=79991234567" in rsps.calls[0].request.url


def test_customers_are_parsed_defensively(rsps, crm):
    rsps.get(f"{CRM}/api/v5/customers", json={"success": True, "customers": [
        {"id": 5, "phones": ["79991234567", {"number": 79991234567}], "customFields": [],
         "site": "shop", "externalId": "e-5"},
        {"phones": [{"number": "79991234567"}]}, "not a customer"]})
    assert crm.find_customers_by_phone("79991234567") == [Customer(
        id="5", phones=("79991234567",), custom_fields={}, site="shop", external_id="e-5")]


# -- GreenSMS -------------------------------------------------------------------------
SMS = "https://sms.example"


@pytest.mark.parametrize(("kwargs", "header", "body_auth"), [
    ({"token": "tok"}, "Bearer tok", {}),
    ({"user": "u", "password": "p"}, None, {"user": "u", "pass": "p"}),
])
def test_greensms_sends_a_json_body_with_auth_in_a_header_or_the_body(rsps, kwargs, header,
                                                                      body_auth):
    rsps.post(f"{SMS}/telegram/send", json={"request_id": "r-1"})
    gateway = GreenSmsGateway(SMS, telegram_ttl=300, **kwargs)
    assert gateway.send_code("telegram", "79991234567", "123456", "Код 123456") == (
        SendAnswer("r-1"))
    request = rsps.calls[0].request
    body = json.loads(request.body)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers.get("Authorization") == header
    assert (body["txt"], body["to"], body["ttl"]) == ("123456", "79991234567", 300)
    assert {k: body[k] for k in body_auth} == body_auth
    assert "?" not in request.url


def test_an_sms_code_is_sent_hidden_from_the_message_history(rsps):
    rsps.post(f"{SMS}/sms/send", json={"request_id": "r-3"})
    GreenSmsGateway(SMS, token="t", sms_from="Shop").send_code("sms", "79991234567", "4321",
                                                               "Ваш код: 4321")
    body = json.loads(rsps.calls[0].request.body)
    assert body == {"to": "79991234567", "txt": "Ваш код: 4321", "from": "Shop",
                    "hidden": "4321"}


def test_vk_without_a_sender_is_not_sent(rsps):
    gateway = GreenSmsGateway(SMS, token="t")
    assert gateway.sender("vk") == ""
    with pytest.raises(UpstreamRejected):
        gateway.send_code("vk", "79991234567", "1234", "Код 1234")
    assert len(rsps.calls) == 0  # GreenSMS would refuse it (from is required)


class Ticking:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_pass_token_is_kept_until_shortly_before_it_expires(rsps):
    tokens = iter(["first", "second", "third"])
    rsps.add_callback("POST", f"{SMS}/account/token", callback=lambda request: (
        200, {}, json.dumps({"access_token": next(tokens)})))
    rsps.get(f"{SMS}/telegram/status", json={"time": "t", "status": "Delivery success",
                                             "status_code": 1})
    clock = Ticking()
    gateway = GreenSmsGateway(SMS, user="u", password="p", clock=clock)
    rid = "dc2bac6d-f375-4e19-9a02-ef0148991635"
    for _ in range(3):
        assert gateway.delivery_status("telegram", rid) == "delivered"
    clock.now += 300 - 31  # still within the token's life, less the margin
    gateway.delivery_status("telegram", rid)
    clock.now += 2  # now within the margin: a fresh token
    gateway.delivery_status("telegram", rid)
    calls = [(c.request.method, c.request.url.split("?")[0].removeprefix(SMS),
              c.request.headers.get("Authorization")) for c in rsps.calls]
    assert [c for c in calls if c[0] == "POST"] == [("POST", "/account/token", None)] * 2
    assert [c[2] for c in calls if c[0] == "GET"] == ["Bearer first"] * 4 + ["Bearer second"]
    token_body = json.loads(rsps.calls[0].request.body)
    assert token_body == {"user": "u", "pass": "p", "expire": 300}


def test_a_declined_token_is_dropped_and_the_next_read_gets_a_new_one(rsps):
    tokens = iter(["stale", "fresh"])
    rsps.add_callback("POST", f"{SMS}/account/token", callback=lambda request: (
        200, {}, json.dumps({"access_token": next(tokens)})))
    rsps.get(f"{SMS}/sms/status", json={"error": "Authorization declined", "code": 0})
    rsps.get(f"{SMS}/sms/status", json={"time": "t", "status": "Delivery failure",
                                        "status_code": 2})
    gateway = GreenSmsGateway(SMS, user="u", password="p")
    rid = "dc2bac6d-f375-4e19-9a02-ef0148991635"
    with pytest.raises(UpstreamRejected):
        gateway.delivery_status("sms", rid)
    assert gateway.delivery_status("sms", rid) == "failed"
    auth = [c.request.headers.get("Authorization") for c in rsps.calls if c.request.method == "GET"]
    assert auth == ["Bearer stale", "Bearer fresh"]


@pytest.mark.parametrize(("status", "body", "error"), [
    (200, {"error": "Insufficient funds", "code": -1}, UpstreamRejected),
    (401, {"error": "Authorization declined", "code": 0}, UpstreamRejected),
    (200, {}, UpstreamUnavailable),
    (502, "<html>Bad Gateway</html>", UpstreamUnavailable),
])
def test_greensms_failures(rsps, status, body, error):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    rsps.post(f"{SMS}/sms/send", status=status, **kwargs)
    with pytest.raises(error):
        GreenSmsGateway(SMS, token="t").send_code("sms", "79991234567", "1234", "Код 1234")
    assert len(rsps.calls) == 1  # a paid send is never repeated


def test_vk_sends_text_and_sender(rsps):
    rsps.post(f"{SMS}/vk/send", json={"request_id": "r-2"})
    GreenSmsGateway(SMS, token="t", vk_from="shop").send_code("vk", "79991234567", "1234",
                                                               "Код 1234")
    body = json.loads(rsps.calls[0].request.body)
    assert body["txt"] == "Код 1234" and body["from"] == "shop" and "hidden" not in body


# -- deduper --------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "usable", "final"), [
    ({"status": "resolved", "finalCustomerId": 7}, True, "7"),
    ({"status": "single", "finalCustomerId": "8"}, True, "8"),
    ({"status": "resolved_with_fallback_primary", "finalCustomerId": "9"}, True, "9"),
    ({"status": "resolved", "finalCustomerId": ""}, False, None),
    ({"status": "not_found", "finalCustomerId": None}, False, None),
    ({"status": "error"}, False, None),
])
def test_deduper_verdicts(rsps, answer, usable, final):
    rsps.post("https://dd.example/api/dedupe/auto-resolve", json=answer)
    result = DeduperGateway("https://dd.example", "dk").auto_resolve("79991234567", "s", "rid")
    assert (result.usable, result.final_customer_id) == (usable, final)
    request = rsps.calls[0].request
    assert request.headers["X-API-Key"] == "dk"
    assert json.loads(request.body) == {"phone": "79991234567", "site": "s",
                                        "requestSource": "auth-backend", "requestId": "rid",
                                        "waitForConfirmation": False}


@pytest.mark.parametrize(("status", "body", "error"), [
    (500, {"detail": "x"}, UpstreamUnavailable),
    (401, {"detail": "key"}, UpstreamRejected),
    (200, "<html/>", UpstreamUnavailable),
])
def test_deduper_failures(rsps, status, body, error):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    rsps.post("https://dd.example/api/dedupe/auto-resolve", status=status, **kwargs)
    with pytest.raises(error):
        DeduperGateway("https://dd.example", "dk").auto_resolve("7999", "s", "r")


def test_unconfigured_deduper_is_unavailable():
    with pytest.raises(UpstreamUnavailable):
        DeduperGateway("", "").auto_resolve("7999", "s", "r")


# -- setup calls (flask gurugrow doctor / create-fields) ------------------------------
def _field(code: str) -> dict:
    return {"code": code, "name": code, "type": "string", "entity": "customer"}


def test_custom_fields_are_listed_page_by_page(rsps, crm):
    url = f"{CRM}/api/v5/custom-fields"
    rsps.get(url, json={"success": True, "customFields": [_field("a"), _field("b")],
                        "pagination": {"currentPage": 1, "totalPageCount": 2}})
    rsps.get(url, json={"success": True,
                        "customFields": [_field("c"), {**_field("o"), "entity": "order"}],
                        "pagination": {"currentPage": 2, "totalPageCount": 2}})
    assert [f["code"] for f in crm.list_custom_fields("customer")] == ["a", "b", "c"]
    queries = [parse_qs(call.request.url.split("?", 1)[1]) for call in rsps.calls]
    assert [q["page"] for q in queries] == [["1"], ["2"]]
    assert all(q["filter[entity]"] == ["customer"] and q["limit"] == ["100"] for q in queries)
    assert all(call.request.headers["X-API-KEY"] == KEY for call in rsps.calls)


@pytest.mark.parametrize(("status", "body", "error"), [
    (403, {"success": False, "errorMsg": "Access denied"}, UpstreamRejected),
    (503, {"success": False, "errorMsg": "Rate limit"}, UpstreamUnavailable),
])
def test_custom_field_listing_failures(rsps, crm, status, body, error):
    rsps.get(f"{CRM}/api/v5/custom-fields", status=status, json=body)
    with pytest.raises(error):
        crm.list_custom_fields("customer")


def test_custom_field_create_sends_one_json_field_once(rsps, crm):
    url = f"{CRM}/api/v5/custom-fields/customer/create"
    rsps.post(url, json={"success": True, "code": "bot_vk_account_id"})
    crm.create_custom_field("customer", "bot_vk_account_id", "VK account id (bot)")
    form = parse_qs(rsps.calls[0].request.body)
    assert json.loads(form["customField"][0]) == {
        "name": "VK account id (bot)", "code": "bot_vk_account_id", "type": "string",
        "displayArea": "main_data"}
    rsps.post(url, status=503, json={"success": False, "errorMsg": "Rate limit"})
    with pytest.raises(UpstreamUnavailable):
        crm.create_custom_field("customer", "x", "X")
    assert len(rsps.calls) == 2  # a create is never repeated


def test_balance_with_a_token_sends_it_as_bearer(rsps):
    rsps.get(f"{SMS}/account/balance", json={"balance": "12.50"})
    assert GreenSmsGateway(SMS, token="tok").account_balance() == "12.50"
    request = rsps.calls[0].request
    assert request.headers["Authorization"] == "Bearer tok" and "?" not in request.url


def test_balance_with_user_and_pass_gets_a_token_from_the_body(rsps):
    rsps.post(f"{SMS}/account/token", json={"access_token": "short-lived"})
    rsps.get(f"{SMS}/account/balance", json={"balance": 3})
    assert GreenSmsGateway(SMS, user="u", password="p").account_balance() == "3"
    token_call, balance_call = (call.request for call in rsps.calls)
    body = json.loads(token_call.body)
    assert (body["user"], body["pass"]) == ("u", "p") and "?" not in token_call.url
    assert "Authorization" not in token_call.headers
    assert balance_call.headers["Authorization"] == "Bearer short-lived"
    assert "p" not in balance_call.url.split("//", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize(("path", "status", "body", "error", "http_status", "code"), [
    ("/account/balance", 401, {"error": "Authorization declined", "code": 0},
     UpstreamRejected, 401, 0),
    ("/account/balance", 200, {"error": "Authorization declined", "code": 0},
     UpstreamRejected, 200, 0),
    ("/account/balance", 200, {}, UpstreamUnavailable, None, None),
    ("/account/balance", 502, "<html>Bad Gateway</html>", UpstreamUnavailable, None, None),
    ("/account/token", 401, {"error": "Authorization declined", "code": 0},
     UpstreamRejected, 401, 0),
    ("/account/token", 200, {}, UpstreamUnavailable, None, None),
])
def test_balance_failures(rsps, path, status, body, error, http_status, code):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    method = rsps.post if path == "/account/token" else rsps.get
    method(f"{SMS}{path}", status=status, **kwargs)
    gateway = (GreenSmsGateway(SMS, user="u", password="p") if path == "/account/token"
               else GreenSmsGateway(SMS, token="t"))
    with pytest.raises(error) as caught:
        gateway.account_balance()
    if http_status is not None:
        assert caught.value.status_code == http_status and caught.value.errors["code"] == code


def test_deduper_probe_asks_about_a_phone_nobody_has(rsps):
    rsps.post("https://dd.example/api/dedupe/auto-resolve",
              json={"status": "not_found", "finalCustomerId": None})
    assert DeduperGateway("https://dd.example", "dk").probe("s") == "not_found"
    request = rsps.calls[0].request
    body = json.loads(request.body)
    assert request.headers["X-API-Key"] == "dk"
    assert (body["phone"], body["site"], body["waitForConfirmation"]) == (
        "70000000000", "s", False)


@pytest.mark.parametrize(("status", "body", "error", "http_status"), [
    (401, {"detail": "Invalid API key"}, UpstreamRejected, 401),
    (422, {"detail": "phone"}, UpstreamRejected, 422),
    (503, {"detail": "down"}, UpstreamUnavailable, None),
    (200, {"ok": True}, UpstreamUnavailable, None),
    (200, "<html/>", UpstreamUnavailable, None),
])
def test_deduper_probe_failures(rsps, status, body, error, http_status):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    rsps.post("https://dd.example/api/dedupe/auto-resolve", status=status, **kwargs)
    with pytest.raises(error) as caught:
        DeduperGateway("https://dd.example", "dk").probe("s")
    if http_status is not None:
        assert caught.value.status_code == http_status


@pytest.mark.parametrize("trust_env", [False, True])
def test_a_redirect_is_not_followed_and_answers_unavailable(rsps, trust_env):
    """A POST turned into a GET at the redirect's target would be a wrong call."""
    crm = RetailCrmGateway(CRM, KEY, "site-1", timeout=7, connect_timeout=2, max_retries=0)
    crm._http.session.trust_env = trust_env
    rsps.post(f"{CRM}/api/v5/customers/1/edit", status=302, body="<html>Moved</html>",
              headers={"Location": f"{CRM}/login"})
    # Followed, the redirect would reach an unregistered URL: ConnectionError, not this.
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        crm.edit_customer_custom_fields("1", {"a": "b"})
    assert [c.request.url for c in rsps.calls] == [f"{CRM}/api/v5/customers/1/edit"]


@pytest.mark.parametrize("trust_env", [False, True])
def test_session_headers_and_the_request_id_go_with_every_call(rsps, trust_env):
    crm = RetailCrmGateway(CRM, KEY, "site-1", timeout=7, connect_timeout=2, max_retries=0)
    crm._http.session.trust_env = trust_env
    rsps.get(f"{CRM}/api/v5/reference/statuses", json={"success": True, "statuses": {}})
    crm.get_statuses()
    sent = rsps.calls[0].request
    assert sent.headers["User-Agent"] == "gurugrow/1.0"
    assert sent.headers["X-API-KEY"] == KEY
    assert "X-Request-ID" in sent.headers
    assert rsps.calls[0].request.req_kwargs["timeout"] == (2, 7)


def test_history_ids_are_taken_as_integers_or_digits_and_nothing_else(rsps, crm):
    """History's value shapes are unsettled: an id sent as digits still counts (a page of
    such records is not mistaken for an empty, drained history); other ids are dropped."""
    records = [{"id": 7, "field": "status"}, {"id": "8", "field": "status"},
               {"id": True}, {"id": "9a"}, {"id": None}, "not a record"]
    rsps.get(f"{CRM}/api/v5/orders/history",
             json={"success": True, "history": records, "pagination": {"totalPageCount": 1}})
    found, pages = crm.history("orders", since_id=6)
    assert ([r["id"] for r in found], pages) == ([7, 8], 1)


def test_orders_looked_up_are_parsed_defensively(rsps, crm):
    good = {"id": 7, "number": "A-1", "site": "shop", "customer": {"id": 42},
            "items": [{"quantity": 2}, "not an item"], "externalId": "e-7"}
    rsps.get(f"{CRM}/api/v5/orders", json={"success": True, "orders": [
        good, {"number": "A-1"}, "not an order",
        {"id": 8, "number": "A-1", "customer": [], "items": {}}]})
    found = crm.find_orders_by_number("A-1")
    assert [(o.id, o.number, o.site, o.customer_id, o.external_id, o.items) for o in found] \
        == [("7", "A-1", "shop", "42", "e-7", ({"quantity": 2},)),
            ("8", "A-1", None, None, None, ())]
    assert found[0].raw == good
