"""What the mirror keeps of an order: exactly the fields the order view reads
(``flows/order_view.py``, ``flows/orders.py``), so a mirrored order converts exactly like
a live one at a fraction of the memory. A field the view starts reading must be added
here; ``tests/test_mirror_heal.py`` converts every order shape the stand-ins have both
ways and compares.
"""

from __future__ import annotations

from gurugrow.basics.json_types import JsonObject, JsonValue
from gurugrow.flows.order_view import TRACK_PATHS

# Top-level fields read as they are; ``customer`` only for its id (where it is filed).
_KEPT = ("id", "number", "createdAt", "status")
_OFFER_KEPT = ("displayName", "name")
_ITEM_KEPT = ("quantity", "productName")
_DELIVERY_KEPT = ("code", "integrationCode")


def _pick(data: JsonValue, names: tuple[str, ...]) -> JsonValue:
    """Only ``names`` of a mapping; anything else (a malformed value) as it came, so the
    view meets exactly what it would have met live."""
    if not isinstance(data, dict):
        return data
    return {k: data[k] for k in names if k in data}


def slim_order(order: JsonObject) -> JsonObject:
    """The fields of ``order`` the order view reads (see the module docstring)."""
    kept = _pick(order, _KEPT)
    customer = order.get("customer")
    if isinstance(customer, dict) and "id" in customer:
        kept["customer"] = {"id": customer["id"]}
    items = order.get("items")
    if isinstance(items, list):
        kept["items"] = [{**_pick(item, _ITEM_KEPT), **(
            {"offer": _pick(item["offer"], _OFFER_KEPT)} if "offer" in item else {})}
            if isinstance(item, dict) else item for item in items]
    elif "items" in order:
        kept["items"] = items
    delivery = order.get("delivery")
    if isinstance(delivery, dict):
        slim = _pick(delivery, _DELIVERY_KEPT)
        address = delivery.get("address")
        if isinstance(address, dict) and "text" in address:
            slim["address"] = {"text": address["text"]}
        elif "address" in delivery and not isinstance(address, dict):
            slim["address"] = address
        for path in TRACK_PATHS:
            _copy_path(delivery, slim, path)
        kept["delivery"] = slim
    elif "delivery" in order:
        kept["delivery"] = delivery
    return kept


def _copy_path(source: JsonObject, target: JsonObject, path: tuple[str, ...]) -> None:
    """Copy the value at ``path`` (and the non-mapping stops on the way) into ``target``."""
    for key in path[:-1]:
        value = source.get(key)
        if not isinstance(value, dict):
            if key in source:
                target.setdefault(key, value)
            return
        source, target = value, target.setdefault(key, {})
        if not isinstance(target, dict):
            return
    if path[-1] in source:
        target[path[-1]] = source[path[-1]]
