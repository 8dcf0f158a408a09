"""Marshmallow schemas: request bodies/queries in, contract envelopes out.

Requests: every field is optional (BotMarketing sends numbers as numbers or strings,
and empty strings for unset variables) and of one field class of gurugrow/api/fields.py,
which checks and converts it once; a field that fails names the ``errorCode`` (and
``status``) of the answer through its ``error_code`` (``error_status``) metadata.
Responses: every contract field is always present, ``null`` when empty.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validates_schema

from gurugrow.api.fields import (
    AccountId,
    Channel,
    Code,
    DeliveryRoute,
    FreeText,
    InternalId,
    Limit,
    Phone,
    SessionId,
    Slug,
    Text,
)
from gurugrow.basics.identity import IDENTITY_FIELDS, pick_account_id, sent_account_ids
from gurugrow.flows import requests as rq


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


_LOADED_NAMES: dict[type[rq.FlowRequest], tuple[tuple[str, str], ...]] = {}


def _loaded_names(request_type: type[rq.FlowRequest]) -> tuple[tuple[str, str], ...]:
    """Each field of a request type with the camelCase name it is loaded as (worked out
    once per type, not on every request)."""
    names = _LOADED_NAMES.get(request_type)
    if names is None:
        names = _LOADED_NAMES[request_type] = tuple(
            (f.name, _camel(f.name)) for f in dataclasses.fields(request_type))
    return names


class RequestSchema(Schema):
    """Base of request schemas: unknown fields ignored; ``required_fields`` enforced;
    loads into its ``request_type`` (a frozen dataclass of gurugrow/flows/requests.py)."""

    class Meta:
        unknown = EXCLUDE

    required_fields: tuple[str, ...] = ()
    # None: the schema loads into a plain dict (a base or a schema of no endpoint).
    request_type: type[rq.FlowRequest] | None = None

    @validates_schema
    def _require(self, data: dict[str, Any], **kwargs: Any) -> None:
        missing = {name: ["Required."] for name in self.required_fields if not data.get(name)}
        if missing:
            raise ValidationError(missing)

    def resolve(self, data: dict[str, Any]) -> dict[str, Any]:
        """Values derived from the loaded fields (an identity from its fields)."""
        return data

    @post_load
    def _typed(self, data: dict[str, Any], **kwargs: Any) -> Any:
        data = self.resolve(data)
        if self.request_type is None:
            return data
        # Each field of the request from the loaded value of its camelCase name; the
        # client_ip is the wrapper's to set.
        return self.request_type(**{name: data[camel] for name, camel in
                                    _loaded_names(self.request_type) if camel in data})


class IdentitySchema(RequestSchema):
    """channelType + one stable messenger id (the contract's identity fields)."""

    channelType = Channel()
    messengerUserId = AccountId()
    customerExternalId = AccountId()
    messengerAccountId = AccountId()
    messengerAccountIdFallback = AccountId()
    chatExternalId = AccountId(error_code="invalid_request")  # accepted, never used to bind
    required_fields: tuple[str, ...] = ("channelType",)

    @validates_schema
    def _identity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if pick_account_id(data) is None:
            raise ValidationError("One identity field is required.", IDENTITY_FIELDS[0])

    def resolve(self, data: dict[str, Any]) -> dict[str, Any]:
        data["channel"] = data.get("channelType")
        data["accountId"] = pick_account_id(data)
        data["accountIds"] = sent_account_ids(data)
        return data


def _customer_id() -> InternalId:
    # A claimed customer that is not a CRM id cannot be the bound one: answered as the
    # flow answers a mismatch.
    return InternalId(error_code="customer_mismatch", error_status="conflict")


class AuthStatusQuery(IdentitySchema):
    customerId = _customer_id()
    request_type = rq.CustomerRequest


class AuthStartBody(IdentitySchema):
    phone = Phone()
    deliveryRoute = DeliveryRoute()
    required_fields = ("channelType", "phone")
    request_type = rq.StartRequest


class AuthCheckBody(IdentitySchema):
    sessionId = SessionId()
    code = Code()  # a malformed code is refused here, without costing an attempt
    # No code: an incoming-call session asks whether the customer called (the flow
    # answers any other session invalid_code, as a missing code always was).
    required_fields = ("channelType", "sessionId")
    request_type = rq.CheckRequest


class AuthContactBody(IdentitySchema):
    phone = Phone()
    # The user id the messenger attached to the shared contact: it must be the caller's
    # own messenger id, or the contact is someone else's (refused as such).
    contactUserId = AccountId(error_code="contact_not_own")
    required_fields = ("channelType", "phone", "contactUserId")
    request_type = rq.ContactRequest


class AuthResendBody(RequestSchema):
    sessionId = SessionId()
    channelType = Channel()
    deliveryRoute = DeliveryRoute()
    # The caller's messenger identity, optional (the contract's example sends none): when
    # sent it must be the session's, else "session_not_found"; the sessionId is enough.
    messengerUserId = AccountId(error_code="session_not_found")
    customerExternalId = AccountId(error_code="session_not_found")
    messengerAccountId = AccountId(error_code="session_not_found")
    messengerAccountIdFallback = AccountId(error_code="session_not_found")
    chatExternalId = AccountId(error_code="invalid_request")  # accepted, never used to match
    required_fields = ("sessionId",)

    request_type = rq.ResendRequest

    def resolve(self, data: dict[str, Any]) -> dict[str, Any]:
        data["channel"] = data.get("channelType")
        data["accountIds"] = sent_account_ids(data)
        return data


class AuthUnlinkBody(IdentitySchema):
    customerId = _customer_id()
    request_type = rq.CustomerRequest


class OrdersQuery(IdentitySchema):
    customerId = _customer_id()
    # Bots send whatever a variable holds: an out-of-range limit is clamped, not refused.
    limit = Limit(low=1, high=5)
    request_type = rq.OrdersRequest


class RepeatOrderBody(IdentitySchema):
    customerId = _customer_id()
    # Not a CRM id: no order of this customer has it (answered as a missing order).
    sourceOrderId = InternalId(error_code="order_not_found", error_status="not_found")
    sourceOrderNumber = Text(error_code="order_not_found", max_length=64)
    request_type = rq.RepeatOrderRequest

    @validates_schema
    def _source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("sourceOrderId") and not data.get("sourceOrderNumber"):
            raise ValidationError("sourceOrderId or sourceOrderNumber is required.",
                                  "sourceOrderNumber")


class RecommendedPreviewBody(IdentitySchema):
    offerCode = Slug(error_code="unknown_offer")
    customerId: fields.Field = _customer_id()  # RecommendedStartBody redeclares it
    required_fields: tuple[str, ...] = ("channelType", "offerCode")
    request_type: type[rq.FlowRequest] | None = rq.PreviewRequest


class RecommendedCreateBody(RecommendedPreviewBody):
    # Any name a messenger allows, normalised (api/fields.normalize_free_text).
    firstName = FreeText(max_length=100, error_code="invalid_first_name")
    lastName = FreeText(max_length=100, error_code="invalid_last_name")
    phone = Phone()
    # An email that does not look like one is dropped by the flow, not refused.
    email = FreeText(max_length=200, error_code="invalid_email")
    request_type: type[rq.FlowRequest] | None = rq.RecommendedCreateRequest


class RecommendedStartBody(RecommendedCreateBody):
    customerId = Text(max_length=32)  # accepted and ignored: nobody is authorized yet
    deliveryRoute = DeliveryRoute()
    required_fields = ("channelType", "offerCode", "phone")
    request_type = rq.RecommendedStartRequest


class RecommendedCheckBody(AuthCheckBody):
    pass


class RecommendedResendBody(AuthResendBody):
    pass


# -- responses ------------------------------------------------------------------------
def _nullable(field_cls: type[fields.Field] = fields.String, **kwargs: Any) -> fields.Field:
    return field_cls(dump_default=None, allow_none=True, **kwargs)


# Additive to the contract: which route took the code (null on a refusal).
DELIVERY_ROUTE_ANSWER = ("The route that took the code (gurugrow/routes.py; the workflow's "
                         "next after a fallback; null on a refusal).")


class EnvelopeSchema(Schema):
    """Fields every contract answer carries."""

    status = fields.String(required=True)
    errorCode = _nullable()
    message = _nullable()
    # Only in answers that carry it (errorCode=busy): absent, not null, elsewhere, so
    # the answers of the first wave keep their exact fields. Start and resend redeclare it.
    retryAfterSec: fields.Field = fields.Integer(allow_none=True, metadata={"optional": True})


class AuthStatusResponse(EnvelopeSchema):
    customerId = _nullable()
    maskedPhone = _nullable()


def _call_number() -> fields.Field:
    """Only when deliveryRoute is incoming_call: absent, not null, elsewhere."""
    return fields.String(allow_none=True, metadata={
        "optional": True, "description": "The number the customer calls from their phone "
        "(deliveryRoute incoming_call); then /auth/check with the sessionId and no code."})


class AuthStartResponse(EnvelopeSchema):
    sessionId = _nullable()
    maskedPhone = _nullable()
    retryAfterSec = _nullable(fields.Integer)
    deliveryRoute = _nullable(metadata={"description": DELIVERY_ROUTE_ANSWER})
    callNumber = _call_number()


class AuthCheckResponse(EnvelopeSchema):
    authorized = fields.Boolean(dump_default=False)
    customerId = _nullable()
    verifiedUntil = _nullable()
    maskedPhone = _nullable()


class AuthResendResponse(EnvelopeSchema):
    retryAfterSec = _nullable(fields.Integer)
    maskedPhone = _nullable()
    deliveryRoute = _nullable(metadata={"description": DELIVERY_ROUTE_ANSWER})
    callNumber = _call_number()


class AuthUnlinkResponse(EnvelopeSchema):
    customerId = _nullable()
    channelType = _nullable()
    text = _nullable()


class OrderSchema(Schema):
    """One order of /orders, with its bot texts and compatibility aliases."""

    sourceOrderId = _nullable()
    sourceOrderNumber = _nullable()
    orderNumber = _nullable()
    createdAt = _nullable()
    createdAtText = _nullable()
    itemsText = _nullable()
    deliveryAddressText = _nullable()
    statusGroup = _nullable()
    statusLabel = _nullable()
    deliveryCode = _nullable()
    trackingCode = _nullable()
    trackingUrl = _nullable()
    canTrackOnline = fields.Boolean(dump_default=False)
    detailText = _nullable()
    repeatConfirmText = _nullable()
    trackingText = _nullable()
    trackingNumber = _nullable()
    deliveryStatus = _nullable()


class OrdersResponse(EnvelopeSchema):
    customerId = _nullable()
    shownCount = fields.Integer(dump_default=0)
    orders = fields.List(fields.Nested(OrderSchema), dump_default=list)
    text = _nullable()


class RepeatOrderResponse(EnvelopeSchema):
    customerId = _nullable()
    sourceOrderId = _nullable()
    sourceOrderNumber = _nullable()
    newOrderId = _nullable()
    newOrderNumber = _nullable()
    unavailableItemName = _nullable()
    text = _nullable()


class RecommendedPreviewResponse(EnvelopeSchema):
    customerId = _nullable()
    offerCode = _nullable()
    title = _nullable()
    text = _nullable()


class RecommendedCreateResponse(EnvelopeSchema):
    customerId = _nullable()
    offerCode = _nullable()
    orderId = _nullable()
    orderNumber = _nullable()
    text = _nullable()


class RecommendedCheckResponse(RecommendedCreateResponse):
    authorized = fields.Boolean(dump_default=False)
    verifiedUntil = _nullable()
