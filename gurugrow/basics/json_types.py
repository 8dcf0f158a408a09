"""The one place free-form JSON is named: what RetailCRM and GreenSMS answer.

Their answers are read defensively field by field (``.get`` with a fallback) where they
are used; these aliases say so in a signature. mypy's ``disallow_any_explicit`` holds for
gurugrow/flows and gurugrow/gateways because ``Any`` is written only here.
"""

from __future__ import annotations

from typing import Any, TypeAlias

# One JSON value of an upstream's answer (or of a payload sent to it), shape not checked.
JsonValue: TypeAlias = Any
# One JSON object of an upstream's answer: a customer, an order, a history entry...
JsonObject: TypeAlias = dict[str, Any]
