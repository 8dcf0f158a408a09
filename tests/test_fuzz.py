"""Property-based: random and hostile input to every endpoint, in both encodings, always
gets a JSON answer with a known status, never a 5xx and never ``internal_error``: every
field of every endpoint is fuzzed on its own (the rest of the body valid), so each value
reaches the field class and the flow behind it."""

from __future__ import annotations

import json
from urllib.parse import quote

import fakeredis
import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gurugrow import create_app
from tests.conftest import TEST_ENV
from tests.upstreams import Upstreams


def _contract_fields() -> dict[tuple[str, str], list[str]]:
    app = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    found = {}
    for rule in app.url_map.iter_rules():
        contract = getattr(app.view_functions[rule.endpoint], "contract", None)
        if contract is not None:
            method = "GET" if "GET" in rule.methods else "POST"
            found[(method, rule.rule)] = list(contract.request.fields)
    return found


# Every contract endpoint, read off the app's URL map: a new endpoint is fuzzed without
# anyone adding it here.
CONTRACT_FIELDS = _contract_fields()
ENDPOINTS = sorted(CONTRACT_FIELDS)


FIELDS = ["channelType", "messengerUserId", "customerExternalId", "messengerAccountId",
          "messengerAccountIdFallback", "chatExternalId", "phone", "deliveryRoute",
          "sessionId", "code", "customerId", "limit", "sourceOrderId", "sourceOrderNumber",
          "offerCode", "firstName", "lastName", "email", "contactUserId"]
KNOWN_STATUSES = {"ok", "error", "sent", "authorized", "not_authorized", "conflict",
                  "invalid_code", "expired", "too_many_attempts", "unlinked", "empty",
                  "created", "unavailable_item", "not_found"}

scalars = st.one_of(
    st.text(max_size=40), st.text(max_size=3000), st.integers(), st.floats(allow_nan=True),
    st.booleans(), st.none(), st.sampled_from(["telegram", "VK", "sms", "79990000001",
                                               "+7 999 000-00-01", "male_hairloss_basic",
                                               "\x00", "🙂" * 50, "' OR 1=1 --", "{}"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=8)
bodies = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=20)), values,
                         max_size=12)


@pytest.fixture(scope="module")
def fuzz_client():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        upstreams = Upstreams(rsps)
        upstreams.add_customer(1, "79990000001", bot_telegram_account_id="1")
        app = create_app({**TEST_ENV, "OTP_RESEND_COOLDOWN_SECONDS": "0",
                          "CONTACT_VERIFIED_CHANNELS": "telegram,max"},
                         redis_client=fakeredis.FakeRedis())
        app.extensions["gurugrow"].send_timer.draw = lambda: 0  # no decoy delay while fuzzing
        yield app.test_client()


def assert_contract_answer(response) -> None:
    assert response.status_code < 500, response.data[:300]
    assert response.is_json, response.data[:300]
    body = response.get_json()
    assert isinstance(body, dict)
    # A bug answered politely is still a bug: any input a bot can send has its own answer.
    assert body.get("errorCode") != "internal_error", body
    if response.status_code == 200:
        assert body["status"] in KNOWN_STATUSES
        assert body["status"] == "error" or "errorCode" in body
    else:
        assert response.status_code in (404, 405, 413)
        assert body["status"] == "error"


def _flat(body: dict) -> dict:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies,
       encoding=st.sampled_from(["json", "form", "query", "raw"]))
def test_any_input_gets_a_json_contract_answer(fuzz_client, endpoint, body, encoding):
    method, path = endpoint
    if encoding == "json" and method == "POST":
        response = fuzz_client.post(path, data=json.dumps(body), content_type="application/json")
    elif encoding == "form" and method == "POST":
        response = fuzz_client.post(path, data=_flat(body))
    elif encoding == "raw" and method == "POST":
        response = fuzz_client.post(path, data=json.dumps(body)[:200].encode("utf-16"),
                                    content_type="application/json; charset=utf-16")
    else:
        response = fuzz_client.open(path, method=method, query_string=_flat(body))
    assert_contract_answer(response)


@pytest.mark.parametrize(("path", "kwargs"), [
    ("/auth/start", {"data": "phone=1&phone=2&channelType=telegram&channelType=vk",
                     "content_type": "application/x-www-form-urlencoded"}),
    ("/auth/start", {"data": b"\xff\xfe\x00garbage", "content_type": "application/json"}),
    ("/auth/start", {"data": "x" * 20000, "content_type": "text/plain"}),
    ("/auth/check", {"data": "<xml/>", "content_type": "application/xml"}),
    ("/auth/check", {"data": "{}", "content_type": "multipart/form-data; boundary=zz"}),
    ("/orders/repeat", {"json": [[[[[[{"a": 1}]]]]]]}),
    ("/auth/unlink", {"data": json.dumps({"channelType": "telegram",
                                          "messengerUserId": "1" * 10**4}),
                      "content_type": "application/json"}),
])
def test_hostile_bodies(fuzz_client, path, kwargs):
    assert_contract_answer(fuzz_client.post(path, **kwargs))


# -- every field of every endpoint, one at a time, in both encodings ---------------------
# A body every endpoint accepts, so the fuzzed field is the one that decides.
VALID = {"channelType": "telegram", "messengerUserId": "1", "phone": "79990000001",
         "sessionId": "0123456789abcdef.fuzz", "code": "123456", "offerCode":
         "male_hairloss_basic", "sourceOrderId": "5008", "limit": "3", "customerId": "1",
         "deliveryRoute": "sms", "contactUserId": "1"}
TRICKY = ["--5", "\u00b2", "\u0661\u0662", "\uff11\uff12", "\u2028", "\u0085", "../x",
          "1?by=externalId", "%0A", "0" * 40, " ", "\x00", "\x7f", "\ud800", "NaN", "1e309",
          "-0", "+7", "telegram\n", "TELEGRAM", "sms ", "0x10", "١٢٣٤٥٦", "12 34 56",
          "0123456789abcdef.", "0123456789abcdef.\u00e9", "male_hairloss_basic/../x"]
field_values = st.one_of(
    st.sampled_from(TRICKY), st.text(max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFFFF), max_size=20),
    st.integers(), st.integers(min_value=-10**40, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                         st.integers(), max_size=2))


def _form(body: dict) -> bytes:
    """form-urlencoded by hand, so lone surrogates go out as the bytes they would be."""
    def text(value) -> str:
        return value if isinstance(value, str) else json.dumps(value)
    return "&".join(f"{quote(k)}={quote(text(v).encode('utf-8', 'surrogatepass'))}"
                    for k, v in body.items()).encode()


@pytest.mark.parametrize("endpoint", sorted(CONTRACT_FIELDS))
@pytest.mark.parametrize("encoding", ["form", "json"])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_field_of_every_endpoint(fuzz_client, endpoint, encoding, data):
    method, path = endpoint
    field = data.draw(st.sampled_from(CONTRACT_FIELDS[endpoint]), label="field")
    value = data.draw(field_values, label="value")
    body = {k: v for k, v in VALID.items() if k in CONTRACT_FIELDS[endpoint]}
    body[field] = value
    if method == "GET":
        query = _form(body).decode()
        response = fuzz_client.open(path, method=method, query_string=query)
    elif encoding == "json":
        response = fuzz_client.post(path, data=json.dumps(body),
                                    content_type="application/json")
    else:
        response = fuzz_client.post(path, data=_form(body),
                                    content_type="application/x-www-form-urlencoded")
    assert_contract_answer(response)
