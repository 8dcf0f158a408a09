"""docs/ARCHITECTURE.md "Add an endpoint", followed for a throwaway `GET /orders/<orderId>`
with a path parameter: each step of the checklist is taken here and what the suite
demands of it is checked, so the checklist stays true."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
from flask import Blueprint
from marshmallow import fields

from gurugrow import create_app
from gurugrow.api import schemas
from gurugrow.api.contract import check_path_parameters, contract_routes, endpoint
from gurugrow.api.fields import InternalId
from gurugrow.api.openapi import build_spec
from gurugrow.basics.errors import FlowRefusal
from gurugrow.flows.requests import IdentityRequest
from tests.conftest import TEST_ENV, anonymous_client
from tests.examples_replay import Replay
from tests.helpers import TG


# Step 1: the typed request, and the schemas loading into it, the path parameter a field
# of the request schema.
@dataclass(frozen=True, kw_only=True)
class OrderRequest(IdentityRequest):
    order_id: str


class OrderQuery(schemas.IdentitySchema):
    orderId = InternalId(error_code="order_not_found", error_status="not_found")
    request_type = OrderRequest


class OrderResponse(schemas.EnvelopeSchema):
    orderId = fields.String(allow_none=True)


# Step 2: the flow; its docstring is the OpenAPI summary and description.
def show_order(svc: Any, data: OrderRequest) -> dict[str, Any]:
    """One order of the customer.

    Answers the order id it was asked for (a throwaway endpoint of the test)."""
    if data.order_id == "404":
        raise FlowRefusal("order_not_found", "not_found")
    return {"status": "ok", "orderId": data.order_id}


def throwaway_app(rule: str = "/orders/<orderId>", request_schema: type = OrderQuery):
    app = create_app(TEST_ENV, redis_client=fakeredis.FakeRedis())
    bp = Blueprint("throwaway", __name__)
    # Step 3: the route, one line, every status and errorCode declared.
    bp.get(rule)(endpoint(request_schema, OrderResponse, statuses=("ok", "not_found"),
                          error_codes=("order_not_found",), crm_bound=False)(show_order))
    app.register_blueprint(bp)
    check_path_parameters(app)  # what create_app does for its own blueprints
    return app


def test_a_path_parameter_reaches_the_flow_and_wins_over_the_query():
    client = throwaway_app().test_client()
    answer = client.get("/orders/5008", query_string={**TG, "orderId": "1"}).get_json()
    assert answer == {"status": "ok", "errorCode": None, "message": None, "orderId": "5008"}


@pytest.mark.parametrize(("path", "status", "error_code"), [
    ("/orders/404", "not_found", "order_not_found"),     # the flow's refusal
    ("/orders/not-an-id", "not_found", "order_not_found"),  # the schema's field refuses it
])
def test_refusals_of_a_path_parameter_are_contract_answers(path, status, error_code):
    response = throwaway_app().test_client().get(path, query_string=TG)
    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["errorCode"]) == (
        status, error_code)


def test_a_path_parameter_the_schema_lacks_stops_the_start():
    with pytest.raises(TypeError, match=r"/orders/<orderId>.*orderId.*IdentitySchema"):
        throwaway_app(request_schema=schemas.IdentitySchema)


def test_the_openapi_document_has_the_path_parameter_and_the_docstring():
    spec = build_spec(throwaway_app())
    operation = spec["paths"]["/orders/{orderId}"]["get"]
    assert operation["summary"] == "One order of the customer."
    assert operation["description"].startswith("Answers the order id")
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert by_name["orderId"]["in"] == "path" and by_name["orderId"]["required"] is True
    assert by_name["channelType"]["in"] == "query"
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["status"]["enum"] == ["error", "ok", "not_found"]


def test_the_route_is_protected_and_listed_with_the_contract_routes():
    app = throwaway_app()
    assert ("GET", "/orders/<orderId>") in {(m, r.rule) for m, r, _ in contract_routes(app)}
    assert anonymous_client(app).get("/orders/5008", query_string=TG).status_code == 401


def test_an_example_with_a_path_parameter_replays(upstreams):
    app = throwaway_app()
    example = {"title": "An order", "request": {**TG, "orderId": "5008"},
               "answer": {"status": "ok", "errorCode": None, "message": None,
                          "orderId": "5008"}}
    status, answer = Replay(app, app.test_client(), upstreams).run(
        "GET", "/orders/<orderId>", example, "query")
    assert (status, answer) == (200, example["answer"])
