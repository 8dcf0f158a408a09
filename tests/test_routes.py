"""Every GreenSMS route through HTTP (gurugrow/routes.py), with GreenSMS the stand-in at
the transport answering in the SDKs' shapes: the module called with its fields, the code
that checks, the route recorded in RetailCRM, workflows per channel on resend and in the
worker; and a throwaway route declared once, found by every part that reads the list."""

from __future__ import annotations

import dataclasses
import json

import pytest
import responses

from gurugrow import Settings, routes
from gurugrow.config import CHANNELS, sandbox_upstreams
from tests.helpers import BODY_KINDS, TG, post
from tests.test_deliveries_worker import worker
from tests.test_delivery import CUSTOMER, PHONE, later, pin_status
from tests.test_metrics import scrape, value
from tests.test_recommended import start as recommended_start
from tests.upstreams import Upstreams

SENDERS = {"GREENSMS_WHATSAPP_FROM": "ShopWA", "GREENSMS_VIBER_FROM": "ShopViber",
           "GREENSMS_SMS_FROM": "Shop"}


@pytest.fixture
def greensms():
    """The stand-ins, and the raw requests they got (to read what a send carried)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        upstreams = Upstreams(rsps)
        upstreams.add_customer(CUSTOMER, PHONE)
        yield upstreams, rsps


def sends(rsps) -> list[tuple[str, dict]]:
    """(path, JSON body) of every send asked of GreenSMS, in order."""
    return [(c.request.path_url, json.loads(c.request.body)) for c in rsps.calls
            if c.request.method == "POST" and c.request.path_url.endswith(
                ("/send", "/receive"))]


def start(client, kind="form", **extra):
    return post(client, "/auth/start", {**TG, "phone": PHONE, **extra}, kind)


def resend(client, session_id, kind="form"):
    return post(client, "/auth/resend", {**TG, "sessionId": session_id}, kind)


def check(client, session_id, code, kind="form"):
    return post(client, "/auth/check", {**TG, "sessionId": session_id, "code": code}, kind)


# route -> the fields its send must carry besides ``to`` ("<code>": the code sent).
EXPECTED_FIELDS = {
    "telegram": {"txt": "<code>"},
    "vk": {"from": "shop"},
    "whatsapp": {"from": "ShopWA"},
    "viber": {"from": "ShopViber"},
    "sms": {"from": "Shop", "hidden": "<code>"},
    "call": {},
    "voice": {"txt": "<code>"},
}


def test_every_routes_method_maps_back_to_it_in_the_conversion_metrics():
    # deploy/: label_replace(..., "route", "$1", "method", "(.+)_otp")
    assert all(r.method == f"{r.name}_otp" for r in routes.ROUTES.values())


def test_every_route_has_its_expected_fields():
    # A new route gets its test row (the incoming call, no code, has tests of its own).
    assert set(EXPECTED_FIELDS) | {"incoming_call"} == set(routes.ROUTES)


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_TELEGRAM": ",".join(routes.ROUTES)}])
@pytest.mark.parametrize("route", list(EXPECTED_FIELDS))
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_each_route_sends_by_its_module_checks_and_is_recorded(client, greensms, route,
                                                                kind):
    upstreams, rsps = greensms
    answer = start(client, kind, deliveryRoute=route)
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", route)
    [(path, body)] = sends(rsps)
    declared = routes.ROUTES[route]
    assert path == f"/{declared.module}/send" and body["to"] == "79991234567"
    code = upstreams.codes_sent()[-1]
    assert len(code) == (declared.code_length or 6)
    for name, expected in EXPECTED_FIELDS[route].items():
        assert body[name] == (code if expected == "<code>" else expected), name
    if declared.txt == "text":
        assert code in body["txt"]
    if declared.txt == "":
        assert "txt" not in body  # GreenSMS makes the call: nothing to read out
    if declared.bot_text:
        assert str(declared.code_length) in answer["message"]
    wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
    assert check(client, answer["sessionId"], wrong, kind)["status"] == "invalid_code"
    assert check(client, answer["sessionId"], code, kind)["status"] == "authorized"
    assert upstreams.field(CUSTOMER, "bot_last_verification_method") == declared.method


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_TELEGRAM": "telegram,call,sms"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_flash_calls_code_is_greensms_four_digits(client, greensms, kind):
    upstreams, rsps = greensms
    answer = start(client, kind, deliveryRoute="call")
    message = upstreams.sent[-1]
    code = message["code"]
    # The stand-in's outbox shows the number that calls; its last digits are the code.
    assert len(code) == 4 and message["txt"].endswith(code)
    assert "4 цифры" in answer["message"]
    assert check(client, answer["sessionId"], "0000" if code != "0000" else "1111",
                 kind)["status"] == "invalid_code"
    assert check(client, answer["sessionId"], code, kind)["status"] == "authorized"
    assert upstreams.field(CUSTOMER, "bot_last_verification_method") == "call_otp"


WHATSAPP = {"channelType": "whatsapp", "messengerUserId": "wa-1", "chatExternalId": "wa-c1"}


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_WHATSAPP": "whatsapp,call,sms",
     "OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_whatsapp_workflow_goes_whatsapp_then_flash_call_then_sms(client, greensms, kind):
    upstreams, _ = greensms
    answer = post(client, "/auth/start", {**WHATSAPP, "phone": PHONE}, kind)
    assert answer["deliveryRoute"] == "whatsapp"
    session_id = answer["sessionId"]
    again = {**WHATSAPP, "sessionId": session_id}
    pin_status(upstreams, "Delivery failure")
    assert post(client, "/auth/resend", again, kind)["deliveryRoute"] == "call"
    pin_status(upstreams, "Delivery failure")
    assert post(client, "/auth/resend", again, kind)["deliveryRoute"] == "sms"
    assert [m["route"] for m in upstreams.sent] == ["whatsapp", "call", "sms"]
    answer = post(client, "/auth/check", {**WHATSAPP, "sessionId": session_id,
                                          "code": upstreams.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    assert upstreams.field(CUSTOMER, "bot_last_verification_method") == "sms_otp"


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_WHATSAPP": "whatsapp,call,sms"}])
def test_the_worker_moves_an_undelivered_send_to_the_workflows_next_route(
        app, client, greensms):
    upstreams, _ = greensms
    post(client, "/auth/start", {**WHATSAPP, "phone": PHONE})
    pin_status(upstreams, "Delivery failure")
    later(app, 10)
    assert worker(app, "--once") == "call=1"  # the route the replacement went by
    pin_status(upstreams, "Delivery failure")
    later(app, 20)
    assert worker(app, "--once") == "sms=1"
    assert [m["route"] for m in upstreams.sent] == ["whatsapp", "call", "sms"]


# GreenSMS cannot tell (an answer nobody can read, an error answer): ``unknown``.
UNREADABLE = (200, {"error": "Message not found", "code": 404})


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_WHATSAPP": "whatsapp,call,sms",
     "OTP_RESEND_COOLDOWN_SECONDS": "0"}])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_a_resend_after_an_unknown_send_goes_by_the_workflows_next_route(
        app, client, greensms, kind):
    """Past DELIVERY_FALLBACK_AFTER_SECONDS a send whose status GreenSMS cannot give moves
    on like an undelivered one: WhatsApp, then a flash call, then SMS."""
    upstreams, rsps = greensms
    answer = post(client, "/auth/start", {**WHATSAPP, "phone": PHONE}, kind)
    again = {**WHATSAPP, "sessionId": answer["sessionId"]}
    upstreams.fail["status"] = UNREADABLE
    assert post(client, "/auth/resend", again, kind)["deliveryRoute"] == "whatsapp"  # young
    later(app, 31)
    assert post(client, "/auth/resend", again, kind)["deliveryRoute"] == "call"
    later(app, 62)
    assert post(client, "/auth/resend", again, kind)["deliveryRoute"] == "sms"
    assert [m["route"] for m in upstreams.sent] == ["whatsapp", "whatsapp", "call", "sms"]
    assert [path for path, _ in sends(rsps)][-2:] == ["/call/send", "/sms/send"]
    answer = post(client, "/auth/check", {**again, "code": upstreams.codes_sent()[-1]}, kind)
    assert answer["status"] == "authorized"
    assert upstreams.field(CUSTOMER, "bot_last_verification_method") == "sms_otp"


@pytest.mark.parametrize("env_overrides", [
    {**SENDERS, "DELIVERY_ROUTES_WHATSAPP": "whatsapp,call,sms",
     "OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_the_worker_moves_an_unknown_send_to_the_workflows_next_route(app, client, greensms):
    upstreams, _ = greensms
    post(client, "/auth/start", {**WHATSAPP, "phone": PHONE})
    upstreams.fail["status"] = UNREADABLE
    later(app, 10)
    assert worker(app, "--once") == "waiting=1"  # unknown, before the fallback time
    later(app, 30)
    assert worker(app, "--once") == "call=1"
    later(app, 45)
    assert worker(app, "--once") == "waiting=1"  # the flash call's own fallback time
    later(app, 61)
    assert worker(app, "--once") == "sms=1"
    later(app, 200)
    assert worker(app, "--once") == "no sends were due"
    assert [m["route"] for m in upstreams.sent] == ["whatsapp", "call", "sms"]


@pytest.mark.parametrize("env_overrides", [{**SENDERS, "DELIVERY_ROUTES_TELEGRAM":
                                            "whatsapp,viber,sms"}])
def test_a_route_refusing_at_once_falls_to_the_next(client, greensms):
    upstreams, _ = greensms
    upstreams.fail["whatsapp"] = (200, {"error": "WhatsApp is not available", "code": 2})
    answer = start(client)
    assert answer["deliveryRoute"] == "viber"
    assert upstreams.state.send_attempts == ["whatsapp", "viber"]


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_defaults_keep_todays_routes_and_a_route_without_its_sender_is_off(
        client, greensms, kind):
    upstreams, _ = greensms
    # No GREENSMS_WHATSAPP_FROM: WhatsApp users get their code by SMS, as before.
    answer = post(client, "/auth/start", {**WHATSAPP, "phone": PHONE}, kind)
    assert answer["deliveryRoute"] == "sms"
    assert start(client, kind)["deliveryRoute"] == "telegram"
    assert [m["route"] for m in upstreams.sent] == ["sms", "telegram"]


@pytest.mark.parametrize("env_overrides", [{**SENDERS, "CODE_PRICES": "call=0.5,sms=4",
                                            "DELIVERY_ROUTES_TELEGRAM": "call,sms"}])
def test_a_flash_call_is_priced_and_counted_by_its_route(client, greensms):
    before = value(scrape(client), "gurugrow_code_cost_total", route="call") or 0.0
    start(client)
    assert value(scrape(client), "gurugrow_code_cost_total", route="call") == before + 0.5


def test_workflow_settings_refuse_unknown_routes():
    _, problems = Settings.load_lenient({"DELIVERY_ROUTES_VK": "vk,pigeon"})
    assert any(p.env == "DELIVERY_ROUTES_VK" for p in problems)


# -- one declaration reaches every part ------------------------------------------------
@pytest.fixture
def throwaway(monkeypatch):
    """A route declared once, in the registry only: ``pager`` by its own module."""
    pager = dataclasses.replace(routes.ROUTES["sms"], name="pager", module="pager",
                                method="pager_otp", label="pager", sender_setting=None,
                                watched=True)
    monkeypatch.setitem(routes.ROUTES, "pager", pager)
    return pager


@pytest.mark.parametrize("env_overrides", [{"DELIVERY_ROUTES_TELEGRAM": "pager,sms",
                                            "CODE_PRICES": "pager=1.5"}])
def test_a_route_declared_once_reaches_every_part(throwaway, app, client, greensms):
    upstreams, rsps = greensms
    # The settings: its price and a workflow naming it are accepted.
    settings, problems = Settings.load_lenient({**sandbox_upstreams({}),
                                                "DELIVERY_ROUTES_TELEGRAM": "pager,sms",
                                                "CODE_PRICES": "pager=1.5"})
    assert not [p for p in problems if p.env in ("CODE_PRICES", "DELIVERY_ROUTES_TELEGRAM")]
    assert settings.route_prices["pager"] == 1.5
    # The OpenAPI document's enum.
    spec = client.get("/openapi.json").get_json()
    assert "pager" in json.dumps(spec["paths"]["/auth/start"])
    # The request field, the gateway and the stand-in (which answered it): a start goes
    # by POST /pager/send.
    answer = start(client, deliveryRoute="PAGER")
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "pager")
    assert [path for path, _ in sends(rsps)] == ["/pager/send"]
    # Delivery tracking reads its status from GET /pager/status, and the fallback moves on.
    pin_status(upstreams, "Delivery failure")
    assert post(client, "/auth/resend", {**TG, "sessionId": answer["sessionId"]}
                )["deliveryRoute"] == "sms"
    assert any(c.request.path_url.startswith("/pager/status") for c in rsps.calls)
    # Costs and metrics by its label; the code checks and the CRM records its method.
    assert value(scrape(client), "gurugrow_code_cost_total", route="pager") >= 1.5
    assert check(client, answer["sessionId"], upstreams.codes_sent()[-1])["status"] == (
        "authorized")
    # The doctor lists it in the workflow.
    result = app.test_cli_runner().invoke(args=["gurugrow", "doctor"])
    assert "telegram: pager → sms" in result.output


# -- verification by the customer's own call --------------------------------------------
INCOMING = {**SENDERS, "DELIVERY_ROUTES_TELEGRAM": "telegram,sms,incoming_call"}


def called(upstreams, phone: str = "79991234567") -> None:
    """The customer calls the number (the sandbox's /sandbox/incoming-call)."""
    response = upstreams.app.test_client().post("/incoming-call", data={"phone": phone})
    assert response.status_code == 200, response.data


def wait_for_call(client, session_id, kind="form"):
    return post(client, "/auth/check", {**TG, "sessionId": session_id}, kind)


@pytest.mark.parametrize("env_overrides", [INCOMING])
@pytest.mark.parametrize("kind", BODY_KINDS)
def test_an_incoming_call_verifies_once_the_customer_called(client, greensms, kind):
    upstreams, rsps = greensms
    answer = start(client, kind, deliveryRoute="incoming_call")
    assert (answer["status"], answer["deliveryRoute"]) == ("sent", "incoming_call")
    [(path, body)] = sends(rsps)
    assert path == "/call/receive" and body["to"] == "79991234567" and "txt" not in body
    number = upstreams.sent[-1]["number"]
    assert answer["callNumber"] == f"+{number}"
    assert answer["callNumber"] in answer["message"] and answer["maskedPhone"] in (
        answer["message"])
    pending = wait_for_call(client, answer["sessionId"], kind)
    assert (pending["status"], pending["retryAfterSec"]) == ("pending", 5)
    assert pending["authorized"] is False
    called(upstreams)
    done = wait_for_call(client, answer["sessionId"], kind)
    assert (done["status"], done["customerId"]) == ("authorized", str(CUSTOMER))
    assert upstreams.field(CUSTOMER, "bot_last_verification_method") == "incoming_call_otp"
    # A replay gets the same answer; a code typed for it is no code of it.
    again = wait_for_call(client, answer["sessionId"], kind)
    assert again["status"] == "authorized", again


@pytest.mark.parametrize("env_overrides", [INCOMING])
def test_an_incoming_call_not_made_expires_with_its_session(app, client, greensms):
    answer = start(client, deliveryRoute="incoming_call")
    assert wait_for_call(client, answer["sessionId"])["status"] == "pending"
    later(app, 24 * 3600)
    assert wait_for_call(client, answer["sessionId"])["status"] == "expired"


@pytest.mark.parametrize("env_overrides", [INCOMING])
def test_a_check_without_a_code_is_refused_for_a_code_session(client, greensms):
    answer = start(client)  # the workflow's first: telegram
    assert answer["deliveryRoute"] == "telegram"
    refused = wait_for_call(client, answer["sessionId"])
    assert (refused["errorCode"], refused["authorized"]) == ("invalid_code", False)


@pytest.mark.parametrize("env_overrides", [INCOMING])
def test_an_incoming_call_of_a_phone_with_no_customer_looks_the_same_and_never_verifies(
        client, greensms):
    upstreams, _ = greensms
    answer = start(client, deliveryRoute="incoming_call", phone="+7 999 000-00-99")
    assert answer["status"] == "sent" and answer["callNumber"].startswith("+7800")
    called(upstreams, "79990000099")
    assert wait_for_call(client, answer["sessionId"])["status"] == "pending"


def test_incoming_call_is_in_no_default_workflow():
    settings, _ = Settings.load_lenient({})
    assert all("incoming_call" not in settings.workflow(c) for c in CHANNELS)


@pytest.mark.parametrize("env_overrides", [INCOMING])
def test_the_recommended_check_creates_the_order_after_the_call(client, greensms):
    upstreams, _ = greensms
    upstreams.add_bundle(31, "SET-MALE-BASIC")
    answer = recommended_start(client, "form", deliveryRoute="incoming_call")
    assert answer["deliveryRoute"] == "incoming_call", answer
    body = {**TG, "sessionId": answer["sessionId"]}
    assert post(client, "/orders/recommended/check", body)["status"] == "pending"
    called(upstreams)
    assert post(client, "/orders/recommended/check", body)["status"] == "created"


@pytest.mark.parametrize("env_overrides", [INCOMING])
def test_another_identity_never_gets_an_incoming_calls_answer(client, greensms):
    upstreams, _ = greensms
    answer = start(client, deliveryRoute="incoming_call")
    other = {**TG, "messengerUserId": "someone-else", "sessionId": answer["sessionId"]}
    assert post(client, "/auth/check", other)["errorCode"] == "session_not_found"
    called(upstreams)
    assert post(client, "/auth/check", other)["errorCode"] == "session_not_found"
    assert wait_for_call(client, answer["sessionId"])["status"] == "authorized"
    assert post(client, "/auth/check", other)["status"] != "authorized"


@pytest.mark.parametrize("env_overrides", [{**SENDERS, "DELIVERY_ROUTES_TELEGRAM": "call,sms"}])
@pytest.mark.parametrize(("sms_answer", "expected"), [
    (None, ("sent", "sms")),  # the flash call may have rung: SMS carries a code we hold
    ((200, {"error": "Insufficient funds", "code": -1}), ("error", "delivery_failed")),
])
def test_a_flash_call_of_unknown_outcome_moves_on_and_keeps_its_admission(
        client, greensms, sms_answer, expected):
    upstreams, _ = greensms
    upstreams.fail["call"] = (502, "<html>Bad Gateway</html>")  # its code never came back
    if sms_answer is not None:
        upstreams.fail["sms"] = sms_answer
    answer = start(client)
    assert (answer["status"], answer["deliveryRoute"] if answer["status"] == "sent"
            else answer["errorCode"]) == expected
    assert upstreams.state.send_attempts == ["call", "sms"]
    # The call may have rung the phone: the admission is kept, so the cooldown holds.
    again = start(client)
    assert (again["status"], again["errorCode"]) == ("error", "resend_too_early")
