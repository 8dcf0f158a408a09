"""Hostile input through HTTP: no request value steers a RetailCRM path or query, a
metric label or a log line; odd numbers, codes, bodies and ids get their contract answer.
"""

from __future__ import annotations

import io
import json
import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit

import fakeredis
import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from prometheus_client.parser import text_string_to_metric_families

from gurugrow import create_app
from gurugrow.api.fields import clean_text
from gurugrow.gateways.retailcrm import RetailCrmGateway
from tests.conftest import TEST_ENV
from tests.helpers import BODY_KINDS, TG, get, post
from tests.upstreams import CRM, Upstreams

TG_FIELD = "bot_telegram_account_id"
BOUND = {"channelType": "telegram", "messengerUserId": "777"}
PROBES = ["../customers/1001", "../../credentials", "5008?by=externalId&x=", "1/edit",
          "%2e%2e%2fcustomers", "1#x", "1;by=externalId", "1&limit=1000", " 12 ", "١٢",
          "12\u00b2", "0x1f", "-1", "1" * 25, "\u2028", "a b", "12%00"]
hostile = st.one_of(st.sampled_from(PROBES), st.text(max_size=30),
                    st.integers(min_value=-10**6, max_value=10**12).map(str))

# Every RetailCRM path the service may call: ids only ever as digits.
CRM_ROUTES = [re.compile(p) for p in (
    r"/api/v5/customers", r"/api/v5/customers/\d+", r"/api/v5/customers/\d+/edit",
    r"/api/v5/orders", r"/api/v5/orders/\d+", r"/api/v5/orders/create",
    r"/api/v5/store/offers", r"/api/v5/store/products", r"/api/v5/reference/statuses",
    r"/api/v5/reference/status-groups", r"/api/v5/customers/create", r"/api/v5/settings")]
CRM_QUERY_KEYS = {"filter[name]", "filter[customFields][bot_telegram_account_id]", "limit",
                  "by", "site", "filter[customerId]", "filter[numbers][]", "filter[ids][]",
                  "filter[externalIds][]", "filter[xmlIds][]", "page", "filter[sites][]"}


@pytest.fixture(scope="module")
def world():
    """One app over the stand-ins (a bound customer with one order), for many examples."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        upstreams = Upstreams(rsps)
        upstreams.add_customer(1001, "79990000001", **{TG_FIELD: "777",
                                                       "chatbot_interacted": "true"})
        upstreams.add_offer(501, "Миноксидил 5%")
        upstreams.add_order(5008, 1001, number="A-5008")
        app = create_app({**TEST_ENV, "OTP_RESEND_COOLDOWN_SECONDS": "0",
                          "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0",
                          "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "100000",
                          "CONTACT_VERIFIED_CHANNELS": "telegram",
                          # every example must reach RetailCRM, not the binding/orders caches
                          "BINDING_CACHE_SECONDS": "0", "ORDERS_CACHE_SECONDS": "0"},
                         redis_client=fakeredis.FakeRedis())
        yield app.test_client(), rsps, upstreams


def crm_calls(rsps) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(method, raw path, query pairs) of every RetailCRM request sent."""
    found = []
    for call in rsps.calls:
        if call.request.url.startswith(CRM):
            parts = urlsplit(call.request.url)
            found.append((call.request.method, parts.path,
                          parse_qsl(parts.query, keep_blank_values=True)))
    return found


def _send(client, method: str, path: str, body: dict, kind: str):
    if method == "GET":
        return client.get(path, query_string=body)
    if kind == "json":
        return client.post(path, data=json.dumps(body), content_type="application/json")
    return client.post(path, data=body)


def _is_text(value: str) -> bool:
    try:
        return clean_text(value, 64) is not None
    except ValidationError:
        return False


def _as_id(value: str) -> str | None:
    text = value.strip()
    return str(int(text)) if text.isascii() and text.isdigit() and len(text) <= 20 else None


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from([
    ("POST", "/orders/repeat", "sourceOrderId"), ("POST", "/orders/repeat", "sourceOrderNumber"),
    ("POST", "/orders/repeat", "customerId"), ("GET", "/auth/status", "customerId"),
    ("GET", "/orders", "customerId"), ("POST", "/auth/unlink", "customerId"),
    ("GET", "/auth/status", "messengerUserId"), ("POST", "/auth/start", "phone"),
    ("POST", "/orders/recommended/preview", "offerCode"), ("POST", "/auth/contact", "phone"),
    ("POST", "/auth/contact", "contactUserId")]),
    value=hostile, kind=st.sampled_from(BODY_KINDS))
def test_no_request_value_changes_a_crm_path_or_query(world, case, value, kind):
    client, rsps, upstreams = world
    upstreams.customers["1001"]["customFields"][TG_FIELD] = "777"  # an unlink may clear it
    method, path, field = case
    body = {**BOUND, "phone": "79990000001", "offerCode": "male_hairloss_basic",
            "contactUserId": BOUND["messengerUserId"], field: value}
    if path == "/orders/repeat" and field not in ("sourceOrderId", "sourceOrderNumber"):
        body["sourceOrderId"] = "5008"
    rsps.calls.reset()
    response = _send(client, method, path, body, kind)
    assert response.status_code == 200 and response.get_json()["errorCode"] != "internal_error"
    calls = crm_calls(rsps)
    for _, call_path, query in calls:
        assert any(route.fullmatch(call_path) for route in CRM_ROUTES), (call_path, value)
        assert {k for k, _ in query} <= CRM_QUERY_KEYS, (query, value)
    order_reads = [(p, q) for m, p, q in calls if m == "GET" and p.startswith("/api/v5/orders/")]
    if field == "sourceOrderId":  # the id as digits, or no order read at all
        expected = _as_id(value)
        assert order_reads == ([(f"/api/v5/orders/{expected}", [("by", "id")])]
                               if expected else [])
    if field == "sourceOrderNumber":  # the number as one query value, or no lookup
        lookups = [q for m, p, q in calls if p == "/api/v5/orders"]
        assert lookups == ([[("filter[numbers][]", value.strip()), ("limit", "20"),
                             ("filter[customerId]", "1001")]] if _is_text(value) else [])
    if field == "messengerUserId" and response.get_json()["errorCode"] != "invalid_identity":
        assert ("GET", "/api/v5/customers", [
            (f"filter[customFields][{TG_FIELD}]", value.strip()), ("limit", "20")]) in calls
    if field == "customerId" and value.strip() and not _as_id(value):
        # Only ever compared with the bound customer: never in a path or a query.
        assert all(value.strip() not in p.split("/") and value.strip() not in dict(q).values()
                   for _, p, q in calls)


@settings(max_examples=200, deadline=None)
@given(external_id=st.one_of(st.text(min_size=1, max_size=40),
                            st.sampled_from([".", "..", "%2e%2e", "a/../b", "?x=1", "#"])))
def test_an_external_id_is_one_quoted_path_segment(external_id):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(re.escape(CRM) + r"/.*"),
                 json={"success": True, "order": {"id": 1}})
        gateway = RetailCrmGateway(CRM, "key", "shop", max_retries=0)
        found = gateway.get_order_by_external_id(external_id)
        if external_id in (".", ".."):  # the HTTP client would resolve it: never sent
            assert (found, len(rsps.calls)) == (None, 0)
            return
        assert found is not None and (found.id, found.raw) == ("1", {"id": 1})
        parts = urlsplit(rsps.calls[0].request.url)
    assert parts.path == "/api/v5/orders/" + quote(external_id, safe="")
    assert parse_qsl(parts.query, keep_blank_values=True) == [("by", "externalId"),
                                                               ("site", "shop")]
    assert parts.fragment == ""


# -- metric labels ----------------------------------------------------------------------
def upstream_call_labels(client) -> set[str]:
    text = client.get("/metrics").get_data(as_text=True)
    return {s.labels["method"] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("gurugrow_upstream_request")}


def test_ids_never_become_metric_labels(world):
    """200 requests with ids of letters, digits and path tricks add no label: every call
    label is a route template (no segment with a digit but the API version)."""
    client, _, _ = world
    for i in range(100):
        post(client, "/orders/repeat", {**BOUND, "sourceOrderId": str(5008 + i)})
        post(client, "/orders/repeat", {**BOUND, "sourceOrderNumber": f"ELM{i}x"})
    labels = upstream_call_labels(client)
    assert "GET /api/v5/orders/{id}" in labels
    for label in labels:
        method, path = label.split(" ", 1)
        assert method in ("GET", "POST")
        for segment in path.split("/"):
            assert segment in ("v5", "v1") or not re.search(r"\d", segment), label
    before = len(client.get("/metrics").get_data(as_text=True).splitlines())
    for i in range(50):
        post(client, "/orders/repeat", {**BOUND, "sourceOrderId": str(7000 + i)})
        post(client, "/orders/repeat", {**BOUND, "sourceOrderId": f"abc{i}"})
    assert len(client.get("/metrics").get_data(as_text=True).splitlines()) == before


def test_request_labels_are_routes_and_standard_methods(client):
    """Unknown paths and invented methods share one label each: ``unmatched``, ``other``."""
    client.open("/warmup-path", method="BREW")
    client.open("/health", method="BREW")
    before = len(client.get("/metrics").get_data(as_text=True).splitlines())
    for i in range(30):
        assert client.open(f"/no/such/path/{i}", method=f"BREW{i}").status_code in (404, 405)
        assert client.open("/health", method=f"X{i}").status_code == 405
    after = client.get("/metrics").get_data(as_text=True)
    assert len(after.splitlines()) == before
    assert "BREW" not in after and 'method="X' not in after
    assert 'method="other"' in after


# -- logs -------------------------------------------------------------------------------
class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_lines():
    handler = Lines()
    logger = logging.getLogger("gurugrow")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.mark.parametrize("raw_path", [
    "/x%0Arequest method=GET path=/admin http_status=200 request_id=forged",
    "/x%0Aforged_event%0D",
    "/x%0D%0Aforged", "/x%09tab%22quote%5Cback", "/x%E2%80%A8sep%00nul%1B[31m"])
def test_a_request_path_cannot_forge_a_log_line(client, log_lines, raw_path):
    response = client.get(raw_path)
    assert response.status_code == 404 and response.get_json()["errorCode"] == "not_found"
    request_lines = [m for m in log_lines if m.startswith("request ")]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert not any(ch in line for ch in "\n\r\t\x00\x1b\u2028")
    assert re.fullmatch(r'request method=GET path="(?:[^"\\]|\\.)*" http_status=404 ms=\S+ '
                        r'request_id=[0-9a-f]{32}', line), line


# -- fields -----------------------------------------------------------------------------
@pytest.mark.parametrize(("limit", "expected"), [
    ("--5", "invalid_limit"), ("\u00b2", "invalid_limit"), ("\u0663", "invalid_limit"),
    ("5.0", "invalid_limit"), ("1e3", "invalid_limit"), ("+-1", "invalid_limit"),
    ("-5", None), ("99", None), (" 2 ", None)])
def test_limit_values(client, upstreams, limit, expected):
    upstreams.add_customer(1001, "79990000001", **{TG_FIELD: "777"})
    answer = get(client, "/orders", {**BOUND, "limit": limit})
    if expected:
        assert (answer["status"], answer["errorCode"]) == ("error", expected)
    else:
        assert answer["status"] == "empty"


@pytest.mark.parametrize("phone", ["+7 999 \u00b200-00-01", "\uff17\uff19\uff19\uff19\uff10"
                                   "\uff10\uff10\uff10\uff10\uff10\uff11", "79990000001\u0000",
                                   "7999000000١", "+7 999\n000-00-01"])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_odd_phones_are_invalid_phone(client, upstreams, phone, kind):
    answer = post(client, "/auth/start", {**TG, "phone": phone}, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", "invalid_phone")
    assert upstreams.calls == []


@pytest.mark.parametrize(("field", "value", "error_code"), [
    ("messengerUserId", "\ud800", "invalid_identity"),
    ("messengerUserId", "a\u2029b", "invalid_identity"),
    ("channelType", "tele\u0000gram", "invalid_channel"),
    ("deliveryRoute", "S\u00a0MS", "invalid_route"),
    ("phone", 7.999e10, "invalid_phone"),
    ("phone", True, "invalid_phone"),
])
def test_json_oddities_get_their_error_code(client, upstreams, field, value, error_code):
    body = json.dumps({**TG, "phone": "79990000001", field: value})  # \ud800 stays escaped
    response = client.post("/auth/start", data=body, content_type="application/json")
    answer = response.get_json()
    assert (answer["status"], answer["errorCode"]) == ("error", error_code)


def test_a_json_number_phone_is_read_as_digits(client, upstreams):
    upstreams.add_customer(1001, "79990000001")
    answer = post(client, "/auth/start", {**TG, "phone": 79990000001}, "json")
    assert answer["status"] == "sent"


# -- codes ------------------------------------------------------------------------------
def _start_with_code(app, client, upstreams, code: str, kind: str) -> str:
    upstreams.add_customer(1001, "79990000001")
    app.extensions["gurugrow"].otp.new_code = lambda: code
    started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, kind)
    assert upstreams.codes_sent() == [code]
    return started["sessionId"]


@pytest.mark.parametrize("path", ["/auth/check", "/orders/recommended/check"])
def test_a_json_number_code_is_the_code_zero_padded(app, client, upstreams, path):
    """48117 is what a bot sends for 048117 when its variable holds a number."""
    upstreams.add_customer(1001, "79990000001")
    app.extensions["gurugrow"].otp.new_code = lambda: "048117"
    if path == "/auth/check":
        started = post(client, "/auth/start", {**TG, "phone": "79990000001"}, "json")
    else:
        upstreams.add_bundle(31, "SET-MALE-BASIC")
        started = post(client, "/orders/recommended/start",
                       {**TG, "phone": "79990000001", "offerCode": "male_hairloss_basic"},
                       "json")
    answer = post(client, path, {**TG, "sessionId": started["sessionId"], "code": 48117},
                  "json")
    assert answer["authorized"] is True, answer


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_malformed_codes_are_refused_without_costing_an_attempt(app, client, upstreams, kind):
    session_id = _start_with_code(app, client, upstreams, "048117", kind)
    malformed = ["48117", "0481170", "04811x", "\u0660\u0664\u0668\u0661\u0661\u0667",
                 "048 11", "", "-48117", "0481 17 9"]
    if kind == "json":
        malformed += [48117.0, -48117, 10**7, True, [48117], {"code": 1}]
    for code in malformed:  # more than OTP_MAX_ATTEMPTS (5) of them
        answer = post(client, "/auth/check", {**TG, "sessionId": session_id, "code": code},
                      kind)
        assert (answer["status"], answer["errorCode"]) == ("invalid_code", "invalid_code"), code
    wrong = post(client, "/auth/check", {**TG, "sessionId": session_id, "code": "111111"}, kind)
    assert (wrong["status"], wrong["errorCode"]) == ("invalid_code", "invalid_code")
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id, "code": "048 117"},
                  kind)
    assert answer["status"] == "authorized", answer


@pytest.mark.parametrize("env_overrides", [{"OTP_LENGTH": "4"}])
def test_padding_follows_otp_length(app, client, upstreams):
    session_id = _start_with_code(app, client, upstreams, "0042", "json")
    answer = post(client, "/auth/check", {**TG, "sessionId": session_id, "code": 42}, "json")
    assert answer["status"] == "authorized", answer


@pytest.mark.parametrize("kind", BODY_KINDS)
@pytest.mark.parametrize(("path", "field", "value", "expected"), [
    ("/orders/repeat", "sourceOrderId", "../customers/1001", ("not_found", "order_not_found")),
    ("/orders/repeat", "customerId", "1001/edit", ("conflict", "customer_mismatch")),
    ("/auth/unlink", "customerId", "1001?by=externalId", ("conflict", "customer_mismatch")),
    ("/auth/resend", "sessionId", "0123456789abcdef./../x", ("error", "session_not_found")),
    ("/orders/recommended/preview", "offerCode", "male hairloss", ("error", "unknown_offer")),
])
def test_malformed_ids_get_the_flows_answer_and_no_crm_call(client, upstreams, kind, path,
                                                           field, value, expected):
    upstreams.add_customer(1001, "79990000001", **{TG_FIELD: "777"})
    answer = post(client, path, {**BOUND, "sourceOrderId": "5008", field: value}, kind)
    assert (answer["status"], answer["errorCode"]) == expected
    assert not any(value in call for call in upstreams.calls)


# -- bodies -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    "[" * 7000 + "]" * 7000, '{"a":' * 2500 + "1" + "}" * 2500,
    json.dumps({**TG, "phone": "79990000001", "x": [[[[[[[[[[1]]]]]]]]]]}),
    "[]", '"text"', "42", "null", '{"phone": "1"', "\ufeff[]", '{"a": 1' + "0" * 5000 + "}",
])
@pytest.mark.parametrize("path", ["/auth/start", "/orders/recommended/start", "/auth/check"])
def test_deep_or_non_object_json_is_invalid_request(client, upstreams, raw, path):
    response = client.post(path, data=raw, content_type="application/json")
    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["errorCode"]) == (
        "error", "invalid_request")
    assert upstreams.calls == []


def test_shallow_nesting_is_still_read(client, upstreams):
    upstreams.add_customer(1001, "79990000001")
    body = {**TG, "phone": "79990000001", "extra": {"a": [{"b": [1, 2]}]},
            "note": '[[[[[[[[[[{{{{{{{{{{ \\" [[[[[[[[[['}  # brackets in a string are text
    assert post(client, "/auth/start", body, "json")["status"] == "sent"


def _chunked(client, path: str, body: bytes, content_type: str):
    """A body with no Content-Length, as gunicorn passes a chunked one."""
    return client.post(path, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_chunked_bodies_obey_max_body_bytes(client, upstreams, kind):
    upstreams.add_customer(1001, "79990000001")
    fields = {**TG, "phone": "79990000001"}
    encode = (lambda d: json.dumps(d).encode()) if kind == "json" else (
        lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode())
    content_type = "application/json" if kind == "json" else \
        "application/x-www-form-urlencoded"
    big = _chunked(client, "/auth/start", encode({**fields, "x": "a" * 1_000_000}),
                   content_type)
    assert big.status_code == 413
    assert big.get_json()["errorCode"] == "body_too_large"
    assert upstreams.sent == []
    small = _chunked(client, "/auth/start", encode(fields), content_type)
    assert small.status_code == 200 and small.get_json()["status"] == "sent"


# -- answer-time floor ------------------------------------------------------------------
@pytest.mark.parametrize("env_overrides", [{"START_MIN_SECONDS": "0.25"}])
@pytest.mark.parametrize(("path", "body"), [
    ("/auth/start", {**TG, "phone": "79990000001"}),
    ("/auth/start", {**TG, "phone": "79990000004"}),
    ("/orders/recommended/start", {**TG, "phone": "79990000004",
                                   "offerCode": "male_hairloss_basic"})])
def test_start_answers_no_earlier_than_the_floor(client, upstreams, path, body):
    import time

    upstreams.add_customer(1001, "79990000001")
    started = time.perf_counter()
    response = client.post(path, data=body)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.25


# Refusals decided before any lookup tell nothing by their timing: they answer at once
# (a flood of invalid starts must not hold a thread each for the floor).
@pytest.mark.parametrize("env_overrides", [{"START_MIN_SECONDS": "2",
                                            "OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR": "1"}])
@pytest.mark.parametrize(("path", "body", "error_code"), [
    ("/auth/start", {**TG, "phone": "not a phone"}, "invalid_phone"),
    ("/auth/start", {**TG, "channelType": "fax", "phone": "79990000001"}, "invalid_channel"),
    ("/auth/start", {**TG, "phone": "+12025550123"}, "phone_country_not_allowed"),
    ("/auth/start", {**TG, "messengerUserId": "spent", "phone": "79990000001"},
     "rate_limited"),
    ("/auth/resend", {**TG, "sessionId": "0123456789abcdef.nope"}, "session_not_found"),
    ("/orders/recommended/start", {**TG, "phone": "not a phone",
                                   "offerCode": "male_hairloss_basic"}, "invalid_phone")])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_refusals_decided_before_any_lookup_skip_the_floor(client, upstreams, monkeypatch,
                                                           path, body, error_code, kind):
    from gurugrow.api import pacing

    upstreams.add_customer(1001, "79990000001")
    # The account's one code of the hour, so the next start of it is refused.
    first = {**TG, "messengerUserId": "spent", "phone": "79990000002"}
    monkeypatch.setattr(pacing.time, "sleep", lambda seconds: None)
    assert post(client, "/auth/start", first)["status"] == "sent"
    slept: list[float] = []
    monkeypatch.setattr(pacing.time, "sleep", slept.append)
    answer = post(client, path, body, kind)
    assert (answer["status"], answer["errorCode"]) == ("error", error_code)
    assert slept == []


@pytest.mark.parametrize("env_overrides", [{"START_MIN_SECONDS": "0.000001"}])
def test_a_start_slower_than_the_floor_is_logged(client, upstreams, log_lines):
    upstreams.add_customer(1001, "79990000001")
    assert post(client, "/auth/start", {**TG, "phone": "79990000001"})["status"] == "sent"
    assert [m for m in log_lines if m.startswith("answer_floor_overrun floor_ms=0 over_ms=")]


def test_decoy_waits_are_drawn_from_real_sends(app, client, upstreams, monkeypatch):
    """After real sends, an unknown phone's decoy sleeps exactly one of their durations
    (not an average with a jitter of its own, whose spread told decoys apart)."""
    from gurugrow.flows import codes

    upstreams.add_customer(1001, "79990000001")
    for i in range(3):
        post(client, "/auth/start", {**TG, "messengerUserId": f"real-{i}", "phone":
                                     "79990000001"})
    observed = set(app.extensions["gurugrow"].send_timer._recent)
    assert len(observed) == 3
    slept: list[float] = []
    monkeypatch.setattr(codes.time, "sleep", slept.append)
    for i in range(5):  # OTP_MAX_SENDS_PER_PHONE_PER_HOUR
        post(client, "/auth/start", {**TG, "messengerUserId": f"decoy-{i}", "phone":
                                     "79990000004"})
    assert len(slept) == 5 and set(slept) <= observed
