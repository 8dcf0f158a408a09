"""The baseline: a bare Flask app that makes the same upstream calls per endpoint as
gurugrow's common case (same stand-ins, one requests.Session) and nothing else."""

from __future__ import annotations

import json
import os

import requests
from flask import Flask, jsonify, request

from gurugrow.sandbox import SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY

UPSTREAM = os.environ.get("BASELINE_UPSTREAM", "http://127.0.0.1:8001")
CRM = f"{UPSTREAM}/retailcrm/api/v5"
TIMEOUT = (3, 10)

app = Flask(__name__)
session = requests.Session()
session.headers["X-API-KEY"] = SANDBOX_RETAILCRM_KEY


def crm_get(path: str, params: list[tuple[str, str]]) -> dict:
    return session.get(CRM + path, params=params, timeout=TIMEOUT).json()


def bound_customer() -> dict:
    field = f"filter[customFields][bot_{request.values['channelType']}_account_id]"
    return crm_get("/customers", [(field, request.values["messengerUserId"])])["customers"][0]


@app.get("/health")
def health():
    return jsonify({"status": "ok"})


@app.get("/auth/status")
def status():
    return jsonify({"status": "authorized", "customerId": str(bound_customer()["id"])})


@app.get("/orders")
def orders():
    customer = bound_customer()
    found = crm_get("/orders", [("filter[customerId]", str(customer["id"])), ("limit", "20")])
    return jsonify({"status": "ok", "orders": [o["number"] for o in found["orders"]]})


@app.post("/auth/start")
def start():
    crm_get("/customers", [("filter[name]", request.values["phone"]), ("limit", "100")])
    session.post(f"{UPSTREAM}/greensms/telegram/send", timeout=TIMEOUT,
                 data={"to": request.values["phone"], "txt": "123456"},
                 headers={"Authorization": f"Bearer {SANDBOX_GREENSMS_TOKEN}"})
    return jsonify({"status": "sent"})


@app.post("/auth/check")
def check():
    customer = bound_customer()
    session.post(f"{CRM}/customers/{customer['id']}/edit", timeout=TIMEOUT,
                 data={"by": "id", "customer": json.dumps({"customFields": {"x": "1"}})})
    return jsonify({"status": "authorized"})


@app.post("/orders/repeat")
def repeat():
    customer = bound_customer()
    order = crm_get(f"/orders/{request.values['sourceOrderId']}", [("by", "id")])["order"]
    crm_get("/store/offers", [("filter[ids][]", str(i["offer"]["id"])) for i in order["items"]])
    created = session.post(f"{CRM}/orders/create", timeout=TIMEOUT, data={"order": json.dumps({
        "customer": {"id": customer["id"]},
        "items": [{"offer": {"id": i["offer"]["id"]}, "quantity": i["quantity"]}
                  for i in order["items"]]})}).json()
    return jsonify({"status": "created", "newOrderId": created["id"]})


@app.post("/orders/recommended/preview")
def preview():
    return jsonify({"status": "ok", "customerId": str(bound_customer()["id"])})
