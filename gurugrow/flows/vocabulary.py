"""What every flow shares: the answer type and the caller's identity.

A flow takes its typed request (``gurugrow.flows.requests``), returns an ``Answer`` (the
fields of the endpoint's envelope, which its response schema renders) or raises
``FlowRefusal`` (``gurugrow.basics.errors``); the API layer renders either. Flows import these
from here and from ``gurugrow.basics.errors``, never from one another.
"""

from __future__ import annotations

from typing import TypedDict

from gurugrow.basics.identity import MessengerIdentity, identity_for
from gurugrow.basics.json_types import JsonValue
from gurugrow.flows.requests import IdentityRequest
from gurugrow.services import Services


class Answer(TypedDict, total=False):
    """The fields a flow answers, by their contract names; the endpoint's response schema
    renders those it declares (every declared field present, ``null`` when not given)."""

    status: str
    errorCode: str | None
    message: str | None
    retryAfterSec: int | None
    customerId: str | None
    maskedPhone: str | None
    channelType: str | None
    text: str | None
    # the code steps (start, check, resend)
    sessionId: str | None
    deliveryRoute: str | None
    callNumber: str | None
    authorized: bool
    verifiedUntil: str | None
    # /orders, /orders/repeat
    shownCount: int
    orders: list[dict[str, JsonValue]]  # flows/order_view.present_order
    sourceOrderId: str | None
    sourceOrderNumber: str | None
    newOrderId: str | None
    newOrderNumber: str | None
    unavailableItemName: str | None
    # /orders/recommended/*
    offerCode: str | None
    title: str | None
    orderId: str | None
    orderNumber: str | None


def identity_of(svc: Services, request: IdentityRequest) -> MessengerIdentity:
    """The messenger identity of a request (its ``channel`` and ``account_id``)."""
    return identity_for(request.channel, request.account_id, svc.settings)
