"""Recommended sets: ``offerCode`` → bundle article, title, components, store and status.

The sets are data: a TOML file (``RECOMMENDED_SETS_FILE``; the demo's
``recommended_sets.toml`` beside this module when the setting is empty), read with the
standard library and checked at start (``load_sets`` raises ``SetsFileError``, one line
naming the file, the set and the line). The bot sends only ``offerCode``.
``bundle_article`` is the article of the bundle product in RetailCRM's catalog (the order
carries that real offer, so RetailCRM prices it); ``components`` only feed the preview
text; ``site``/``status`` (empty: the ``RECOMMENDED_ORDER_SITE``/``_STATUS`` settings)
are the store and status its orders get.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SETS_FILE = str(Path(__file__).with_name("recommended_sets.toml"))
_OFFER_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SET_KEYS = {"bundle", "title", "components", "site", "status"}


@dataclass(frozen=True)
class RecommendedSet:
    offer_code: str
    bundle_article: str
    title: str
    components: tuple[str, ...]
    site: str = ""  # empty: RECOMMENDED_ORDER_SITE
    status: str = ""  # empty: RECOMMENDED_ORDER_STATUS


class SetsFileError(ValueError):
    """A sets file a start refuses: the message is one line naming what to fix."""


def load_sets(path: str = "") -> dict[str, RecommendedSet]:
    """The sets of the TOML file at ``path`` (empty: the demo's), keyed by lower-cased
    offerCode. Raises ``SetsFileError`` naming the file, the set and its line."""
    path = path or DEFAULT_SETS_FILE
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SetsFileError(f"cannot read {path}: {type(e).__name__}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SetsFileError(f"{path} is not valid TOML: {e}") from e
    tables = data.get("sets")
    unknown = sorted(set(data) - {"sets"})
    if unknown:
        raise SetsFileError(f"{path}: unknown top-level key {unknown[0]} (line "
                            f"{_line_of(text, unknown[0])}); sets go in [sets.<offerCode>]")
    if not isinstance(tables, dict) or not tables:
        raise SetsFileError(f"{path} has no [sets.<offerCode>] table")
    sets: dict[str, RecommendedSet] = {}
    for code, table in tables.items():
        found = _one_set(path, text, code, table)
        if found.offer_code in sets:
            raise SetsFileError(f"{path}: set {code} (line {_line_of(text, code)}) repeats "
                                "another set's offerCode (they are matched ignoring case)")
        sets[found.offer_code] = found
    return sets


def _one_set(path: str, text: str, code: str, table: Any) -> RecommendedSet:
    where = f"{path}: set {code} (line {_line_of(text, code)})"
    if not _OFFER_CODE.fullmatch(code):
        raise SetsFileError(f"{where}: an offerCode is 1-64 letters, digits and _ . -")
    if not isinstance(table, dict):
        raise SetsFileError(f"{where} must be a table [sets.{code}]")
    unknown = sorted(set(table) - _SET_KEYS)
    if unknown:
        raise SetsFileError(f"{where}: unknown key {unknown[0]} (known: "
                            f"{', '.join(sorted(_SET_KEYS))})")
    for key in ("bundle", "title"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise SetsFileError(f"{where}: {key} must be a non-empty string")
    components = table.get("components")
    if (not isinstance(components, list) or not components
            or not all(isinstance(c, str) and c.strip() for c in components)):
        raise SetsFileError(f"{where}: components must be a list of non-empty strings")
    for key in ("site", "status"):
        if key in table and not isinstance(table[key], str):
            raise SetsFileError(f"{where}: {key} must be a string (a RetailCRM code)")
    return RecommendedSet(offer_code=code.lower(), bundle_article=table["bundle"].strip(),
                          title=table["title"].strip(),
                          components=tuple(c.strip() for c in components),
                          site=table.get("site", "").strip(),
                          status=table.get("status", "").strip())


def _line_of(text: str, name: str) -> int | str:
    """The line of ``[sets.<name>]`` (or of a key ``name``) in ``text``; "?" if unseen."""
    header = re.compile(r'^\s*\[\s*sets\s*\.\s*["\']?' + re.escape(name) + r'["\']?\s*\]')
    key = re.compile(r"^\s*" + re.escape(name) + r"\s*[=.\]]")
    for pattern in (header, key):
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.match(line):
                return number
    return "?"


# The demo sets (the shipped default file): the OpenAPI examples and the sandbox use them.
RECOMMENDED_SETS: dict[str, RecommendedSet] = load_sets(DEFAULT_SETS_FILE)


def find_set(offer_code: str | None, sets: dict[str, RecommendedSet] | None = None
             ) -> RecommendedSet | None:
    """The set of ``offer_code`` (case-insensitive) among ``sets`` (default: the demo's),
    or None."""
    table = RECOMMENDED_SETS if sets is None else sets
    return table.get((offer_code or "").strip().lower())
