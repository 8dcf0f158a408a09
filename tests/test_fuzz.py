"""Property-based: random and hostile input to every endpoint, in both encodings, always
gets a JSON answer with a known status and never a 5xx."""

from __future__ import annotations

import json

import fakeredis
import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gurugrow import create_app
from tests.conftest import TEST_ENV
from tests.upstreams import Upstreams

ENDPOINTS = [("GET", "/auth/status"), ("POST", "/auth/start"), ("POST", "/auth/check"),
             ("POST", "/auth/resend"), ("POST", "/auth/unlink"), ("GET", "/orders"),
             ("POST", "/orders/repeat"), ("POST", "/orders/recommended/preview"),
             ("POST", "/orders/recommended/create"), ("POST", "/orders/recommended/start"),
             ("POST", "/orders/recommended/check")]
FIELDS = ["channelType", "messengerUserId", "customerExternalId", "messengerAccountId",
          "messengerAccountIdFallback", "chatExternalId", "phone", "deliveryRoute",
          "sessionId", "code", "customerId", "limit", "sourceOrderId", "sourceOrderNumber",
          "offerCode", "firstName", "lastName", "email"]
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
        app = create_app({**TEST_ENV, "OTP_RESEND_COOLDOWN_SECONDS": "0"},
                         redis_client=fakeredis.FakeRedis())
        app.extensions["gurugrow"].send_timer.average = 0  # no decoy delay while fuzzing
        yield app.test_client()


def assert_contract_answer(response) -> None:
    assert response.status_code < 500, response.data[:300]
    assert response.is_json, response.data[:300]
    body = response.get_json()
    assert isinstance(body, dict)
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
