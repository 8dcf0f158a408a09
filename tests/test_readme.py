"""The README and docs/ checked against the code: every setting, errorCode and status the
service has is in docs/REFERENCE.md, with the default the code uses, and nothing stale;
the README keeps the newcomer's path in its first 150 lines, its "Required" list is what
a live start refuses; every page's tables render, its links resolve, and it shows no
internal issue numbers and no bare `flask` command."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from gurugrow.api.errors import _CODES as HTTP_ERROR_CODES
from gurugrow.api.openapi import examples
from gurugrow.config import Settings
from tests.test_openapi import contract_operations

ROOT = Path(__file__).resolve().parents[1]
NGINX_SITE = ROOT / "deploy" / "nginx" / "gurugrow.conf"
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "REFERENCE.md").read_text()
WHERE_SETTINGS = "docs/REFERENCE.md, '## Settings' table"
WHERE_CODES = "docs/REFERENCE.md, '## errorCodes' tables"
# Every page a reader is sent to: the markdown checks run over each.
PAGES = sorted([ROOT / "README.md", ROOT / "deploy" / "README.md",
                *(ROOT / "docs").glob("*.md")])
NEWCOMER_LINES = 150


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
              "Operations and reference"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(w)) for w in wanted]
    assert positions == sorted(positions), headings
    assert README.index("GET /auth/status ──") < README.index("## Two commands"), "journey"


def test_the_newcomers_path_is_in_the_first_150_lines():
    """What it is, the two commands, the quickstart and BotMarketing: all of it before
    line 150; operations and reference are pages of docs/, linked from the README."""
    lines = README.splitlines()
    after_botmarketing = next(i for i, line in enumerate(lines)
                              if line.startswith("## ") and i > lines.index(
                                  "## Connecting BotMarketing"))
    assert after_botmarketing <= NEWCOMER_LINES, (
        f"README.md: the newcomer's path ends at line {after_botmarketing}, past "
        f"{NEWCOMER_LINES}; move detail to docs/")
    for page in ("docs/GOING-LIVE.md", "docs/OPERATIONS.md", "docs/REFERENCE.md"):
        assert f"]({page}" in README, page


def test_required_in_the_readme_is_what_a_live_start_refuses():
    """Each bullet of the README's "Required" list names first the variable a live start
    names when it refuses; the list holds every one of them and nothing else."""
    going_live = section(README, "## Going live")
    required = going_live[going_live.index("**Required**"):going_live.index("**Optional**")]
    listed = [re.match(r"`([A-Z_]+)`", bullet).group(1)
              for bullet in re.findall(r"^ *- (.+)$", required, re.M)]
    # Everything empty; then a deduper URL without its key (the one conditional need).
    refused = [p.env for p in Settings.load_lenient({})[1]]
    refused += [p.env for p in Settings.load_lenient({"DEDUPE_BASE_URL": "https://d.test"})[1]
                if p.env not in refused]
    assert sorted(listed) == sorted(refused), (listed, refused)
    # A required variable of Settings says "required" in the reference too.
    for field in fields(Settings):
        if field.metadata["required"]:
            assert field.metadata["env"] in listed


def test_every_setting_has_a_row_with_its_default():
    rows = {cells[0].strip("`"): cells for cells in
            table_rows(section(REFERENCE, "## Settings"))}
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
                  table_rows(section(REFERENCE, "## errorCodes"))}
    http_rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", REFERENCE, re.M)
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
    table = section(REFERENCE, "## Endpoints and statuses")
    rows = {cells[0].strip("`"): cells for cells in table_rows(table)}
    for method, path, contract in contract_operations(app):
        key = f"{method} {path}"
        assert key in rows, f"{key} has no row in docs/REFERENCE.md '## Endpoints and statuses'"
        statuses = set(re.findall(r"`([a-z_]+)`", rows[key][2]))
        assert statuses == set(contract.statuses), key


def test_worked_example_is_a_replayed_example():
    """The reference's worked answer is the /docs example the suite replays."""
    worked = section(REFERENCE, '## Worked example: "send a code" and "check the code"')
    answer = json.loads(re.search(r"```json\n(.*?)```", worked, re.S).group(1))
    assert answer == examples()["POST /auth/start"][0]["answer"]


# -- markdown: what a reader sees ----------------------------------------------------------
def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def cells(row: str) -> list[str]:
    """A table row's cells (a ``\\|`` inside a cell is text, not a border)."""
    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


SEPARATOR = re.compile(r"^\|(?: *:?-+:? *\|)+$")


def table_problems(page: Path) -> list[str]:
    """Tables that would not render: a row run without a header and separator (a blank
    line splits a table: its second half renders as text), or rows of another width."""
    problems, run = [], []
    where = page.relative_to(ROOT)
    lines = prose_lines(page.read_text()) + [(0, "")]
    for number, line in lines:
        if line.startswith("|"):
            run.append((number, line))
            continue
        if run:
            first, header = run[0]
            if len(run) < 2 or not SEPARATOR.match(run[1][1]):
                problems.append(f"{where}:{first}: table rows without a header and "
                                "separator line (a blank line inside a table?)")
            else:
                width = len(cells(header))
                problems += [f"{where}:{n}: {len(cells(row))} cells, the header has {width}"
                             for n, row in run[2:] if len(cells(row)) != width]
        run = []
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tables_render(page):
    assert table_problems(page) == []


def test_the_table_check_finds_a_split_table(tmp_path):
    broken = ROOT / "docs" / "_split_table_probe.md"
    try:
        broken.write_text("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n| 5 |\n")
        assert len(table_problems(broken)) == 1
        broken.write_text("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n")
        assert len(table_problems(broken)) == 1
    finally:
        broken.unlink()


# An issue number (#15, issue 13), or a note to whoever merges branches.
INTERNAL = re.compile(r"(?<![\w&/])#\d+\b|\b[Ii]ssues? \d+|integrator|<!--(?! *quickstart:)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_issue_numbers_or_notes(page):
    found = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
             for n, line in enumerate(page.read_text().splitlines(), start=1)
             if INTERNAL.search(line)]
    assert found == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_cli_is_shown_as_the_venv_flask(page):
    """Plain `flask` runs the system's flask (an ImportError): `.venv/bin/flask` or a make
    target, wherever a page shows the CLI."""
    bare = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(page.read_text().splitlines(), start=1)
            if re.search(r"(?<![/\w])flask --app", line)]
    assert bare == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    broken = []
    for _, line in prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(target)
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: links to nothing: {broken}"
