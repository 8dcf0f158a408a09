"""The "My orders" endpoints: GET /orders and POST /orders/repeat."""

from __future__ import annotations

from flask import Blueprint

from gurugrow import schemas
from gurugrow.api.contract import endpoint
from gurugrow.flows import orders

bp = Blueprint("orders", __name__, url_prefix="/orders")

bp.get("")(endpoint(schemas.OrdersQuery, schemas.OrdersResponse)(orders.list_orders))
bp.post("/repeat")(endpoint(schemas.RepeatOrderBody, schemas.RepeatOrderResponse)(
    orders.repeat_order))
