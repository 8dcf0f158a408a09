"""RetailCRM is the last word on "done": an order-creating request names its order by an
externalId made of what the request is and a window of ORDER_ONCE_WINDOW_SECONDS, and
looks that order up in RetailCRM before creating. Redis's run-once marker may be lost (a
restart without persistence, an eviction); RetailCRM's orders are not.

Shared by /orders/repeat and /orders/recommended/create.
"""

from __future__ import annotations

from dataclasses import dataclass

from gurugrow.flows.order_once import request_token
from gurugrow.gateways.retailcrm import CreatedOrder
from gurugrow.logs import log_event
from gurugrow.services import Services


@dataclass(frozen=True)
class WindowedOrder:
    """The externalId a new order gets now, and the ones an earlier identical request
    may have used (this window's and the one before, so a repeat just after a window
    turns still finds its order)."""

    external_id: str
    look_up: tuple[str, ...]


def windowed_order(svc: Services, kind: str, *parts: str) -> WindowedOrder:
    """The externalIds of the order ``kind`` made of ``parts`` (the account, the source
    order or offer...). A deliberate repeat one to two windows later is a new order."""
    window = int(svc.clock() // svc.settings.order_once_window_seconds)

    def external_id(index: int) -> str:
        return f"bot-{kind}-{request_token(kind, *parts, str(index))}"

    return WindowedOrder(external_id(window), (external_id(window), external_id(window - 1)))


def order_made_in_window(svc: Services, order: WindowedOrder, site: str
                         ) -> CreatedOrder | None:
    """The order an identical request already made in store ``site`` (its id and number,
    the id when it has none), or None; one RetailCRM request. An upstream failure is raised: unknown
    whether it exists, so nothing is created."""
    found = svc.crm.find_orders_by_external_ids(list(order.look_up), site)
    if not found:
        return None
    log_event("order_found_by_external_id", order_id=found[0].id)
    return CreatedOrder(id=found[0].id, number=found[0].number or found[0].id)
