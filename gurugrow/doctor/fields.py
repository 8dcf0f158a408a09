"""``create-fields``: creates the customer custom fields the service writes and are missing."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from gurugrow.basics.errors import UpstreamError, UpstreamRejected
from gurugrow.doctor.checks import (
    API_KEYS_SETTING,
    CUSTOM_FIELDS_SETTING,
    Check,
    FieldSpec,
    failed,
    field_specs,
    list_fields_or_refusal,
    passed,
    warned,
)
from gurugrow.doctor.redaction import Redactor
from gurugrow.logs import begin_request
from gurugrow.services import Services


def create_missing_fields(svc: Services, confirm: Callable[[list[FieldSpec]], bool]
                          ) -> Iterator[Check]:
    """One line per configured field: already there, created, or failed. ``confirm``
    is asked once, with the fields about to be created, before anything is created."""
    redact = Redactor(svc.settings)
    begin_request(f"create-fields-{uuid.uuid4().hex[:12]}")
    for check in _create_missing(svc, confirm):
        yield dataclasses.replace(check, detail=redact(check.detail), fix=redact(check.fix))


def _create_missing(svc: Services, confirm: Callable[[list[FieldSpec]], bool]
                    ) -> Iterator[Check]:
    existing, failure, refused = list_fields_or_refusal(svc)
    if existing is None:
        # A key that may write fields need not read them (custom_fields_write without
        # _read, or the listing not open to it): create each, and a refusal saying it
        # exists counts as there. Without an answer (network, 5xx), nothing is tried.
        if failure is None or not refused:
            yield failure  # type: ignore[misc]
            return
        yield warned(failure.name, failure.detail + "; creating each field, a field that "
                     "exists is refused as such", failure.fix)
        existing = {}
    specs = field_specs(svc.settings)
    for spec in specs:
        if spec.code in existing:
            yield passed(f"custom field {spec.code}", f"already exists ({spec.env})")
    missing = [spec for spec in specs if spec.code not in existing]
    if not missing:
        return
    if not confirm(missing):
        for spec in missing:
            yield failed(f"custom field {spec.code}", "missing, not created (not confirmed)",
                         "run again and answer y, or pass --yes")
        return
    for spec in missing:
        yield _create_one(svc, spec)


def _create_one(svc: Services, spec: FieldSpec) -> Check:
    name = f"custom field {spec.code}"
    try:
        svc.crm.create_custom_field("customer", spec.code, spec.name)
    except UpstreamRejected as e:
        by_hand = (f"create it in {CUSTOM_FIELDS_SETTING} (code {spec.code}, type String), "
                   f"or set {spec.env} to an existing field's code")
        if _already_exists(e):
            return passed(name, f"already exists ({spec.env}; RetailCRM: {e.message})")
        if e.status_code in (401, 403):
            return failed(name, f"RetailCRM refused to create it ({e.message})",
                          f"allow custom_fields_write for the key in {API_KEYS_SETTING}, "
                          f"or {by_hand}")
        return failed(name, f"RetailCRM refused to create it ({e.message}"
                      f"{_errors_text(e.errors)})", by_hand)
    except UpstreamError as e:
        return failed(name, f"no answer from RetailCRM ({e.message}); it may or may not "
                      "exist now", "run create-fields again: it lists first and creates "
                      "only what is missing")
    return passed(name, f'created "{spec.name}" (string, main_data; {spec.env})')


def _already_exists(error: UpstreamRejected) -> bool:
    """A create refused because the code is taken. RetailCRM's wording for it is not in
    the reference we have: any message or error entry saying "exist" counts."""
    said = f"{error.message} {_errors_text(error.errors)}".lower()
    return "exist" in said and error.status_code not in (401, 403, 404)


def _errors_text(errors: Any) -> str:
    if isinstance(errors, dict) and errors:
        return ": " + "; ".join(f"{k}: {v}" for k, v in errors.items())
    if isinstance(errors, list) and errors:
        return ": " + "; ".join(str(v) for v in errors)
    return ""
