"""deploy/: every metric the alert rules and the Grafana dashboard name is one the app
exports, the paging signals are really produced, and promtool accepts the rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import fakeredis
import pytest
import yaml

from tests.helpers import TG, post

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gurugrow.json"
# Series Prometheus itself makes for every scrape target.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "le", "inf", "nan"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{panel['title']} ({target['refId']})": target["expr"]
            for panel in panels for target in panel["targets"]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside label matchers,
    grouping clauses, ranges and strings that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end():].lstrip()
        if following.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported_names(client) -> set[str]:
    """Every sample name /metrics can show: gauges and counters by their TYPE line,
    histograms with their _bucket/_count/_sum series."""
    text = client.get("/metrics").get_data(as_text=True)
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def test_the_name_parser_finds_names_and_nothing_else():
    expr = ('histogram_quantile(0.95, sum by (le, gateway) (rate(a_b_bucket{x="y", '
            'z=~"5.."}[5m]))) / max(c_total > 0) or on(i) up{job=~".*g.*"} == 0')
    assert metric_names(expr) == {"a_b_bucket", "c_total", "up"}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_named_metric_is_exported(client, source):
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert len(expressions) >= 10
    exported = exported_names(client) | PROMETHEUS_SERIES
    missing = {where: sorted(metric_names(expr) - exported)
               for where, expr in expressions.items() if metric_names(expr) - exported}
    assert missing == {}, f"{source} name metrics /metrics does not export"
    named = set().union(*(metric_names(e) for e in expressions.values()))
    assert len(named - PROMETHEUS_SERIES) >= 5


def test_the_rules_cover_what_operators_are_paged_on():
    rules = rule_expressions()
    text = " ".join(rules.values())
    for signal in ("gurugrow_crm_breaker_open", "gurugrow_crm_busy_total",
                   'outcome="failed"', "gurugrow_send_budget_used",
                   'error_code="storage_unavailable"', 'http_status=~"5.."'):
        assert signal in text, signal


def scrape(client) -> str:
    return client.get("/metrics").get_data(as_text=True)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of ``name`` with ``labels`` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("env_overrides", [{"OTP_DAILY_SEND_BUDGET": "3",
                                            "OTP_RESEND_COOLDOWN_SECONDS": "0"}])
def test_the_send_budget_is_scraped_from_redis(client, upstreams, env_overrides):
    upstreams.add_customer(626518, "+79991234567")
    before = scrape(client)
    assert sample(before, "gurugrow_send_budget") == 3
    assert sample(before, "gurugrow_send_budget_used") == 0
    for n in range(2):
        answer = post(client, "/auth/start", {**TG, "messengerUserId": f"budget-{n}",
                                              "phone": "+79991234567"})
        assert answer["status"] == "sent"
    assert sample(scrape(client), "gurugrow_send_budget_used") == 2


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis_client(redis_server):
    """The app's Redis, on a server a test can take down (``connected = False``)."""
    return fakeredis.FakeRedis(server=redis_server)


def test_error_answers_are_counted_by_error_code(client, redis_server, upstreams):
    upstreams.add_customer(626518, "+79991234567")
    labels = {"endpoint": "/auth/start", "error_code": "storage_unavailable"}
    before = sample(scrape(client), "gurugrow_error_answers_total", **labels)
    redis_server.connected = False  # every Redis call now fails
    answer = post(client, "/auth/start", {**TG, "phone": "+79991234567"}, "json")
    assert answer["errorCode"] == "storage_unavailable"
    # Redis is down for the scrape too: the budget gauge is left as it was, no 500.
    during = client.get("/metrics")
    assert during.status_code == 200
    redis_server.connected = True
    bad = post(client, "/auth/start", {**TG, "phone": "not a phone"})
    after = scrape(client)
    assert sample(during.get_data(as_text=True), "gurugrow_error_answers_total",
                  **labels) == before + 1
    assert sample(after, "gurugrow_error_answers_total", endpoint="/auth/start",
                  error_code=bad["errorCode"]) >= 1


def test_promtool_accepts_the_rules():
    from tests.integration.conftest import require_binary

    promtool = require_binary("promtool", "GURUGROW_REQUIRE_PROMTOOL")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in result.stdout
    # Each alert fires on the series it is meant for and stays quiet when all is well.
    tested = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    exercised = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert exercised == set(rule_expressions()), "every alert has a promtool test"
