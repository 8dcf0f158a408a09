"""README.md's Reference is checked against the code: every setting, errorCode and status
the service has is documented, with the default the code uses, and nothing stale."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

from gurugrow.api.errors import _CODES as HTTP_ERROR_CODES
from gurugrow.api.openapi import examples
from gurugrow.config import Settings
from tests.test_openapi import contract_operations

ROOT = Path(__file__).resolve().parents[1]
NGINX_SITE = ROOT / "deploy" / "nginx" / "gurugrow.conf"
README = (ROOT / "README.md").read_text()
WHERE_SETTINGS = "README.md, '## Reference' › '### Settings' table"
WHERE_CODES = "README.md, '## Reference' › '### errorCodes' tables"


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", maxsplit=1)[0]
    start = text.index(heading + "\n") + len(heading) + 1
    stop = re.search(rf"^#{{1,{len(level)}}} ", text[start:], re.M)
    return text[start:start + stop.start()] if stop else text[start:]


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| `")]


def documented_default(field) -> str:
    """A setting's default as the table writes it."""
    value = field.default
    if field.metadata["required"]:
        return "required"
    if value in ("", ()):
        return "(empty)"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def gunicorn_settings() -> set[str]:
    """Variables gunicorn.conf.py reads itself (not through Settings)."""
    return set(re.findall(r'_int\("([A-Z_]+)"', (ROOT / "gunicorn.conf.py").read_text()))


def test_readme_sections_are_in_the_readers_order():
    headings = re.findall(r"^## (.+)$", README, re.M)
    wanted = ["Two commands", "Quickstart", "Connecting BotMarketing", "Going live",
              "Operations", "Reference"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(w)) for w in wanted]
    assert positions == sorted(positions), headings
    assert README.index("GET /auth/status ──") < README.index("## Two commands"), "journey"


def test_every_setting_has_a_row_with_its_default():
    rows = {cells[0].strip("`"): cells for cells in
            table_rows(section(section(README, "## Reference"), "### Settings"))}
    problems = []
    for field in fields(Settings):
        name = field.metadata["env"]
        if name not in rows:
            problems.append(f"{name} is declared in gurugrow/config.py but has no row in "
                            f"{WHERE_SETTINGS}")
        elif rows[name][1] != documented_default(field):
            problems.append(f"{name}: {WHERE_SETTINGS} says default {rows[name][1]}, "
                            f"gurugrow/config.py has {documented_default(field)}")
    known = {f.metadata["env"] for f in fields(Settings)} | gunicorn_settings()
    problems += [f"{name} has a row in {WHERE_SETTINGS} but the service does not read it"
                 for name in rows if name not in known]
    assert problems == [], "\n".join(problems)
    assert gunicorn_settings() <= set(rows)


def answered_error_codes(app) -> dict[str, str]:
    """errorCode → where it comes from, for every code the service can answer."""
    codes = {code: "gurugrow/api/errors.py" for code in HTTP_ERROR_CODES.values()}
    codes["internal_error"] = "gurugrow/api/errors.py"
    for method, path, contract in contract_operations(app):
        for code in contract.error_codes:
            codes.setdefault(code, f"the contract of {method} {path} (gurugrow/api/)")
    # nginx's own error pages (413, 502, 504) answer the envelope too.
    for code in re.findall(r'"errorCode":"([a-z_]+)"', NGINX_SITE.read_text()):
        codes.setdefault(code, "deploy/nginx/gurugrow.conf")
    return codes


def test_every_error_code_is_documented(app):
    documented = {cells[0].strip("`") for cells in
                  table_rows(section(section(README, "## Reference"), "### errorCodes"))}
    http_rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", README, re.M)
    documented |= {code for _, code in http_rows}
    answered = answered_error_codes(app)
    missing = [f"errorCode {code} is answered by {where} but missing from {WHERE_CODES}"
               for code, where in answered.items() if code not in documented]
    assert missing == [], "\n".join(missing)
    stale = documented - set(answered)
    assert stale == set(), f"{WHERE_CODES} list codes the service never answers"
    for code in ("phone_country_not_allowed", "send_budget_exhausted", "not_found",
                 "method_not_allowed", "body_too_large"):
        assert code in documented


def test_every_endpoint_row_lists_its_statuses(app):
    table = section(section(README, "## Reference"), "### Endpoints and statuses")
    rows = {cells[0].strip("`"): cells for cells in table_rows(table)}
    for method, path, contract in contract_operations(app):
        key = f"{method} {path}"
        assert key in rows, f"{key} has no row in README.md '### Endpoints and statuses'"
        statuses = set(re.findall(r"`([a-z_]+)`", rows[key][2]))
        assert statuses == set(contract.statuses), key


def test_worked_example_is_a_replayed_example():
    """The README's worked answer is the /docs example the suite replays."""
    worked = section(README, '### Worked example: "send a code" and "check the code"')
    answer = json.loads(re.search(r"```json\n(.*?)```", worked, re.S).group(1))
    assert answer == examples()["POST /auth/start"][0]["answer"]
