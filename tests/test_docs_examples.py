"""/docs: endpoints in journey order, and for every contract endpoint an example of each
status it declares — each one replayed here against the sandbox stand-ins, in both body
encodings, and answered exactly as documented."""

from __future__ import annotations

import html
import re

import pytest
import responses

from gurugrow.api.openapi import examples
from gurugrow.basics.catalog import RECOMMENDED_SETS
from gurugrow.basics.identity import IDENTITY_FIELDS
from gurugrow.sandbox.data import demo_data
from tests.examples_replay import EXAMPLE_ENV, Replay, same_apart_from_volatile
from tests.test_openapi import contract_operations
from tests.upstreams import Upstreams


# GET takes a query string only; a POST body is sent form-encoded and as JSON.
@pytest.fixture
def env_overrides() -> dict[str, str]:
    return EXAMPLE_ENV


@pytest.fixture
def demo_upstreams():
    """The stand-ins with the sandbox's demo data (the examples' world)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield Upstreams(rsps, demo_data())


CASES = [(key, index, kind) for key, cases in examples().items() for index in range(len(cases))
         for kind in (("query",) if key.startswith("GET ") else ("form", "json"))]


@pytest.mark.parametrize(("key", "index", "kind"), CASES,
                         ids=[f"{k}#{i}-{kind}" for k, i, kind in CASES])
def test_every_example_is_what_the_service_answers(app, client, demo_upstreams, key, index,
                                                   kind):
    method, path = key.split(" ", 1)
    example = examples()[key][index]
    http_status, answer = Replay(app, client, demo_upstreams).run(method, path, example, kind)
    assert http_status == 200
    assert same_apart_from_volatile(answer, example["answer"]) == example["answer"], (
        f"{key} example {index} ({example['title']}) is not what the service answers: fix "
        "the example in gurugrow/api/examples.json, or if the answer changed on purpose, "
        "`python -m tests.examples_replay` rewrites every answer from a replay")


def test_every_declared_status_has_an_example(app):
    documented = examples()
    operations = list(contract_operations(app))
    assert len(operations) >= 11
    for method, path, contract in operations:
        shown = {case["answer"]["status"] for case in documented.get(f"{method} {path}", [])}
        assert set(contract.statuses) - shown == set(), f"{method} {path}: no example"


def rendered_examples(page: str) -> dict[str, set[str]]:
    """From the rendered /docs: "METHOD /path" → the statuses its examples show."""
    found: dict[str, set[str]] = {}
    sections = re.split(r'<h2 id="(get|post)(-[^"]*)"', page)
    for method, anchor, body in zip(sections[1::3], sections[2::3], sections[3::3],
                                    strict=True):
        path = re.search(r"<code>([^<]*)</code></h2>", body)
        if path is None:
            continue
        statuses = set(re.findall(r'<details class="example" data-status="([^"]+)"', body))
        form = body.count("application/x-www-form-urlencoded\n\n")
        as_json = body.count("Content-Type: application/json\n\n")
        if method == "post" and statuses:
            assert form == as_json == body.count('<details class="example"'), anchor
        found[f"{method.upper()} {html.unescape(path.group(1))}"] = statuses
    return found


def test_docs_page_shows_the_examples_in_journey_order(app, client):
    page = client.get("/docs").get_data(as_text=True)
    assert "<script" not in page
    shown = rendered_examples(page)
    for method, path, contract in contract_operations(app):
        key = f"{method} {path}"
        assert set(contract.statuses) <= shown.get(key, set()), f"{key} lacks examples"
    order = list(shown)
    journey = [k for k in examples() if k in order]
    assert order[:len(journey)] == journey, "contract endpoints first, in journey order"
    assert order.index("POST /auth/start") < order.index("POST /auth/check")
    assert order.index("GET /metrics") > order.index("POST /orders/recommended/check")


def test_docs_page_lists_offer_codes_and_the_identity_rule(client):
    page = html.unescape(client.get("/docs").get_data(as_text=True))
    for code, offer in RECOMMENDED_SETS.items():
        assert f"<code>{code}</code></td><td>{offer.title}</td>" in page
    identity = page[page.index('id="identity"'):page.index('id="offers"')]
    positions = [identity.index(f"<code>{field}</code>") for field in IDENTITY_FIELDS]
    assert positions == sorted(positions), "the identity fields in order of preference"
    assert "chatExternalId" in identity and "never bind" in identity


def test_docs_page_says_how_to_send_the_token(client):
    page = client.get("/docs").get_data(as_text=True)
    callers = page[page.index('id="callers"'):page.index('id="offers"')]
    assert "<code>Authorization: Bearer &lt;token&gt;</code>" in callers
    assert "<code>X-API-Token: &lt;token&gt;</code>" in callers


def test_openapi_carries_the_examples(spec):
    operation = spec["paths"]["/auth/start"]["post"]
    body = operation["requestBody"]["content"]
    assert body["application/json"]["examples"] == body[
        "application/x-www-form-urlencoded"]["examples"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert {e["value"]["status"] for e in answers.values()} == {"sent", "error"}


def test_root_points_to_docs(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/docs"


@pytest.fixture
def spec(client):
    return client.get("/openapi.json").get_json()
