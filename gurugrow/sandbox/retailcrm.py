"""The RetailCRM v5 stand-in: customers, orders, references, offers, products and custom
fields, with RetailCRM's quirks — the ``success/errorMsg/errors`` envelope,
``customFields`` as ``[]`` when empty, JSON-string form fields, 503 past the rate limit,
unknown offers accepted as free-form lines, a new customer when an order names none."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from gurugrow.sandbox import SANDBOX_RETAILCRM_KEY
from gurugrow.sandbox.state import Answer, SandboxState, digits, phone_key, state

PAGE_SIZES = (20, 50, 100)


def _crm_error(status: int, message: str, errors: Any = None) -> Answer:
    body: dict[str, Any] = {"success": False, "errorMsg": message}
    if errors is not None:
        body["errors"] = errors
    return jsonify(body), status


def _ok(**payload: Any) -> Answer:
    return jsonify({"success": True, **payload}), 200


def _page(items: list[dict[str, Any]], key: str) -> Answer:
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or int(limit) not in PAGE_SIZES:
        return _crm_error(400, "Errors in the input parameters",
                          {"limit": "This value should be 20, 50 or 100."})
    size, page = int(limit), max(int(request.args.get("page", "1") or 1), 1)
    chunk = items[(page - 1) * size: page * size]
    total_pages = max((len(items) + size - 1) // size, 1)
    return _ok(pagination={"limit": size, "totalCount": len(items), "currentPage": page,
                           "totalPageCount": total_pages}, **{key: chunk})


def _form_json(name: str) -> dict[str, Any]:
    raw = request.form.get(name)
    if raw is None:
        raise ValueError(f"Parameter '{name}' is missing")
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"Parameter '{name}' must be an object")
    return value


def _fields(entity: dict[str, Any]) -> dict[str, Any]:
    fields = entity.get("customFields")
    return fields if isinstance(fields, dict) else {}


# -- RetailCRM ------------------------------------------------------------------------
crm = Blueprint("retailcrm", __name__, url_prefix="/retailcrm")


@crm.before_request
def _crm_gate() -> ResponseReturnValue | None:
    st = state()
    with st.lock:
        st.calls.append(f"{request.method} {request.path.removeprefix('/retailcrm')}")
    if request.headers.get("X-API-KEY") != SANDBOX_RETAILCRM_KEY:
        return _crm_error(403, 'Wrong "apiKey" value.')
    if st.over_rate_limit():
        return _crm_error(503, "Rate limit exceeded: 10 requests per second")
    return None


@crm.errorhandler(ValueError)
def _bad_json(error: ValueError) -> ResponseReturnValue:
    return _crm_error(400, f"Errors in the input parameters: {error}")


@crm.get("/api/credentials")
def credentials() -> ResponseReturnValue:
    st = state()
    if failed := st.failure("credentials"):
        return failed
    return _ok(scopes=list(st.scopes), siteAccess=st.site_access, sitesAvailable=st.sites)


@crm.get("/api/v5/customers")
def customers() -> ResponseReturnValue:
    if failed := state().failure("customers"):
        return failed
    found = list(state().customers.values())
    if needle := request.args.get("filter[name]", "").strip().lower():
        # Loose like the real one: a substring of a name, or of the phone digits.
        needle_digits = digits(needle)[-10:]
        found = [c for c in found if (
            len(needle_digits) >= 5
            and any(needle_digits in phone_key(p.get("number")) for p in c.get("phones", []))
        ) or needle in f"{c.get('firstName', '')} {c.get('lastName', '')}".lower()]
    for key, value in request.args.items():
        if match := re.fullmatch(r"filter\[customFields\]\[(.+)\]", key):
            found = [c for c in found if str(_fields(c).get(match[1], "")) == value]
    if ids := request.args.getlist("filter[ids][]"):
        found = [c for c in found if str(c["id"]) in ids]
    return _page(found, "customers")


@crm.get("/api/v5/customers/history")
def customers_history() -> ResponseReturnValue:
    return _history("customers")


@crm.get("/api/v5/orders/history")
def orders_history() -> ResponseReturnValue:
    return _history("orders")


def _history(kind: str) -> Answer:
    """History records after ``filter[sinceId]``, oldest first, or by ``page``. Assumed
    where no source settles it: ``sinceId`` is exclusive (records with a higher id), and
    it is refused together with ``page`` (as RetailCRM has done since 2023)."""
    st = state()
    if failed := st.failure(f"{kind}_history"):
        return failed
    since = request.args.get("filter[sinceId]")
    if since is not None and "page" in request.args:
        return _crm_error(400, "Errors in the input parameters",
                          {"page": "page cannot be used together with filter[sinceId]"})
    with st.lock:
        records = list(st.history[kind])
    if since is not None:
        if not since.isdigit():
            return _crm_error(400, "Errors in the input parameters",
                              {"filter[sinceId]": "This value is not valid."})
        records = [r for r in records if r["id"] > int(since)]
    if start := request.args.get("filter[startDate]"):
        # ``Y-m-d H:i:s`` in the account's zone, as the records' createdAt: compared as text.
        records = [r for r in records if str(r.get("createdAt", "")) >= start]
    answer, status = _page(records, "history")
    if status == 200:
        body = answer.get_json()
        if st.history_page_cap is not None:  # a short page; the pagination says more follow
            body["history"] = body["history"][:st.history_page_cap]
        body["generatedAt"] = state().local_now()
        return jsonify(body), 200
    return answer, status


@crm.get("/api/v5/customers/<ref>")
def customer(ref: str) -> ResponseReturnValue:
    found = _find_customer(ref)
    return _ok(customer=found) if found else _crm_error(404, "Not found")


def _find_customer(ref: str) -> dict[str, Any] | None:
    by = request.values.get("by", "externalId")
    site = request.values.get("site")
    for c in state().customers.values():
        if str(c.get("id" if by == "id" else "externalId")) == ref and (
                by == "id" or not site or c.get("site") in (None, site)):
            return c
    return None


@crm.post("/api/v5/customers/<ref>/edit")
def edit_customer(ref: str) -> ResponseReturnValue:
    st = state()
    if failed := st.failure("edit"):
        return failed
    changes = _form_json("customer")
    with st.lock:
        found = _find_customer(ref)
        if found is None:
            return _crm_error(404, "Not found")
        new_fields = changes.pop("customFields", None)
        found.update(changes)
        if isinstance(new_fields, dict):
            st.edits.append((str(found["id"]), new_fields))
            for code, value in new_fields.items():
                st.record_history("customers", found, f"custom_{code}",
                                  _fields(found).get(code), value if value != "" else None)
            merged = {**_fields(found), **new_fields}
            # An empty value removes the field; none left → [] as RetailCRM sends it.
            found["customFields"] = {k: v for k, v in merged.items() if v not in ("", None)} or []
    return _ok(id=found["id"])


@crm.post("/api/v5/customers/create")
def create_customer() -> ResponseReturnValue:
    st = state()
    if failed := st.failure("create_customer"):
        return failed
    data = _form_json("customer")
    site = request.form.get("site", "")
    with st.lock:
        # An externalId is unique for customers within one store (REF, customers/create).
        if data.get("externalId") and any(
                c.get("externalId") == data["externalId"] and c.get("site") in (None, site)
                for c in st.customers.values()):
            return _crm_error(400, "Customer is not loaded",
                              {"externalId": "Customer with this externalId already exists"})
        created = _add_customer(st, {**data, "site": site} if site else data)
    st.answer_late("create_customer")
    return _ok(id=created["id"])


def _add_customer(st: SandboxState, data: dict[str, Any]) -> dict[str, Any]:
    with st.lock:
        created = {**data, "id": st.new_id(), "customFields": data.get("customFields") or []}
        st.customers[str(created["id"])] = created
        st.record_history("customers", created, "id", None, created["id"], created=True)
    return created


@crm.get("/api/v5/orders")
def orders() -> ResponseReturnValue:
    if failed := state().failure("orders"):
        return failed
    st = state()
    external_ids = request.args.getlist("filter[externalIds][]")
    numbers = request.args.getlist("filter[numbers][]")
    ids = request.args.getlist("filter[ids][]")
    # By an index where one applies, as RetailCRM's database would; the filters below
    # then still all apply.
    if external_ids:
        found = st.orders_by("externalId", external_ids)
    elif numbers:
        found = st.orders_by("number", numbers)
    elif ids:
        found = [o for o in (st.orders.get(i) for i in dict.fromkeys(ids)) if o is not None]
    else:
        found = list(st.orders.values())
    if customer_id := request.args.get("filter[customerId]"):
        found = [o for o in found if str((o.get("customer") or {}).get("id")) == customer_id]
    if numbers:
        found = [o for o in found if o.get("number") in numbers]
    if ids:
        found = [o for o in found if str(o["id"]) in ids]
    if external_ids:
        found = [o for o in found if str(o.get("externalId")) in external_ids]
    if sites := request.args.getlist("filter[sites][]"):
        found = [o for o in found if o.get("site") in sites]
    # ASSUMED: the real default order is stated nowhere; oldest first (by id, as a
    # database would) keeps clients honest, and tests may flip it to newest first.
    found.sort(key=lambda o: (o.get("createdAt", ""), int(o["id"])),
               reverse=state().orders_newest_first)
    return _page(found, "orders")


@crm.get("/api/v5/orders/<ref>")
def order(ref: str) -> ResponseReturnValue:
    if failed := state().failure("order"):
        return failed
    by = request.args.get("by", "externalId")
    # An externalId is looked up only within the store named in ``site`` (REF, "Order
    # search by externalId/number will be performed within the store specified").
    # ASSUMED: without ``site``, within every store.
    site = request.args.get("site") if by != "id" else None
    if by == "id":
        candidates = [o] if (o := state().orders.get(ref)) is not None else []
    else:
        candidates = state().orders_by("externalId", [ref])
    for o in candidates:
        if not site or o.get("site") == site:
            return _ok(order=o)
    return _crm_error(404, "Not found")


@crm.post("/api/v5/orders/create")
def create_order() -> ResponseReturnValue:
    st = state()
    if failed := st.failure("create"):
        return failed
    data = _form_json("order")
    with st.lock:
        for key, label in (("number", "number"), ("externalId", "externalId")):
            if data.get(key) and st.orders_by(key, [data[key]]):
                return _crm_error(400, "Order is not loaded",
                                  {label: f"Order with this {label} already exists"})
        if not (data.get("customer") or {}).get("id"):
            # Quirk: an order without a customer silently creates one.
            data["customer"] = {"id": _add_customer(st, {
                "firstName": data.get("firstName", ""), "lastName": data.get("lastName", ""),
                "phones": [{"number": data["phone"]}] if data.get("phone") else []})["id"]}
        oid = st.new_id()
        site = request.form.get("site", "")
        st.created_orders.append({**json.loads(json.dumps(data)), "id": oid, "site": site})
        created = {**data, "id": oid, "number": data.get("number") or f"{oid}A", "site": site,
                   "items": [_resolve_item(item) for item in data.get("items") or []],
                   "createdAt": st.local_now()}
        st.orders[str(oid)] = created
        st.record_history("orders", created, "status", None, created.get("status"),
                          created=True)
        lose = st.lose_create_answer
    if lose:  # the order exists but the answer never arrives (504, or the status given)
        status = 504 if lose is True else int(lose)
        return current_app.response_class(f"<html>{status} Bad Gateway</html>", status,
                                          mimetype="text/html"), status
    return jsonify({"success": True, "id": oid, "order": created}), 201


def _resolve_item(item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("offer") or {}
    for offer in _all_offers():
        if any(ref.get(k) and str(ref[k]) == str(offer.get(k))
               for k in ("id", "externalId", "xmlId")):
            return {**item, "offer": offer}
    # Quirk: an unknown offer is no error, the line becomes a free-form item.
    return {"quantity": item.get("quantity", 1), "productName": item.get("productName")
            or "Товар", "offer": None, "initialPrice": item.get("initialPrice", 0)}


def _all_offers() -> list[dict[str, Any]]:
    return [offer for p in state().products for offer in p.get("offers") or []]


@crm.get("/api/v5/reference/statuses")
def statuses() -> ResponseReturnValue:
    return state().failure("statuses") or _ok(statuses=state().statuses)


@crm.get("/api/v5/settings")
def account_settings() -> ResponseReturnValue:
    """The account's settings; dates everywhere are local time in ``timezone``."""
    if failed := state().failure("settings"):
        return failed
    updated = "2024-01-01 00:00:00"
    return _ok(settings={
        "default_currency": {"value": "RUB", "updated_at": updated},
        "system_language": {"value": "RU", "updated_at": updated},
        "timezone": {"value": state().timezone, "updated_at": updated}})


@crm.get("/api/v5/reference/sites")
def sites() -> ResponseReturnValue:
    """The account's stores keyed by code (PHP ReferencesTest: an object)."""
    if failed := state().failure("sites"):
        return failed
    return _ok(sites={code: {"code": code, "name": code, "defaultForCrm": i == 0}
                      for i, code in enumerate(state().account_sites)})


@crm.get("/api/v5/reference/status-groups")
def status_groups() -> ResponseReturnValue:
    return _ok(statusGroups=state().status_groups)


@crm.get("/api/v5/store/offers")
def offers() -> ResponseReturnValue:
    if failed := state().failure("offers"):
        return failed
    found = _all_offers()
    for kind, key in (("ids", "id"), ("externalIds", "externalId"), ("xmlIds", "xmlId")):
        if wanted := request.args.getlist(f"filter[{kind}][]"):
            found = [o for o in found if str(o.get(key)) in wanted]
    return _page(found, "offers")


@crm.get("/api/v5/store/products")
def products() -> ResponseReturnValue:
    if failed := state().failure("products"):
        return failed
    found = state().products
    if needle := request.args.get("filter[name]", "").strip().lower():
        # Fuzzy like the real one: a substring of name, article or an offer's article.
        found = [p for p in found if needle in p.get("name", "").lower()
                 or needle in p.get("article", "").lower()
                 or any(needle in (o.get("article") or "").lower() for o in p.get("offers", []))]
    if request.args.get("filter[active]") in ("0", "1"):
        want = request.args["filter[active]"] == "1"
        found = [p for p in found if bool(p.get("active")) == want]
    return _page(found, "products")


@crm.get("/api/v5/custom-fields")
def custom_fields() -> ResponseReturnValue:
    if failed := state().failure("custom_fields"):
        return failed
    entity = request.args.get("filter[entity]")
    found = [f for f in state().custom_fields if not entity or f["entity"] == entity]
    return _page(found, "customFields")


@crm.post("/api/v5/custom-fields/<entity>/create")
def create_custom_field(entity: str) -> ResponseReturnValue:
    if failed := state().failure("create_custom_field"):
        return failed
    field = _form_json("customField")
    if not field.get("code") or not field.get("name"):
        return _crm_error(400, "Errors in the entity format", {"code": "Required"})
    with state().lock:
        if any(f["code"] == field["code"] for f in state().custom_fields):
            return _crm_error(400, "Custom field with this code already exists")
        state().custom_fields.append({**field, "entity": entity})
    return _ok(code=field["code"])


@crm.route("/<path:rest>", methods=["GET", "POST"])
def crm_unknown(rest: str) -> ResponseReturnValue:
    return _crm_error(404, "API method not found")

