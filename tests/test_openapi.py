"""/openapi.json and /docs: every route, body, field, status and errorCode documented."""

from __future__ import annotations

import re

import fakeredis
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from gurugrow import create_app
from gurugrow.api.openapi import UNDOCUMENTED_PREFIXES, examples, openapi_path
from tests.conftest import TEST_ENV
from tests.helpers import BODY_KINDS, TG, get, post

TG_FIELD = "bot_telegram_account_id"


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def contract_operations(app):
    """(method, path, view contract) of every contract endpoint."""
    for rule in app.url_map.iter_rules():
        contract = getattr(app.view_functions[rule.endpoint], "contract", None)
        if contract:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                yield method, rule.rule, contract


def answer_schema(spec, method, path):
    return spec["paths"][openapi_path(path)][method.lower()]["responses"]["200"]["content"][
        "application/json"]["schema"]


def test_document_is_valid_openapi(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.")


@pytest.mark.parametrize("sandbox", [False, True])
def test_every_route_is_documented(sandbox):
    app = create_app({**TEST_ENV, "GURUGROW_SANDBOX": str(int(sandbox))},
                     redis_client=fakeredis.FakeRedis())
    spec = app.test_client().get("/openapi.json").get_json()
    routes = {(method.lower(), openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
              if not rule.rule.startswith(UNDOCUMENTED_PREFIXES)
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert routes - documented == set()
    assert len(routes) >= 15


def test_every_schema_field_status_and_error_code_is_documented(app, spec):
    operations = list(contract_operations(app))
    # Every contract endpoint has its examples in examples.json, and every entry there
    # is an endpoint: the file is the list of endpoints, no count kept by hand.
    assert {f"{method} {path}" for method, path, _ in operations} == set(examples())
    for method, path, contract in operations:
        operation = spec["paths"][openapi_path(path)][method.lower()]
        answer = answer_schema(spec, method, path)
        assert set(answer["properties"]) == set(contract.response.fields), path
        assert answer["properties"]["status"]["enum"] == list(contract.statuses)
        assert set(answer["properties"]["errorCode"]["enum"]) == {*contract.error_codes, None}
        documented = {p["name"] for p in operation.get("parameters", [])}
        if method != "GET":
            content = operation["requestBody"]["content"]
            assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
            documented |= set(content["application/json"]["schema"]["properties"])
        assert documented == set(contract.request.fields), path


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_real_answers_match_the_document(app, client, spec, upstreams, kind):
    """Real answers, success and refusal, validate against their documented schema (no
    field more, none fewer, every status and errorCode among the documented ones)."""
    upstreams.add_customer(626518, "+79991234567", **{TG_FIELD: "123456789"})
    upstreams.add_order(1, 626518)
    orders = get(client, "/orders", TG)
    assert orders["status"] == "ok"
    order_schema = {**spec["components"]["schemas"]["Order"], "additionalProperties": False,
                    "required": list(spec["components"]["schemas"]["Order"]["properties"])}
    OAS30Validator(order_schema).validate(orders["orders"][0])
    checked = 0
    for method, path, _ in contract_operations(app):
        validator = OAS30Validator(answer_schema(spec, method, path))
        for fields in ({}, TG):
            answer = (get(client, path, fields) if method == "GET"
                      else post(client, path, fields, kind))
            validator.validate(answer)
            checked += 1
    assert checked == 2 * len(examples())


def test_an_undocumented_field_fails_validation(spec):
    validator = OAS30Validator(answer_schema(spec, "GET", "/auth/status"))
    answer = {"status": "authorized", "customerId": "1", "maskedPhone": None,
              "errorCode": None, "message": None}
    validator.validate(answer)
    with pytest.raises(Exception, match="Additional properties"):
        validator.validate({**answer, "phone": "79991234567"})


def test_docs_page_works_offline(client, spec):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert "<script" not in page and "src=\"http" not in page and "href=\"http" not in page
    for path, operations in spec["paths"].items():
        assert path in page
        for operation in operations.values():
            answer = operation["responses"].get("200", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            for code in answer.get("properties", {}).get("errorCode", {}).get("enum", []):
                assert code is None or code in page


def test_every_error_code_has_its_own_message(app):
    from gurugrow import texts

    codes = {code for _, _, contract in contract_operations(app)
             for code in contract.error_codes}
    assert codes - set(texts.ERROR_MESSAGES) == set()


@pytest.mark.parametrize(("path", "allowed"), [
    ("/auth/check", {"POST", "OPTIONS"}), ("/auth/status", {"GET", "HEAD", "OPTIONS"}),
])
def test_options_answers_204_with_allow(client, path, allowed):
    response = client.options(path)
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == allowed
    assert response.data == b"" and "text/html" not in response.headers.get("Content-Type", "")


def test_docs_claims_only_what_is_true_and_renders_its_markdown(client):
    html = client.get("/docs").get_data(as_text=True)
    assert "aliases accepted" not in html
    assert "tg is invalid_channel" in html  # as the service answers it:
    assert get(client, "/auth/status", {"channelType": "tg", "messengerUserId": "1"})[
        "errorCode"] == "invalid_channel"
    # No raw Markdown outside the examples (<pre>): code spans and bold are rendered.
    prose = re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)
    assert "`" not in prose
    assert "<code>sessionId</code>" in prose
    assert "overflow-wrap: anywhere" in html  # long form-encoded examples wrap
