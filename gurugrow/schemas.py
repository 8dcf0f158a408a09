"""Marshmallow schemas: request bodies/queries in, contract envelopes out.

Requests: every field is optional text (BotMarketing sends numbers as numbers or
strings, and empty strings for unset variables); a field that fails names the
``errorCode`` of the answer through its ``error_code`` metadata.
Responses: every contract field is always present, ``null`` when empty.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validates_schema

from gurugrow.config import CHANNELS
from gurugrow.identity import IDENTITY_FIELDS, normalize_channel, pick_account_id
from gurugrow.phone import normalize_phone

DELIVERY_ROUTES = ("telegram", "vk", "sms")


class Text(fields.Field):
    """A short text value: str or int accepted, trimmed; empty means absent."""

    def __init__(self, *, max_length: int = 128, error_code: str = "invalid_request",
                 **kwargs: Any) -> None:
        metadata = {"error_code": error_code, **kwargs.pop("metadata", {})}
        super().__init__(load_default=None, allow_none=True, metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError("Must be a string.")
        text = str(value).strip()
        if len(text) > self.max_length:
            raise ValidationError(f"Longer than {self.max_length} characters.")
        if any(ord(ch) < 32 for ch in text):
            raise ValidationError("Control characters are not allowed.")
        return text or None


class RequestSchema(Schema):
    """Base of request schemas: unknown fields ignored; ``required_fields`` enforced."""

    class Meta:
        unknown = EXCLUDE

    required_fields: tuple[str, ...] = ()

    @validates_schema
    def _require(self, data: dict[str, Any], **kwargs: Any) -> None:
        missing = {name: ["Required."] for name in self.required_fields if not data.get(name)}
        if missing:
            raise ValidationError(missing)


class IdentitySchema(RequestSchema):
    """channelType + one stable messenger id (the contract's identity fields)."""

    channelType = Text(error_code="invalid_channel", max_length=32)
    messengerUserId = Text(error_code="invalid_identity")
    customerExternalId = Text(error_code="invalid_identity")
    messengerAccountId = Text(error_code="invalid_identity")
    messengerAccountIdFallback = Text(error_code="invalid_identity")
    chatExternalId = Text()  # accepted, never used to bind
    required_fields = ("channelType",)

    @validates_schema
    def _identity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("channelType") and normalize_channel(data["channelType"]) is None:
            raise ValidationError(f"One of: {', '.join(CHANNELS)}.", "channelType")
        if pick_account_id(data) is None:
            raise ValidationError("One identity field is required.", IDENTITY_FIELDS[0])

    @post_load
    def _resolve(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["channel"] = normalize_channel(data.get("channelType"))
        data["accountId"] = pick_account_id(data)
        return data


class AuthStatusQuery(IdentitySchema):
    customerId = Text(error_code="customer_mismatch", max_length=32)


class AuthStartBody(IdentitySchema):
    phone = Text(error_code="invalid_phone", max_length=40)
    deliveryRoute = Text(error_code="invalid_route", max_length=16)
    required_fields = ("channelType", "phone")

    @validates_schema
    def _phone_and_route(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("phone") and normalize_phone(data["phone"]) is None:
            raise ValidationError("Not a valid phone number.", "phone")
        route = data.get("deliveryRoute")
        if route and route.lower() not in DELIVERY_ROUTES:
            raise ValidationError(f"One of: {', '.join(DELIVERY_ROUTES)}.", "deliveryRoute")

    @post_load
    def _normalize(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["phone"] = normalize_phone(data["phone"])
        data["deliveryRoute"] = (data.get("deliveryRoute") or "").lower() or None
        return data


class AuthCheckBody(IdentitySchema):
    sessionId = Text(error_code="session_not_found", max_length=64)
    code = Text(error_code="invalid_code", max_length=16)
    required_fields = ("channelType", "sessionId", "code")


class AuthResendBody(RequestSchema):
    sessionId = Text(error_code="session_not_found", max_length=64)
    channelType = Text(error_code="invalid_channel", max_length=32)
    deliveryRoute = Text(error_code="invalid_route", max_length=16)
    required_fields = ("sessionId",)

    @validates_schema
    def _route(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("channelType") and normalize_channel(data["channelType"]) is None:
            raise ValidationError(f"One of: {', '.join(CHANNELS)}.", "channelType")
        route = data.get("deliveryRoute")
        if route and route.lower() not in DELIVERY_ROUTES:
            raise ValidationError(f"One of: {', '.join(DELIVERY_ROUTES)}.", "deliveryRoute")

    @post_load
    def _normalize(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["channel"] = normalize_channel(data.get("channelType"))
        data["deliveryRoute"] = (data.get("deliveryRoute") or "").lower() or None
        return data


class AuthUnlinkBody(IdentitySchema):
    customerId = Text(error_code="customer_mismatch", max_length=32)


class OrdersQuery(IdentitySchema):
    customerId = Text(error_code="customer_mismatch", max_length=32)
    limit = Text(error_code="invalid_limit", max_length=4)

    @validates_schema
    def _limit(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("limit") and not data["limit"].lstrip("-").isdigit():
            raise ValidationError("Must be a whole number 1..5.", "limit")

    @post_load
    def _clamp(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Bots send whatever a variable holds: an out-of-range limit is clamped, not refused.
        data["limit"] = min(max(int(data["limit"]), 1), 5) if data.get("limit") else None
        return data


class RepeatOrderBody(IdentitySchema):
    customerId = Text(error_code="customer_mismatch", max_length=32)
    sourceOrderId = Text(error_code="order_not_found", max_length=32)
    sourceOrderNumber = Text(error_code="order_not_found", max_length=64)

    @validates_schema
    def _source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("sourceOrderId") and not data.get("sourceOrderNumber"):
            raise ValidationError("sourceOrderId or sourceOrderNumber is required.",
                                  "sourceOrderId")


class RecommendedPreviewBody(IdentitySchema):
    offerCode = Text(error_code="unknown_offer", max_length=64)
    customerId = Text(error_code="customer_mismatch", max_length=32)
    required_fields = ("channelType", "offerCode")


class RecommendedCreateBody(RecommendedPreviewBody):
    firstName = Text(max_length=100)
    lastName = Text(max_length=100)
    phone = Text(error_code="invalid_phone", max_length=40)
    email = Text(max_length=200)  # an invalid email is dropped by the flow, not refused

    @validates_schema
    def _phone(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("phone") and normalize_phone(data["phone"]) is None:
            raise ValidationError("Not a valid phone number.", "phone")

    @post_load
    def _normalize(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["phone"] = normalize_phone(data.get("phone"))
        return data


class RecommendedStartBody(RecommendedCreateBody):
    deliveryRoute = Text(error_code="invalid_route", max_length=16)
    required_fields = ("channelType", "offerCode", "phone")

    @validates_schema
    def _route(self, data: dict[str, Any], **kwargs: Any) -> None:
        route = data.get("deliveryRoute")
        if route and route.lower() not in DELIVERY_ROUTES:
            raise ValidationError(f"One of: {', '.join(DELIVERY_ROUTES)}.", "deliveryRoute")

    @post_load
    def _route_lower(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["deliveryRoute"] = (data.get("deliveryRoute") or "").lower() or None
        return data


class RecommendedCheckBody(AuthCheckBody):
    pass


# -- responses ------------------------------------------------------------------------
def _nullable(field_cls: type[fields.Field] = fields.String, **kwargs: Any) -> fields.Field:
    return field_cls(dump_default=None, allow_none=True, **kwargs)


# Additive to the contract: which route took the code (null on a refusal).
DELIVERY_ROUTE_ANSWER = ("The route that took the code: telegram | vk | sms (sms after a "
                         "fallback; null on a refusal).")


class EnvelopeSchema(Schema):
    """Fields every contract answer carries."""

    status = fields.String(required=True)
    errorCode = _nullable()
    message = _nullable()


class AuthStatusResponse(EnvelopeSchema):
    customerId = _nullable()
    maskedPhone = _nullable()


class AuthStartResponse(EnvelopeSchema):
    sessionId = _nullable()
    maskedPhone = _nullable()
    retryAfterSec = _nullable(fields.Integer)
    deliveryRoute = _nullable(metadata={"description": DELIVERY_ROUTE_ANSWER})


class AuthCheckResponse(EnvelopeSchema):
    authorized = fields.Boolean(dump_default=False)
    customerId = _nullable()
    verifiedUntil = _nullable()
    maskedPhone = _nullable()


class AuthResendResponse(EnvelopeSchema):
    retryAfterSec = _nullable(fields.Integer)
    maskedPhone = _nullable()
    deliveryRoute = _nullable(metadata={"description": DELIVERY_ROUTE_ANSWER})


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
