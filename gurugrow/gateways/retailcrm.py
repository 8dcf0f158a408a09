"""RetailCRM API v5: the customer, order, reference and catalog calls the flows use."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

import requests

from gurugrow.basics.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from gurugrow.basics.json_types import JsonObject, JsonValue
from gurugrow.basics.phone import normalize_phone
from gurugrow.gateways.breaker import OPEN, CircuitBreaker
from gurugrow.gateways.http import HttpClient
from gurugrow.governor import JOURNEY, CrmQuota, SlotRider

# The references the order view reads (statuses, status groups, the time zone) are loaded
# once for every request waiting on them (single-flight, then cached): their calls take
# journey slots, ahead of the reads in line, or a cold cache in a wave of reads would
# never fill (each loader out of time before its turn) and every /orders answer busy.
SHARED_LOAD = JOURNEY
GATEWAY = "retailcrm"
Params = list[tuple[str, str]]
# A safety stop for paginated listings (100 per page): far beyond any real account.
MAX_LIST_PAGES = 50
# The page sizes RetailCRM takes (``limit``).
PAGE_SIZES = (20, 50, 100)
_LISTINGS = {"customers": "/api/v5/customers", "orders": "/api/v5/orders"}
_HISTORY = {"customers": "/api/v5/customers/history", "orders": "/api/v5/orders/history"}


class Page(NamedTuple):
    """One page of a listing or of the history: its records and the total page count
    (None when the answer has no usable pagination)."""

    records: list[JsonObject]
    total_pages: int | None


@dataclass(frozen=True)
class CreatedOrder:
    """What ``orders/create`` answers: the new order's id and, when given, its number."""

    id: str
    number: str | None


@dataclass(frozen=True)
class Customer:
    """A RetailCRM customer as the flows read it: internal id, phone numbers as given,
    custom fields, store and externalId. Parsed in one place, ``Customer.parse``."""

    id: str
    phones: tuple[str, ...]
    custom_fields: JsonObject
    site: str | None = None
    external_id: str | None = None

    @classmethod
    def parse(cls, raw: JsonValue) -> Customer | None:
        """``raw`` read defensively (``[]`` custom fields are ``{}``, a phone that is not
        an object has no number); None for a value that is not an object with an ``id``."""
        if not isinstance(raw, dict) or "id" not in raw:
            return None
        phones = raw.get("phones")
        site, external_id = raw.get("site"), raw.get("externalId")
        return cls(id=str(raw["id"]),
                   phones=tuple(str(p.get("number") or "") for p in
                                (phones if isinstance(phones, list) else [])
                                if isinstance(p, dict)),
                   custom_fields=custom_fields(raw),
                   site=str(site) if site not in (None, "") else None,
                   external_id=str(external_id) if external_id not in (None, "") else None)


def customers_of(records: JsonValue) -> list[Customer]:
    """The customers of a listing's ``customers`` (records that are none are dropped)."""
    found = [Customer.parse(r) for r in (records if isinstance(records, list) else [])]
    return [c for c in found if c is not None]


@dataclass(frozen=True)
class Order:
    """A RetailCRM order the flows look up (by id, number or externalId): the fields they
    read, and ``raw``, the order as RetailCRM sent it, for what copies it on (a repeat's
    contact and delivery). Parsed in one place, ``Order.parse``."""

    id: str
    number: str | None
    site: str | None
    customer_id: str | None
    external_id: str | None
    items: tuple[JsonObject, ...]
    raw: JsonObject

    @classmethod
    def parse(cls, raw: JsonValue) -> Order | None:
        """``raw`` read defensively (an item that is not an object is dropped); None for
        a value that is not an object with an ``id``."""
        if not isinstance(raw, dict) or "id" not in raw:
            return None
        items = raw.get("items")
        number, site, external_id = raw.get("number"), raw.get("site"), raw.get("externalId")
        return cls(id=str(raw["id"]), number=str(number) if number is not None else None,
                   site=str(site) if site is not None else None,
                   customer_id=order_customer_id(raw),
                   external_id=str(external_id) if external_id is not None else None,
                   items=tuple(i for i in (items if isinstance(items, list) else [])
                               if isinstance(i, dict)),
                   raw=raw)


def orders_of(records: JsonValue) -> list[Order]:
    """The orders of a listing's ``orders`` (records that are none are dropped)."""
    found = [Order.parse(r) for r in (records if isinstance(records, list) else [])]
    return [o for o in found if o is not None]


def order_customer_id(order: JsonObject) -> str | None:
    """The internal id of an order's customer (``customer.id``), None when it has none."""
    customer = order.get("customer")
    value = customer.get("id") if isinstance(customer, dict) else None
    return str(value) if value not in (None, "") else None


def _history_id(value: JsonValue) -> bool:
    """True for a history record id: an integer, or ASCII digits (not a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isascii()
                                      and value.isdigit())


def internal_id(value: str) -> str | None:
    """``value`` as a RetailCRM internal id (ASCII digits), or None when it is not one."""
    text = str(value)
    return text if text.isascii() and text.isdigit() else None


def path_segment(value: str) -> str:
    """``value`` quoted as one path segment, so no value can change which resource is called."""
    text = str(value)
    # ``""``, ``.`` and ``..`` raise ValueError: quoted or not, the HTTP client resolves
    # those (RFC 3986 dot segments), which would call another resource.
    if text in ("", ".", ".."):
        raise ValueError(f"{text!r} cannot be a path segment")
    return quote(text, safe="")  # ``/``, ``?``, ``#``, ``%`` and the rest cannot step out


def custom_fields(entity: JsonObject) -> JsonObject:
    """An entity's custom fields; RetailCRM sends ``[]`` instead of ``{}`` when empty."""
    fields = entity.get("customFields")
    return fields if isinstance(fields, dict) else {}


def offer_ref(offer: JsonObject) -> JsonObject | None:
    """How an order item names ``offer``: its first of ``id``, ``externalId``, ``xmlId``."""
    for key in ("id", "externalId", "xmlId"):
        if offer.get(key):
            return {key: offer[key]}
    return None


def _newness(order: JsonObject) -> tuple[str, int]:
    """Sort key, newer is greater: ``createdAt`` (``Y-m-d H:i:s`` sorts as text), then id."""
    oid = str(order.get("id") or "")
    return str(order.get("createdAt") or ""), int(oid) if oid.isdigit() else 0


def newest_pages(total: int, count: int, sizes: tuple[int, ...] = PAGE_SIZES
                 ) -> list[tuple[int, int]]:
    """(page size, page number) pairs that hold the last ``count`` of ``total`` items
    listed oldest first, at the fewest pages (then the smallest size)."""
    start = max(total - count, 0)
    options = []
    for size in sizes:
        pages = list(range(start // size + 1, (total - 1) // size + 2))
        options.append((len(pages), size, pages))
    _, size, pages = min(options)
    return [(size, number) for number in pages]


class RetailCrmGateway:
    """RetailCRM v5 over one Session; the key travels only in the X-API-KEY header."""

    def __init__(self, base_url: str, api_key: str, site: str, *, timeout: float = 10,
                 connect_timeout: float = 3, max_retries: int = 2,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, quota: CrmQuota | None = None,
                 breaker: CircuitBreaker | None = None,
                 throttle_pause_seconds: float = 1.0) -> None:
        self.site = site
        self._http = HttpClient(GATEWAY, base_url, timeout=timeout,
                                connect_timeout=connect_timeout, session=session,
                                max_retries=max_retries, sleep=sleep, quota=quota,
                                breaker=breaker, throttle_pause_seconds=throttle_pause_seconds)
        self._headers = {"X-API-KEY": api_key}

    def unmetered(self) -> RetailCrmGateway:
        """The same gateway without the shared bucket (the doctor, when Redis is down)."""
        twin = copy.copy(self)
        twin._http = copy.copy(self._http)
        twin._http.quota = None
        return twin

    def slot_rider(self) -> SlotRider | None:
        """The slot of this request's next call, to ask for in another Redis step's round trip."""
        # A ``governor.SlotRider``, handed to that step as its ``rider``. None without a
        # bucket, outside a request, or while the breaker is open (the call would not go
        # out).
        http = self._http
        if http.quota is None or (http.breaker is not None and http.breaker.state == OPEN):
            return None
        return http.quota.rider()

    # -- transport --------------------------------------------------------------------
    # Paths are built only from constants and ``path_segment``; query strings only from
    # lists of pairs (``Params``), which the transport encodes: no value a request sent
    # can change the path or add a parameter. ``route`` is the template, for metrics.
    def _get(self, path: str, params: Params | None = None, route: str | None = None,
             priority: str | None = None) -> JsonObject:
        status, body = self._http.request("GET", path, params=params or [], retry=True,
                                          headers=self._headers, route=route,
                                          priority=priority)
        return self._envelope(status, body, route or path)

    def _post(self, path: str, form: dict[str, str], route: str | None = None, *,
              repeat_throttled: bool = False) -> JsonObject:
        # Never repeated after a timeout, a dropped connection or a 5xx: it may have been
        # applied. ``repeat_throttled``: once after a 503/429 (the quota refused it, as
        # RetailCRM's Go client assumes), through the bucket. Creates stay single: their
        # flows look a lost create up (order_once, externalId, number) before any repeat.
        status, body = self._http.request("POST", path, data=form, headers=self._headers,
                                          route=route, retry_throttled=repeat_throttled)
        return self._envelope(status, body, route or path)

    @staticmethod
    def _envelope(status: int, body: JsonValue, path: str) -> JsonObject:
        if not isinstance(body, dict):
            raise UpstreamUnavailable(GATEWAY, f"{path}: HTTP {status}, unexpected body",
                                      status)
        if status >= 500 or status == 429:
            raise UpstreamUnavailable(GATEWAY, f"{path}: HTTP {status}", status)
        message = str(body.get("errorMsg") or f"HTTP {status}")
        if status == 404:
            raise NotFound(GATEWAY, f"{path}: {message}", status, body.get("errors"))
        if status >= 400 or body.get("success") is not True:
            raise UpstreamRejected(GATEWAY, f"{path}: {message}", status, body.get("errors"))
        return body

    def _site_params(self) -> Params:
        return [("site", self.site)] if self.site else []

    # -- customers --------------------------------------------------------------------
    def find_customers_by_phone(self, phone: str) -> list[Customer]:
        """Customers with exactly this phone (digits, e.g. ``79991234567``).

        ``filter[name]`` also matches phones but loosely, so numbers are compared here.
        """
        body = self._get("/api/v5/customers", [("filter[name]", phone), ("limit", "100")])
        return [c for c in customers_of(body.get("customers"))
                if any(normalize_phone(number) == phone for number in c.phones)]

    def find_customers_by_custom_field(self, code: str, value: str) -> list[Customer]:
        """Customers whose custom field ``code`` equals ``value`` exactly (as text)."""
        body = self._get("/api/v5/customers",
                         [(f"filter[customFields][{code}]", value), ("limit", "20")])
        return [c for c in customers_of(body.get("customers"))
                if str(c.custom_fields.get(code, "")) == value]

    def edit_customer_custom_fields(self, customer_id: str, fields: dict[str, str]) -> None:
        """Set (``""`` clears) only the given custom fields of one customer."""
        if internal_id(customer_id) is None:
            raise NotFound(GATEWAY, "customer id is not a RetailCRM id")
        form = {"by": "id", "customer": json.dumps({"customFields": fields}, ensure_ascii=False)}
        if self.site:
            form["site"] = self.site
        self._post(f"/api/v5/customers/{path_segment(customer_id)}/edit", form,
                   route="/api/v5/customers/{id}/edit", repeat_throttled=True)

    def create_customer(self, customer: JsonObject, site: str | None = None) -> str:
        """Create a customer; return its internal id."""
        form = {"customer": json.dumps(customer, ensure_ascii=False)}
        if site or self.site:
            form["site"] = site or self.site
        return str(self._post("/api/v5/customers/create", form)["id"])

    def get_customer(self, customer_id: str) -> Customer | None:
        """The customer by internal id, or None (also for a value that is not an id)."""
        return Customer.parse(self._one_by_id("customer", "customers", customer_id))

    def get_customer_by_external_id(self, external_id: str, site: str | None = None
                                    ) -> Customer | None:
        """The customer by externalId in store ``site`` (default RETAILCRM_SITE), or None.
        An externalId is unique within one store (REF, customers/create): pass the one the
        customer was created in."""
        return Customer.parse(
            self._one_by_external_id("customer", "customers", external_id, site))

    def _one_by_id(self, entity: str, path: str, ref: str) -> JsonObject | None:
        """``GET /api/v5/<path>/<ref>?by=id``'s ``entity``, or None (also for a value
        that is not an id)."""
        if internal_id(ref) is None:
            return None
        try:
            return self._get(f"/api/v5/{path}/{path_segment(ref)}", [("by", "id")],
                             route=f"/api/v5/{path}/{{id}}").get(entity)
        except NotFound:
            return None

    def _one_by_external_id(self, entity: str, path: str, external_id: str,
                            site: str | None) -> JsonObject | None:
        """``GET /api/v5/<path>/<externalId>?by=externalId&site=``'s ``entity`` in store
        ``site`` (default RETAILCRM_SITE), or None (also for one no path can carry)."""
        if external_id in ("", ".", ".."):
            return None
        store = site or self.site
        try:
            return self._get(f"/api/v5/{path}/{path_segment(external_id)}",
                             [("by", "externalId"), *([("site", store)] if store else [])],
                             route=f"/api/v5/{path}/{{externalId}}").get(entity)
        except NotFound:
            return None

    # -- orders -----------------------------------------------------------------------
    def list_customer_orders(self, customer_id: str, limit: int) -> list[JsonObject]:
        """The customer's newest ``limit`` orders (20, 50 or 100), newest first, whatever
        RetailCRM's page order (it is stated nowhere): page 1, and when it is not the
        newest page (several pages, oldest first), the fewest pages holding the newest."""
        def page(size: int, number: int) -> JsonObject:
            params = [("filter[customerId]", customer_id), ("limit", str(size))]
            return self._get("/api/v5/orders",
                             params + ([("page", str(number))] if number > 1 else []))

        first = page(limit, 1)
        orders = [o for o in first.get("orders") or [] if isinstance(o, dict)]
        pagination = first.get("pagination") or {}
        total = pagination.get("totalCount")
        if (isinstance(total, int) and total > len(orders) and len(orders) >= 2
                and _newness(orders[0]) < _newness(orders[-1])):
            # Oldest first: the newest are the last ``limit`` of ``total``.
            for size, number in newest_pages(total, limit):
                orders += [o for o in page(size, number).get("orders") or []
                           if isinstance(o, dict)]
        unique = {str(o.get("id")): o for o in orders}
        return sorted(unique.values(), key=_newness, reverse=True)[:limit]

    def get_order(self, order_id: str) -> Order | None:
        """The order by internal id, or None (also for a value that is not an id)."""
        return Order.parse(self._one_by_id("order", "orders", order_id))

    def get_order_by_external_id(self, external_id: str, site: str | None = None
                                 ) -> Order | None:
        """The order by externalId in store ``site`` (default RETAILCRM_SITE), or None
        (also for one no path can carry). RetailCRM looks an externalId up only within
        the store named: pass the one the order was created in."""
        return Order.parse(self._one_by_external_id("order", "orders", external_id, site))

    def find_orders_by_external_ids(self, external_ids: list[str], site: str | None = None
                                    ) -> list[Order]:
        """Orders with one of these externalIds in store ``site`` (default RETAILCRM_SITE),
        in one request (``filter[externalIds][]``)."""
        store = site or self.site
        params = [*[("filter[externalIds][]", e) for e in external_ids], ("limit", "20"),
                  *([("filter[sites][]", store)] if store else [])]
        body = self._get("/api/v5/orders", params)
        return [o for o in orders_of(body.get("orders")) if str(o.external_id) in external_ids
                and (not store or o.site in (None, store))]

    def find_orders_by_number(self, number: str, customer_id: str | None = None,
                              site: str | None = None) -> list[Order]:
        """Orders with this exact number (optionally of one customer, of one store)."""
        params = [("filter[numbers][]", number), ("limit", "20")]
        if customer_id:
            params.append(("filter[customerId]", customer_id))
        if site:
            params.append(("filter[sites][]", site))
        body = self._get("/api/v5/orders", params)
        return [o for o in orders_of(body.get("orders")) if str(o.number) == number
                and (not site or o.site in (None, site))]

    def create_order(self, order: JsonObject, site: str | None = None) -> CreatedOrder:
        """Create an order (always pass ``customer.id``); its id and number."""
        form = {"order": json.dumps(order, ensure_ascii=False)}
        if site or self.site:
            form["site"] = site or self.site
        body = self._post("/api/v5/orders/create", form)
        order_answer = body.get("order")
        created = order_answer if isinstance(order_answer, dict) else {}
        # The id at the top (REF: ``id``) or in ``order``; the number only in ``order``.
        number = created.get("number")
        return CreatedOrder(id=str(body.get("id", created.get("id"))),
                            number=str(number) if number is not None else None)

    # -- the mirror: listings, re-reads by id, history ----------------------------------
    def list_page(self, entity: str, page: int, customer_id: str | None = None) -> Page:
        """One page of 100 ``customers`` or ``orders`` (the mirror's load; orders of one
        customer with ``customer_id``) and the total page count (None when the answer has
        no usable pagination)."""
        params: Params = [("limit", "100"), ("page", str(page))]
        if customer_id is not None:
            params.append(("filter[customerId]", customer_id))
        body = self._get(_LISTINGS[entity], params)
        total = (body.get("pagination") or {}).get("totalPageCount")
        items = [e for e in body.get(entity) or [] if isinstance(e, dict) and "id" in e]
        return Page(items, total if isinstance(total, int) else None)

    def by_ids(self, entity: str, ids: list[str]) -> list[JsonObject]:
        """The ``customers`` or ``orders`` with these internal ids (at most 100); an id
        RetailCRM no longer has is simply absent."""
        wanted = [i for i in ids if internal_id(i) is not None][:100]
        if not wanted:
            return []
        body = self._get(_LISTINGS[entity], [*(("filter[ids][]", i) for i in wanted),
                                             ("limit", "100")])
        return [e for e in body.get(entity) or [] if isinstance(e, dict)
                and str(e.get("id")) in wanted]

    def history(self, entity: str, since_id: int | None = None, page: int | None = None,
                start_date: str | None = None) -> Page:
        """One page of 100 records of ``/api/v5/{customers,orders}/history``, and its page count."""
        # After ``since_id``, or by ``page`` (the two together are refused; no caller pages
        # now), or from ``start_date`` (how the newest record before a load is found). The
        # total page count only when the answer has one.
        params: Params = [("limit", "100")]
        if since_id is not None:
            params.append(("filter[sinceId]", str(since_id)))
        elif page is not None:
            params.append(("page", str(page)))
        if start_date is not None:  # ``Y-m-d H:i:s``, the account's time (REF 630)
            params.append(("filter[startDate]", start_date))
        body = self._get(_HISTORY[entity], params)
        raw = body.get("history") or []
        # A record's ``id`` is taken as an integer or digits (its value shapes are
        # unsettled); records without one are dropped.
        records = [{**r, "id": int(r["id"])} for r in raw
                   if isinstance(r, dict) and _history_id(r.get("id"))]
        pagination = body.get("pagination") or {}
        total, count = pagination.get("totalPageCount"), pagination.get("totalCount")
        if page is None and isinstance(total, int) and isinstance(count, int) \
                and count > len(raw):
            total = max(total, 2)  # the pagination counts more than this page holds
        return Page(records, total if isinstance(total, int) else None)

    # -- reference and catalog --------------------------------------------------------
    def account_timezone(self) -> str:
        """The account's time zone (``GET /api/v5/settings`` → ``settings.timezone.value``,
        e.g. ``Europe/Moscow``): every RetailCRM date is local time there. ``""`` when
        the answer names none."""
        settings = self._get("/api/v5/settings", priority=SHARED_LOAD).get("settings")
        zone = (settings.get("timezone") if isinstance(settings, dict) else None) or {}
        value = zone.get("value") if isinstance(zone, dict) else None
        return value if isinstance(value, str) else ""

    def get_statuses(self) -> JsonObject:
        """Order statuses keyed by code (``{code: {name, group, ...}}``)."""
        statuses = self._get("/api/v5/reference/statuses", priority=SHARED_LOAD).get(
            "statuses")
        return statuses if isinstance(statuses, dict) else {}

    def get_sites(self) -> JsonObject:
        """The account's stores (sites) keyed by code."""
        sites = self._get("/api/v5/reference/sites").get("sites")
        return sites if isinstance(sites, dict) else {}

    def get_status_groups(self) -> JsonObject:
        """Status groups keyed by code."""
        groups = self._get("/api/v5/reference/status-groups", priority=SHARED_LOAD).get(
            "statusGroups")
        return groups if isinstance(groups, dict) else {}

    def find_offers(self, ids: list[str], external_ids: list[str], xml_ids: list[str]
                    ) -> list[JsonObject]:
        """Catalog offers with any of the given ids; one request per kind of id given
        (filters of different kinds would be combined with AND)."""
        found: list[JsonObject] = []
        for kind, values in (("ids", ids), ("externalIds", external_ids), ("xmlIds", xml_ids)):
            if values:
                params = [(f"filter[{kind}][]", v) for v in values] + [("limit", "100")]
                found += self._get("/api/v5/store/offers", params).get("offers") or []
        return found

    def find_products_by_name(self, name: str) -> list[JsonObject]:
        """Products whose name/article/offer article loosely match ``name``."""
        body = self._get("/api/v5/store/products", [("filter[name]", name), ("limit", "100")])
        return body.get("products") or []

    def get_credentials(self) -> JsonObject:
        """The key's scopes and site access (``/api/credentials``)."""
        return self._get("/api/credentials")

    # -- custom fields (setup: ``flask gurugrow doctor`` / ``create-fields``) ----------
    def list_custom_fields(self, entity: str) -> list[JsonObject]:
        """Every custom field of ``entity`` (``customer``, ``order``…), all pages."""
        # ``{code, name, type, entity, …}`` each.
        found: list[JsonObject] = []
        for page in range(1, MAX_LIST_PAGES + 1):
            body = self._get("/api/v5/custom-fields", [("filter[entity]", entity),
                                                       ("limit", "100"), ("page", str(page))])
            # Fields of another entity are dropped in case the filter is not honoured.
            chunk = [f for f in body.get("customFields") or []
                     if isinstance(f, dict) and f.get("entity", entity) == entity]
            found += chunk
            total = (body.get("pagination") or {}).get("totalPageCount")
            if not chunk or not isinstance(total, int) or page >= total:
                break
        return found

    def create_custom_field(self, entity: str, code: str, name: str,
                            display_area: str = "main_data") -> None:
        """Create a ``string`` custom field (never repeated: the caller lists again first)."""
        field = {"name": name, "code": code, "type": "string", "displayArea": display_area}
        self._post(f"/api/v5/custom-fields/{path_segment(entity)}/create",
                   {"customField": json.dumps(field, ensure_ascii=False)},
                   route="/api/v5/custom-fields/{entity}/create")
