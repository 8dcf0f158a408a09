"""The "My orders" endpoints: GET /orders and POST /orders/repeat."""

from __future__ import annotations

from flask import Blueprint

from gurugrow.api import schemas as s
from gurugrow.api.contract import BINDING_REFUSALS, endpoint
from gurugrow.flows import orders
from gurugrow.governor import JOURNEY

bp = Blueprint("orders", __name__, url_prefix="/orders")

bp.get("")(endpoint(
    s.OrdersQuery, s.OrdersResponse,
    statuses=("ok", "empty", "not_authorized", "conflict"),
    error_codes=BINDING_REFUSALS)(orders.list_orders))
bp.post("/repeat")(endpoint(
    s.RepeatOrderBody, s.RepeatOrderResponse,
    statuses=("created", "unavailable_item", "not_found", "not_authorized", "conflict"),
    error_codes=("unavailable_item", "order_not_found", "in_progress", *BINDING_REFUSALS),
    crm_priority=JOURNEY)(orders.repeat_order))
