"""How a RetailCRM order is shown to a bot: fields, status group, tracking, texts.

Pure functions over the order payload: tracking and address are read only from fields
the payload actually has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from gurugrow import texts
from gurugrow.basics.json_types import JsonObject, JsonValue
from gurugrow.config import Settings

# Delivery code → tracking page; the contract's three codes (configurable in settings).
DEFAULT_TRACKING_URLS = {
    "5post": "https://fivepost.ru/tracking/?id={code}",
    "pr-rs": "https://www.pochta.ru/tracking?barcode={code}",
    "sdek-v-2-7b30522f5b0a597f679345a92b57c324": "https://www.cdek.ru/ru/tracking/?order_id={code}",
}
# Where delivery integrations keep the track number, most specific first.
TRACK_PATHS = (("data", "trackNumber"), ("trackNumber",), ("trackingNumber",),
                ("data", "trackingNumber"))


@dataclass(frozen=True)
class StatusRules:
    """Which status groups are hidden and which render as delivery/complete."""

    excluded_status_codes: frozenset[str]
    excluded_status_names: frozenset[str]
    excluded_group_codes: frozenset[str]
    complete_group_codes: frozenset[str]
    complete_group_names: frozenset[str]
    delivery_group_codes: frozenset[str]
    delivery_group_names: frozenset[str]

    @classmethod
    def from_settings(cls, s: Settings) -> StatusRules:
        """The rules the RETAILCRM_ORDER_* settings describe."""
        return cls(
            excluded_status_codes=frozenset(s.retailcrm_order_excluded_status_codes),
            excluded_status_names=frozenset(s.retailcrm_order_excluded_status_names),
            excluded_group_codes=frozenset(s.retailcrm_order_excluded_group_codes),
            complete_group_codes=frozenset(s.retailcrm_order_group_complete_codes),
            complete_group_names=frozenset(s.retailcrm_order_group_complete_names),
            delivery_group_codes=frozenset(s.retailcrm_order_group_delivery_codes),
            delivery_group_names=frozenset(s.retailcrm_order_group_delivery_names),
        )


def tracking_urls(settings: Settings) -> dict[str, str]:
    """Delivery code → tracking URL template: the contract's three plus
    ``ORDER_TRACKING_URLS`` entries ``code=https://...{code}`` (checked at start)."""
    urls = dict(DEFAULT_TRACKING_URLS)
    for entry in settings.order_tracking_urls:
        code, _, template = entry.partition("=")
        urls[code.strip()] = template.strip()
    return urls


def status_group(status_code: str, statuses: Mapping[str, JsonValue],
                 groups: Mapping[str, JsonValue], rules: StatusRules) -> str | None:
    """assembling | delivery | complete for a status code; None when it is hidden."""
    status = statuses.get(status_code) or {}
    group_code = status.get("group") or ""
    group_name = (groups.get(group_code) or {}).get("name", "")
    if (status_code in rules.excluded_status_codes
            or status.get("name", "") in rules.excluded_status_names
            or group_code in rules.excluded_group_codes):
        return None
    if group_code in rules.complete_group_codes or group_name in rules.complete_group_names:
        return "complete"
    if group_code in rules.delivery_group_codes or group_name in rules.delivery_group_names:
        return "delivery"
    return "assembling"


def _dig(data: JsonValue, path: tuple[str, ...]) -> JsonValue:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def tracking_code(order: Mapping[str, JsonValue]) -> str | None:
    delivery = order.get("delivery") or {}
    for path in TRACK_PATHS:
        value = _dig(delivery, path)
        if value:
            return str(value)
    return None


def delivery_code(order: Mapping[str, JsonValue]) -> str | None:
    delivery = order.get("delivery") or {}
    return delivery.get("code") or delivery.get("integrationCode") or None


def tracking_url(code: str | None, track: str | None, urls: Mapping[str, str]) -> str | None:
    if not code or not track or code not in urls:
        return None
    return urls[code].format(code=track)


def _quantity(value: JsonValue) -> str:
    number = float(value or 0)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def items_text(order: Mapping[str, JsonValue]) -> str:
    lines = []
    for item in order.get("items") or []:
        offer = item.get("offer") or {}
        name = (offer.get("displayName") or offer.get("name") or item.get("productName")
                or texts.ITEM_NAME_DEFAULT)
        lines.append(texts.ORDER_ITEM.format(name=name, quantity=_quantity(item.get("quantity"))))
    return "\n".join(lines)


def _created(order: Mapping[str, JsonValue], zone: tzinfo) -> tuple[str | None, str | None]:
    """``createdAt`` (local time of the account) as the true instant in UTC (``…Z``), and
    the local date for the texts."""
    raw = order.get("createdAt")
    if not raw:
        return None, None
    try:
        local = datetime.strptime(str(raw), "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
        instant = local.astimezone(UTC)  # year 1 or 9999 near a zone's edge overflows
    except (ValueError, OverflowError):
        return str(raw), None
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ"), local.strftime("%d.%m.%Y")


def present_order(order: Mapping[str, JsonValue], group: str, urls: Mapping[str, str],
                  zone: tzinfo = UTC) -> JsonObject:
    """Every field the contract lists for an order, texts included; dates read in the
    account's time ``zone``."""
    number = str(order.get("number") or order.get("id"))
    created_at, date = _created(order, zone)
    items = items_text(order)
    address = str(_dig(order, ("delivery", "address", "text")) or "")
    code = delivery_code(order)
    track = tracking_code(order)
    url = tracking_url(code, track, urls)
    label = texts.STATUS_LABELS[group]
    delivery_name = texts.DELIVERY_NAMES.get(code or "", texts.DELIVERY_NAME_DEFAULT)
    return {
        "sourceOrderId": str(order.get("id")),
        "sourceOrderNumber": number,
        "orderNumber": number,
        "createdAt": created_at,
        "createdAtText": date,
        "itemsText": items,
        "deliveryAddressText": address,
        "statusGroup": group,
        "statusLabel": label,
        "deliveryCode": code,
        "trackingCode": track,
        "trackingUrl": url,
        "canTrackOnline": url is not None,
        "detailText": texts.ORDER_DETAIL.format(
            number=number, date=date or "", status=label, items=items,
            delivery=texts.ORDER_DETAIL_DELIVERY.format(name=delivery_name, address=address)),
        "repeatConfirmText": texts.ORDER_REPEAT_CONFIRM.format(
            number=number, date=date or "", items=items, address=address),
        "trackingText": texts.ORDER_TRACKING.format(url=url) if url else None,
        "trackingNumber": track,
        "deliveryStatus": label,
    }


def orders_text(shown: list[JsonObject]) -> str:
    """The list message: header, then one block per order."""
    blocks = [texts.ORDERS_HEADER]
    for order in shown:
        block = texts.ORDER_LIST_ENTRY.format(
            number=order["orderNumber"], date=order["createdAtText"] or "",
            status_line=texts.STATUS_LINES[order["statusGroup"]], items=order["itemsText"])
        tail = []
        if order["deliveryAddressText"]:
            tail.append(texts.ORDER_LIST_ADDRESS.format(address=order["deliveryAddressText"]))
        if order["trackingUrl"]:
            tail.append(texts.ORDER_LIST_TRACKING.format(url=order["trackingUrl"]))
        blocks.append(block + ("\n\n" + "\n".join(tail) if tail else ""))
    return "\n\n".join(blocks)
