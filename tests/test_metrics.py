"""GET /metrics: Prometheus text counting requests, upstream calls, codes and refusals."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gurugrow.metrics import upstream_call_name
from tests.helpers import TG, get, post

PHONE = "79991234567"


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def start(client, phone: str = PHONE) -> dict:
    return post(client, "/auth/start", {**TG, "phone": phone})


# Each case: what happens → the samples that must grow by exactly that much.
@pytest.mark.parametrize(("case", "grows"), [
    ("status", [("gurugrow_requests_total", {"endpoint": "/auth/status", "method": "GET",
                                             "http_status": "200", "status": "not_authorized"}, 1),
                ("gurugrow_request_duration_seconds_count",
                 {"endpoint": "/auth/status", "method": "GET"}, 1),
                ("gurugrow_upstream_requests_total",
                 {"gateway": "retailcrm", "method": "GET /api/v5/customers", "outcome": "ok"}, 1)]),
    ("unknown_path", [("gurugrow_requests_total", {"endpoint": "unmatched", "method": "GET",
                                                   "http_status": "404", "status": "-"}, 1)]),
    ("sent", [("gurugrow_codes_sent_total", {"route": "telegram"}, 1),
              ("gurugrow_upstream_requests_total",
               {"gateway": "greensms", "method": "POST /telegram/send", "outcome": "ok"}, 1)]),
    ("fallback", [("gurugrow_codes_sent_total", {"route": "sms"}, 1),
                  ("gurugrow_sms_fallbacks_total", {"from_route": "telegram"}, 1),
                  ("gurugrow_upstream_requests_total",
                   {"gateway": "greensms", "method": "POST /telegram/send",
                    "outcome": "http_4xx"}, 1)]),
    ("region", [("gurugrow_limit_refusals_total", {"kind": "region"}, 1)]),
    ("cooldown", [("gurugrow_limit_refusals_total", {"kind": "cooldown"}, 1)]),
    ("crm_down", [("gurugrow_upstream_requests_total",
                   {"gateway": "retailcrm", "method": "GET /api/v5/customers",
                    "outcome": "http_5xx"}, 1),
                  ("gurugrow_requests_total", {"endpoint": "/auth/status", "method": "GET",
                                               "http_status": "200", "status": "error"}, 1)]),
])
def test_metrics_count_what_happened(client, upstreams, case, grows):
    upstreams.add_customer(5, PHONE)
    if case == "cooldown":
        start(client)
    before = scrape(client)
    if case in ("status", "crm_down"):
        if case == "crm_down":
            upstreams.fail["customers"] = (503, {"success": False, "errorMsg": "Rate limit"})
        get(client, "/auth/status", TG)
    elif case == "unknown_path":
        client.get("/nowhere")
    elif case == "fallback":  # a refusal: the send never left, SMS takes it
        upstreams.fail["telegram"] = (400, {"error": "not available", "code": 2})
        start(client)
        assert [m["route"] for m in upstreams.sent] == ["sms"]
    elif case == "region":
        assert start(client, "+12025550123")["errorCode"] == "phone_country_not_allowed"
    else:
        start(client)
    after = scrape(client)
    for name, labels, delta in grows:
        assert value(after, name, **labels) - value(before, name, **labels) == delta, name


def test_upstream_call_name_is_the_route_template():
    assert upstream_call_name("GET", "/api/v5/customers/{id}") == "GET /api/v5/customers/{id}"


ELSEWHERE = "203.0.113.7"  # neither loopback nor in ALLOWED_CALLER_NETWORKS


@pytest.mark.parametrize(("env_overrides", "address", "headers", "expected"), [
    # From anywhere else only METRICS_TOKEN opens it.
    ({"METRICS_TOKEN": "scrape-token-123"}, ELSEWHERE, {}, 401),
    ({"METRICS_TOKEN": "scrape-token-123"}, ELSEWHERE, {"Authorization": "Bearer wrong"}, 401),
    ({"METRICS_TOKEN": "scrape-token-123"}, ELSEWHERE,
     {"Authorization": "Bearer scrape-token-123"}, 200),
    ({}, ELSEWHERE, {}, 401),
    # The API token is not a metrics token.
    ({"METRICS_TOKEN": "scrape-token-123"}, ELSEWHERE,
     {"Authorization": "Bearer test-caller-token-0123456789abcdef"}, 401),
    # Loopback (Prometheus on the host) and the caller networks need none.
    ({"METRICS_TOKEN": "scrape-token-123"}, "127.0.0.1", {}, 200),
    ({}, "::1", {}, 200),
    ({"ALLOWED_CALLER_NETWORKS": "203.0.113.0/24"}, ELSEWHERE, {}, 200),
    # Behind a trusted proxy the forwarded address counts, not the proxy's loopback.
    ({"TRUSTED_PROXIES": "127.0.0.1"}, "127.0.0.1", {"X-Forwarded-For": ELSEWHERE}, 401),
])
def test_metrics_access(client, env_overrides, address, headers, expected):
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == expected
    if expected == 401:
        body = response.get_json()
        assert (body["status"], body["errorCode"]) == ("error", "unauthorized")
        assert "gurugrow_requests_total" not in response.get_data(as_text=True)
    else:
        assert "gurugrow_requests_total" in response.get_data(as_text=True)


@pytest.mark.parametrize("env_overrides", [{"METRICS_TOKEN": "scrape-token-123"}, {}])
def test_a_refused_scraper_is_logged_like_every_refused_caller(client, env_overrides, caplog):
    response = client.get("/metrics", headers={"Authorization": "Bearer wrong"},
                          environ_base={"REMOTE_ADDR": ELSEWHERE})
    assert response.status_code == 401
    lines = [r.getMessage() for r in caplog.records if "caller_refused" in r.getMessage()]
    assert len(lines) == 1 and "reason=wrong_token endpoint=/metrics" in lines[0]
    assert "wrong" not in lines[0].replace("wrong_token", "")


@pytest.mark.parametrize("env_overrides", [{"CODE_PRICES": "sms=4.90,telegram=1.20",
                                            "CONTACT_VERIFIED_CHANNELS": "telegram",
                                            "CONVERSION_ALERT_RATIO": "0.4"}])
def test_verifications_by_method_and_code_costs_by_route(client, upstreams):
    upstreams.add_customer(5, PHONE)
    upstreams.add_customer(6, "79997654321")
    before = scrape(client)
    started = start(client)
    check = {**TG, "sessionId": started["sessionId"], "code": upstreams.codes_sent()[0]}
    assert post(client, "/auth/check", check)["status"] == "authorized"
    assert post(client, "/auth/check", check)["status"] == "authorized"  # a replay: once
    upstreams.fail["telegram"] = (200, {"error": "not available", "code": 2})
    assert start(client, "79997654321")["deliveryRoute"] == "sms"
    contact = {"channelType": "telegram", "messengerUserId": "777", "contactUserId": "777",
               "phone": "79997654321"}
    assert post(client, "/auth/contact", contact)["status"] == "authorized"
    assert post(client, "/auth/contact", contact, "json")["status"] == "authorized"  # replay
    assert post(client, "/auth/contact", {**contact, "contactUserId": "1"})["status"] == "error"
    after = scrape(client)
    expected = [  # (metric, label, label value, growth)
        ("gurugrow_verifications_total", "method", "telegram_otp", 1),
        ("gurugrow_verifications_total", "method", "telegram_contact", 1),
        ("gurugrow_verifications_total", "method", "sms_otp", 0),
        ("gurugrow_code_cost_total", "route", "telegram", 1.2),
        ("gurugrow_code_cost_total", "route", "sms", 4.9)]
    grown = [(name, label, which, round(value(after, name, **{label: which})
                                        - value(before, name, **{label: which}), 2))
             for name, label, which, _ in expected]
    assert grown == expected
    assert value(after, "gurugrow_conversion_alert_ratio") == 0.4
