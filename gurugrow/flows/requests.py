"""What each flow is asked: the typed requests the API's request schemas load into.

A request schema (``gurugrow/api/schemas.py``) names its ``request_type``; its fields,
checked and converted there, fill the dataclass's fields of the same name in snake case
(``customerId`` → ``customer_id``). The endpoint wrapper adds ``client_ip``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class FlowRequest:
    """What every request carries: the caller's address (set by the endpoint wrapper)."""

    client_ip: str | None = None


@dataclass(frozen=True, kw_only=True)
class IdentityRequest(FlowRequest):
    """A request of a messenger user: its channel and stable account id."""

    channel: str
    account_id: str
    # Every identity field sent: all name the same sender (basics.identity.sent_account_ids).
    account_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CustomerRequest(IdentityRequest):
    """An identity with the customer it claims to be (GET /auth/status, /auth/unlink)."""

    customer_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class OrdersRequest(CustomerRequest):
    """GET /orders."""

    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class RepeatOrderRequest(CustomerRequest):
    """POST /orders/repeat: the order to repeat, by id or by number."""

    source_order_id: str | None = None
    source_order_number: str | None = None


@dataclass(frozen=True, kw_only=True)
class StartRequest(IdentityRequest):
    """POST /auth/start: the phone a code goes to, by the route asked for."""

    phone: str
    delivery_route: str | None = None


@dataclass(frozen=True, kw_only=True)
class CheckRequest(IdentityRequest):
    """POST /auth/check and /orders/recommended/check (no code: asks if the call came)."""

    session_id: str
    code: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContactRequest(IdentityRequest):
    """POST /auth/contact: a contact the messenger shared, with its owner's user id."""

    phone: str
    contact_user_id: str


@dataclass(frozen=True, kw_only=True)
class ResendRequest(FlowRequest):
    """POST /auth/resend and /orders/recommended/resend: the identity is optional."""

    session_id: str
    channel: str | None = None
    account_ids: tuple[str, ...] = ()
    delivery_route: str | None = None


@dataclass(frozen=True, kw_only=True)
class PreviewRequest(CustomerRequest):
    """POST /orders/recommended/preview."""

    offer_code: str


@dataclass(frozen=True, kw_only=True)
class RecommendedCreateRequest(PreviewRequest):
    """POST /orders/recommended/create: the set and who receives it."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecommendedStartRequest(RecommendedCreateRequest):
    """POST /orders/recommended/start: a code to the recipient's phone first."""

    phone: str
    delivery_route: str | None = None
