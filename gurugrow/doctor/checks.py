"""The setup doctor's checks of a real configuration against Redis and every upstream.

Each check is one line, ``ok   <check>: <detail>`` or
``FAIL <check>: <what is wrong> — fix: <what to change>``; the fix names the env variable
or the RetailCRM setting to change. Every upstream call goes through the gateways (their
timeouts and typed errors). No line carries an API key, token, password or phone.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import redis
import requests

from gurugrow.basics.catalog import RecommendedSet
from gurugrow.basics.errors import NotFound, StorageUnavailable, UpstreamError, UpstreamRejected
from gurugrow.config import CHANNELS, GREENSMS_API, NO_ENV_FILE_FIX, ConfigProblem, Settings
from gurugrow.doctor.redaction import Redactor, safe_url
from gurugrow.logs import begin_request
from gurugrow.routes import ROUTES, workflow_setting
from gurugrow.services import Services
from gurugrow.stores import keys as redis_keys
from gurugrow.stores.client import REDIS_ERRORS

# RetailCRM scopes the flows need; a key without one of them fails some endpoint.
REQUIRED_SCOPES = ("customer_read", "customer_write", "order_read", "order_write",
                   "store_read", "reference_read")
# (README.md and docs/GOING-LIVE.md list these and SETUP_SCOPES; tests keep them in step.)
# Needed only by the setup commands: reported as notes, never as failures.
# (custom_fields_read for listing is unconfirmed: /api/v5/custom-fields is not in the
# reference we have; the stand-in and RetailCRM's scope list both name it.)
SETUP_SCOPES = {"custom_fields_read": "the doctor lists custom fields with it",
                "custom_fields_write": "needed only by create-fields"}
API_KEYS_SETTING = "RetailCRM → Settings → Integration → API access keys"
CUSTOM_FIELDS_SETTING = "RetailCRM → Settings → Custom fields → Customers"
# The service finds customers by ``filter[customFields][<messenger id field>]=<id>``;
# RetailCRM filters these types by range, not by exact value, so lookups would break.
RANGE_FILTERED_TYPES = frozenset({"integer", "numeric", "date", "datetime"})
TEXT_TYPES = frozenset({"string", "text"})
# Names the fields get when create-fields makes them (setting name suffix → name).
FIELD_NAMES = {
    "telegram_id": "Telegram account id (bot)",
    "vk_id": "VK account id (bot)",
    "whatsapp_id": "WhatsApp account id (bot)",
    "max_id": "MAX account id (bot)",
    "instagram_id": "Instagram account id (bot)",
    "last_verified_channel": "Last verified channel (bot)",
    "last_verified_at": "Last verified at (bot)",
    "last_verification_method": "Last verification method (bot)",
    "chatbot_interacted": "Chatbot interacted (bot)",
}
PROBE_TTL_SECONDS = 30
# Works without an activated venv, in a checkout (make install) and in deploy/README.md.
CREATE_FIELDS_COMMAND = ".venv/bin/flask --app wsgi gurugrow create-fields"


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``detail`` is what was seen (or what is wrong)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok for the exit status, but worth a look (printed "warn")

    def line(self) -> str:
        if self.ok and self.warning:
            return f"warn {self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")
        if self.ok:
            return f"ok   {self.name}: {self.detail}"
        return f"FAIL {self.name}: {self.detail} — fix: {self.fix}"


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def warned(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, True, detail, fix, warning=True)


def call_failed(name: str, method: str, path: str, error: UpstreamError, *, scope: str,
                what: str, also: str = "") -> Check:
    """A failing RetailCRM call, named (method, path, HTTP status), with the fix that
    matches its cause: 401/403 the key or its scope, 404 the method not available to this
    key or account (the URL already passed /api/credentials), no answer the network."""
    status = error.status_code
    call = f"{method} {path}" + (f" answered HTTP {status}" if status else "")
    if _network_failure(error) or (status is None and not isinstance(error, UpstreamRejected)):
        return failed(name, f"{what}: {method} {path} got no answer ({error.message})",
                      "check the network between this host and RetailCRM (firewall, DNS, a "
                      "proxy: HTTP_PROXY_FROM_ENV=1; RETAILCRM_TIMEOUT_SECONDS) and run the "
                      "doctor again")
    if status in (401, 403):
        fix = (f"allow {scope} for this key in {API_KEYS_SETTING} (or set RETAILCRM_API_KEY "
               f"to a key that has it)")
    elif status == 404:
        fix = (f"{method} {path} is not available to this key or account (the address is "
               f"right: /api/credentials answered): enable the method for the key in "
               f"{API_KEYS_SETTING}, or ask RetailCRM support whether the account's plan has "
               "it")
    elif status in (429, 503) or (status or 0) >= 500:
        fix = "RetailCRM is rate-limiting or failing: run the doctor again in a minute"
    else:
        fix = f"check that the key has {scope} in {API_KEYS_SETTING}"
    return failed(name, f"{what}: {call} ({error.message})", fix + also)


@dataclass(frozen=True)
class FieldSpec:
    """A customer custom field the settings name: its code, env variable(s), new name."""

    code: str
    env: str
    name: str
    messenger_id: bool  # customers are looked up by it (exact-match filter)


def field_specs(settings: Settings) -> list[FieldSpec]:
    """The ``RETAILCRM_CF_*`` fields in settings order, one per distinct code."""
    specs: dict[str, FieldSpec] = {}
    for f in fields(Settings):
        if not f.name.startswith("retailcrm_cf_"):
            continue
        code, suffix = getattr(settings, f.name), f.name.removeprefix("retailcrm_cf_")
        if code in specs:
            old = specs[code]
            specs[code] = FieldSpec(code, f"{old.env}, {f.metadata['env']}", old.name,
                                    old.messenger_id or suffix.endswith("_id"))
        else:
            specs[code] = FieldSpec(code, f.metadata["env"], FIELD_NAMES.get(suffix, code),
                                    suffix.endswith("_id"))
    return list(specs.values())


def _network_failure(error: UpstreamError) -> bool:
    return isinstance(error.__cause__, requests.RequestException)


# -- the checks ---------------------------------------------------------------------------
# The settings each check relies on (names or prefixes ending in "_"): a check whose
# setting has a problem is not run, and says which setting to fix first.
CHECK_SETTINGS = {
    "callers": ("API_TOKEN", "ALLOWED_CALLER_NETWORKS", "ALLOW_ANONYMOUS_CALLERS"),
    "redis": ("REDIS_",),
    "retailcrm key": ("RETAILCRM_BASE_URL", "RETAILCRM_API_KEY", "RETAILCRM_TIMEOUT_SECONDS",
                      "HTTP_"),
    "retailcrm site": ("RETAILCRM_SITE", "RECOMMENDED_ORDER_SITE", "REPEAT_ORDER_SITE"),
    "retailcrm references": ("RETAILCRM_SITE", "RECOMMENDED_ORDER_SITE", "REPEAT_ORDER_SITE",
                             "REPEAT_ORDER_STATUS", "RECOMMENDED_ORDER_STATUS",
                             "RETAILCRM_ORDER_"),
    "custom fields": ("RETAILCRM_CF_",),
    "recommended sets": ("RECOMMENDED_SETS_FILE",),
    "greensms": ("GREENSMS_",),
    "deduper": ("DEDUPE_", "RETAILCRM_SITE"),
}


def run_doctor(svc: Services, problems: list[ConfigProblem] | None = None, *,
               env_file_exists: bool = True) -> Iterator[Check]:
    """Every check, in order, as it completes (a slow upstream shows where it hangs).

    ``problems``: what a start would refuse (``Settings.load_lenient``); each is a line,
    and a check relying on one of those settings says so instead of running."""
    begin_request(f"doctor-{uuid.uuid4().hex[:12]}")  # traceable in the upstreams' logs
    redact = Redactor(svc.settings)
    for check in _checks(svc, list(problems or []), env_file_exists):
        yield dataclasses.replace(check, detail=redact(check.detail), fix=redact(check.fix))


def _blocked_by(problems: list[ConfigProblem], *checks: str) -> str | None:
    """The first setting with a problem that one of ``checks`` relies on."""
    for check in checks:
        for problem in problems:
            if problem.env.startswith(CHECK_SETTINGS[check]):
                return problem.env
    return None


def not_run(name: str, setting: str) -> Check:
    return failed(name, f"not checked: {setting} has a problem (a settings line above)",
                  f"fix {setting} first")


def _checks(svc: Services, problems: list[ConfigProblem], env_file_exists: bool
            ) -> Iterator[Check]:
    s = svc.settings
    if problems:
        for problem in problems:
            yield failed("settings", problem.text, f"set {problem.env} in .env "
                         "(.env.example describes each setting)")
        if not env_file_exists:  # settings only from the environment, and some missing
            yield failed("settings", "no .env in this directory", NO_ENV_FILE_FIX)
    else:
        yield check_settings(s)
    blocked = _blocked_by(problems, "callers")
    yield not_run("callers", blocked) if blocked else check_callers(s)
    blocked = _blocked_by(problems, "redis")
    redis_check = not_run("redis", blocked) if blocked else check_redis(svc)
    yield redis_check
    if not redis_check.ok:
        # The RetailCRM bucket lives in Redis: the doctor's few calls, run by hand, go
        # around it rather than leave the key unchecked.
        svc = dataclasses.replace(svc, crm=svc.crm.unmetered())
    yield from _crm_checks(svc, problems)
    blocked = _blocked_by(problems, "greensms")
    yield not_run("greensms", blocked) if blocked else check_greensms(svc)
    blocked = _blocked_by(problems, "deduper")
    yield not_run("deduper", blocked) if blocked else check_deduper(svc)
    yield check_routes(s)
    if svc.mirror is not None:  # shown only when on
        yield check_mirror(svc)


def _crm_checks(svc: Services, problems: list[ConfigProblem]) -> Iterator[Check]:
    blocked = _blocked_by(problems, "retailcrm key")
    if blocked:
        credentials, key_check = None, not_run("retailcrm key", blocked)
    else:
        credentials, key_check = check_retailcrm_key(svc)
    yield key_check
    if credentials is None:
        first = 'fix "retailcrm key" first'
        reason = "not checked: it needs the retailcrm key check to pass"
        yield failed("retailcrm scopes", reason, first)
        yield failed("retailcrm site", reason, first)
        yield failed("retailcrm references", reason, first)
        yield failed("custom fields", reason, first)
        yield failed("recommended sets", reason, first)
        return
    yield check_scopes(credentials)
    blocked = _blocked_by(problems, "retailcrm site")
    yield not_run("retailcrm site", blocked) if blocked else check_sites(
        svc.settings, credentials, configured_sites(svc.settings, svc.sets))
    blocked = _blocked_by(problems, "retailcrm references")
    yield not_run("retailcrm references", blocked) if blocked else check_references(svc)
    blocked = _blocked_by(problems, "custom fields")
    if blocked:
        yield not_run("custom fields", blocked)
    else:
        yield from check_custom_fields(svc)
    blocked = _blocked_by(problems, "recommended sets")
    yield not_run("recommended sets", blocked) if blocked else check_sets(svc)


def check_mirror(svc: Services) -> Check:
    """The RetailCRM mirror's state (CRM_MIRROR=1): loaded, current, what it holds."""
    s, store = svc.settings, svc.mirror
    if store is None:
        return passed("mirror", "off (CRM_MIRROR=0): reads go to RetailCRM and its caches")
    start = "start it: make mirror, or systemctl enable --now gurugrow-mirror"
    try:
        state = store.state()
    except StorageUnavailable:
        return failed("mirror", "its state cannot be read: Redis is unavailable",
                      'fix "redis" first')
    lag = store.lag_seconds(state)
    loading = mirror_load_progress(state)
    if lag is None:
        return failed("mirror", "on (CRM_MIRROR=1) but never loaded: status and order "
                      "reads go to RetailCRM" + (f"; {loading}" if loading else ""), start)
    evicting = _mirror_redis_evicts(svc)
    if evicting:
        return failed("mirror", f"its Redis evicts keys (maxmemory-policy {evicting}): an "
                      "evicted key sends reads live until the poller has re-read it",
                      "set maxmemory-policy noeviction (and enough maxmemory) on the "
                      "mirror's Redis")
    holds = (f"{state.get('customers', '?')} bound customers, {state.get('orders', '?')} "
             f"orders, history at customers {state.get('customers_since', '?')} / orders "
             f"{state.get('orders_since', '?')}" + (f"; {loading}" if loading else ""))
    if lag > s.mirror_max_lag_seconds:
        return failed("mirror", f"last sync {lag:.0f} s ago, past MIRROR_MAX_LAG_SECONDS="
                      f"{s.mirror_max_lag_seconds:g}: reads go to RetailCRM ({holds})",
                      f"check the mirror process ({start}); journalctl -u gurugrow-mirror")
    return passed("mirror", f"current: last sync {lag:.0f} s ago (at most "
                  f"{s.mirror_max_lag_seconds:g} s), {holds}")


def mirror_load_progress(state: dict[str, str]) -> str:
    """The mirror's load in progress, as a line (empty when none is running)."""
    entity = state.get("load_entity")
    if not entity or entity == "done":
        return ""
    left = float(state.get("load_left") or -1)
    return (f"loading {entity}: page {state.get('load_page', '?')} of "
            f"{state.get('load_pages') or '?'}, {state.get('load_calls', '?')} calls, "
            f"{float(state.get('load_elapsed') or 0):.0f} s elapsed"
            + (f", about {left:.0f} s left of {entity}" if left >= 0 else ""))


def _mirror_redis_evicts(svc: Services) -> str:
    """The mirror Redis's eviction policy when it evicts (every mirror key has a TTL, so a
    volatile-* policy evicts them too); empty when it does not or will not tell."""
    try:
        policy = svc.storage.config_get("maxmemory-policy")
    except Exception:  # noqa: BLE001 - a managed Redis may refuse CONFIG: not checked
        return ""
    value = policy.get("maxmemory-policy") if isinstance(policy, dict) else None
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) and value not in ("", "noeviction") else ""


def check_settings(s: Settings) -> Check:
    """Loading already validated every value; what is left are cross-field clashes."""
    shared = [spec for spec in field_specs(s) if ", " in spec.env]
    if shared:
        spec = shared[0]
        return failed("settings", f"{spec.env} all name the custom field {spec.code}, so "
                      "they would overwrite each other",
                      f"give each of {spec.env} its own field code")
    mode = "sandbox mode (upstreams are the built-in stand-ins)" if s.sandbox else "live mode"
    return passed("settings", f"loaded and valid, {mode}; RetailCRM "
                  f"{safe_url(s.retailcrm_base_url)}, site {s.retailcrm_site or '(none)'}; "
                  f"{crm_quota_summary(s)}")


def crm_quota_summary(s: Settings) -> str:
    """The configured RetailCRM quota, as the doctor prints it."""
    return (f"RetailCRM quota {s.retailcrm_rate_limit} calls/s shared by every worker "
            f"(RETAILCRM_RATE_LIMIT; the key allows 10), a call waits up to "
            f"{s.retailcrm_queue_seconds:g} s for a slot (RETAILCRM_QUEUE_SECONDS), inside a "
            f"request never past {s.bot_answer_seconds:g} s from its arrival "
            f"(BOT_ANSWER_SECONDS), at most {s.retailcrm_max_waiting} waiting per worker "
            "(RETAILCRM_MAX_WAITING); note: RetailCRM counts the quota per API key, so every "
            "other integration using this key takes from it too (give the service a key of "
            "its own)")


def check_callers(s: Settings) -> Check:
    """Who may call: an open live service is a failure even when started on purpose."""
    name = "callers"
    if not (s.api_tokens or s.allowed_caller_networks):
        if s.sandbox:
            return passed(name, "sandbox without API_TOKENS: anyone who reaches it may call")
        return failed(name, "ALLOW_ANONYMOUS_CALLERS=1 and neither API_TOKENS nor "
                      "ALLOWED_CALLER_NETWORKS is set: anyone who reaches the service may "
                      "read customers' orders and create orders",
                      "set API_TOKENS (and/or ALLOWED_CALLER_NETWORKS), then "
                      "ALLOW_ANONYMOUS_CALLERS=0")
    parts = []
    if s.api_tokens:
        forms = "Bearer or X-API-Token" + (" or ?token=" if s.api_token_in_query else "")
        parts.append(f"{len(s.api_tokens)} API token(s) ({forms})")
    if s.allowed_caller_networks:
        parts.append(f"networks {', '.join(s.allowed_caller_networks)}")
    return passed(name, "callers need " + " and ".join(parts) + "; " + _address_cap(s))


def _address_cap(s: Settings) -> str:
    """Which per-address send cap applies to the callers (said by the callers check)."""
    if s.allowed_caller_networks:
        return "no per-address cap inside ALLOWED_CALLER_NETWORKS"
    cap = s.otp_max_sends_per_ip_per_hour_token_callers
    if s.api_tokens:
        return (f"per-address cap for token callers: {cap} an hour "
                "(OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS)" if cap else
                "no per-address cap for token callers (the bot platform's addresses are "
                "shared by every customer; OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS sets one)")
    return f"per-address cap {s.otp_max_sends_per_ip_per_hour} an hour"


def _redis_where(s: Settings) -> tuple[str, str]:
    """Where Redis is (for a line) and the variables that say so (for a fix)."""
    if s.redis_sentinels:
        return (f"master {s.redis_sentinel_master} via sentinels "
                f"{', '.join(s.redis_sentinels)}",
                "REDIS_SENTINELS / REDIS_SENTINEL_MASTER / REDIS_URL")
    if s.redis_url == "memory://":
        return "the in-process store (memory://, sandbox only)", "REDIS_URL"
    cluster = " (cluster)" if s.redis_cluster else ""
    return f"{safe_url(s.redis_url)}{cluster}", "REDIS_URL"


def check_redis(svc: Services) -> Check:
    """PING, then SET with a TTL and DEL of a probe key under ``REDIS_PREFIX``."""
    s = svc.settings
    where, env = _redis_where(s)
    key = redis_keys.doctor_probe(s.redis_prefix)
    try:
        if not svc.storage.write_probe(key, secrets.token_hex(8), PROBE_TTL_SECONDS):
            return failed("redis", f"{where} did not store the probe key {key}",
                          f"check that Redis at {env} accepts writes")
    except redis.AuthenticationError:
        return failed("redis", f"{where} refused the credentials",
                      f"put the right user/password in {env} "
                      "(redis://user:password@host:6379/0)")
    except redis.ReadOnlyError:
        return failed("redis", f"{where} is a read-only replica",
                      f"point {env} at the primary")
    except (redis.ConnectionError, redis.TimeoutError) as e:
        hint = " (sandbox: use the Redis `make run` announced, or memory://)" if s.sandbox else ""
        return failed("redis", f"cannot reach {where} ({type(e).__name__})",
                      f"start Redis there or set {env} to a reachable Redis; the wait is "
                      f"REDIS_TIMEOUT_SECONDS={s.redis_timeout_seconds:g}{hint}")
    except REDIS_ERRORS as e:  # NOPERM (ACL), cluster trouble and other refusals
        return failed("redis", f"{where} refused a command: {type(e).__name__} {e}",
                      f"let the Redis user of {env} run PING/SET/DEL/EVALSHA on "
                      f"{s.redis_prefix}* keys")
    persistence = redis_persistence_problem(svc.storage)
    if persistence is not None and persistence[0]:
        return failed("redis", f"{where}: {persistence[0]}", persistence[1])
    said = persistence[1] if persistence is not None else (
        "appendonly yes, maxmemory-policy noeviction")
    return passed("redis", f"{where}: PING, SET with TTL and DEL of {key} worked; {said}")


# What docs/OPERATIONS.md ("Redis") asks of the Redis: a restart must not lose the
# run-once markers, sessions and counters, and a full Redis must refuse writes rather
# than evict them.
REDIS_FIX = ("set `appendonly yes` and `maxmemory-policy noeviction` (redis.conf or "
             "CONFIG SET ...; CONFIG REWRITE), see docs/OPERATIONS.md, Redis")


def redis_persistence_problem(client: Any) -> tuple[str, str] | None:
    """None when Redis persists (appendonly yes) and never evicts (noeviction); else
    ``(what is wrong, fix)``, or ``("", why it could not check)`` when CONFIG GET is
    refused (a managed Redis often hides it)."""
    try:
        appendonly = _config_value(client, "appendonly")
        policy = _config_value(client, "maxmemory-policy")
    except REDIS_ERRORS as e:
        return "", (f"persistence and eviction not checked: CONFIG GET refused "
                    f"({type(e).__name__}); make sure the provider keeps appendonly yes "
                    f"and maxmemory-policy noeviction (docs/OPERATIONS.md, Redis)")
    wrong = []
    if appendonly != "yes":
        wrong.append(f"appendonly is {appendonly or 'unset'} (a restart loses every key)")
    if policy != "noeviction":
        wrong.append(f"maxmemory-policy is {policy or 'unset'} (a full Redis evicts keys)")
    return ("; ".join(wrong), REDIS_FIX) if wrong else None


def _config_value(client: Any, name: str) -> str:
    answer = client.config_get(name)
    if isinstance(answer, dict) and answer and all(isinstance(v, dict) for v in answer.values()):
        answer = next(iter(answer.values()))  # a cluster: one answer per node
    value = (answer or {}).get(name, "")
    return (value.decode() if isinstance(value, bytes) else str(value)).strip().lower()


def _crm_unreachable_fix(s: Settings) -> str:
    fix = "set RETAILCRM_BASE_URL to https://<account>.retailcrm.ru (no /api path)"
    if s.sandbox:
        fix += "; sandbox: start it first (`make run`) with the same APP_PORT"
    return fix


def check_retailcrm_key(svc: Services) -> tuple[dict[str, Any] | None, Check]:
    """``GET /api/credentials``: the key works; its answer feeds the next checks."""
    s, name = svc.settings, "retailcrm key"
    base = safe_url(s.retailcrm_base_url)
    try:
        credentials = svc.crm.get_credentials()
    except NotFound as e:
        return None, failed(name, f"{base} has no /api/credentials (GET /api/credentials "
                            f"answered HTTP 404: {e.message})", _crm_unreachable_fix(s))
    except UpstreamRejected as e:
        if "account does not exist" in e.message.lower():
            return None, failed(name, f"{base} answers that no such RetailCRM account "
                                f"exists ({e.message})", _crm_unreachable_fix(s))
        if e.status_code in (401, 403):
            return None, failed(
                name, f"{base} refused the API key (GET /api/credentials answered HTTP "
                f"{e.status_code}: {e.message})",
                f"set RETAILCRM_API_KEY to an active key from {API_KEYS_SETTING}")
        return None, failed(name, f"{base} refused GET /api/credentials (HTTP "
                            f"{e.status_code}): {e.message}",
                            f"check RETAILCRM_API_KEY in {API_KEYS_SETTING}")
    except UpstreamError as e:
        status = e.status_code
        if _network_failure(e):
            what = f"cannot reach {base}: GET /api/credentials got no answer ({e.message})"
        elif status in (429, 503):
            what = f"{base} is rate-limiting or down (GET /api/credentials answered HTTP {status})"
            return None, failed(name, what, "run the doctor again in a minute; if it "
                                "persists, check RETAILCRM_BASE_URL is the account's address")
        elif status is not None and status >= 500:
            what = f"{base} failed (GET /api/credentials answered HTTP {status})"
        else:
            what = f"{base} did not answer as RetailCRM's API ({e.message})"
        return None, failed(name, what, _crm_unreachable_fix(s))
    return credentials, passed(name, f"accepted by {base}")


def check_scopes(credentials: dict[str, Any]) -> Check:
    name = "retailcrm scopes"
    scopes = credentials.get("scopes")
    if not isinstance(scopes, list):
        return failed(name, "RetailCRM did not list the key's scopes",
                      f"check in {API_KEYS_SETTING} that the key has: "
                      + ", ".join(REQUIRED_SCOPES))
    missing = [scope for scope in REQUIRED_SCOPES if scope not in scopes]
    notes = [f"{scope} not granted, {why}" for scope, why in SETUP_SCOPES.items()
             if scope not in scopes]
    note = f" (note: {'; '.join(notes)})" if notes else ""
    if missing:
        return failed(name, f"the key lacks {', '.join(missing)}{note}",
                      f"allow {', '.join(missing)} for this key in {API_KEYS_SETTING} "
                      "(or set RETAILCRM_API_KEY to a key that has them)")
    return passed(name, f"{', '.join(REQUIRED_SCOPES)} granted{note}")


def check_sites(s: Settings, credentials: dict[str, Any],
                sites: list[tuple[str, str]]) -> Check:
    """Every site the service sends requests or orders to (``configured_sites``) must be
    open to the key."""
    name = "retailcrm site"
    configured: dict[str, list[str]] = {}
    for env, site in sites:
        configured.setdefault(site, []).append(env)
    listed = ", ".join(f"{site} ({'/'.join(envs)})" for site, envs in configured.items())
    access = credentials.get("siteAccess")
    if access == "access_full":
        return passed(name, f"the key may use every site (access_full): {listed or 'none set'}")
    available = [str(site) for site in credentials.get("sitesAvailable") or []]
    allowed = ", ".join(available) or "none"
    denied = {site: envs for site, envs in configured.items() if site not in available}
    if denied:
        envs = [env for site_envs in denied.values() for env in site_envs]
        refused = ", ".join(f"{site} ({'/'.join(e)})" for site, e in denied.items())
        return failed(name, f"the key may not use {refused}; it may use: {allowed}",
                      f"allow {', '.join(denied)} for this key in {API_KEYS_SETTING} "
                      f"(site access), or set {' / '.join(envs)} to one of: {allowed}")
    if not s.retailcrm_site and len(available) > 1:
        return failed(name, f"RETAILCRM_SITE is not set and the key may use several sites "
                      f"({allowed})", f"set RETAILCRM_SITE to one of: {allowed}")
    return passed(name, f"{listed or 'no site set'} among the key's sites ({access})")


def configured_sites(s: Settings, sets: dict[str, RecommendedSet]) -> list[tuple[str, str]]:
    """Every site the service sends requests or orders to, as (where it is set, site)."""
    named = [("RETAILCRM_SITE", s.retailcrm_site),
             ("RECOMMENDED_ORDER_SITE", s.recommended_order_site),
             ("REPEAT_ORDER_SITE", s.repeat_order_site),
             *((f"RECOMMENDED_SETS_FILE set {b.offer_code}", b.site) for b in sets.values())]
    return [(env, site) for env, site in named if site]


def check_references(svc: Services) -> Check:
    """The order statuses, status-group codes and sites the settings name exist in the
    account (``/reference/statuses``, ``/reference/status-groups``, ``/reference/sites``):
    an order created with an unknown status or site is refused."""
    s, name = svc.settings, "retailcrm references"
    read: dict[str, dict[str, Any]] = {}
    for path, call, what in (("/api/v5/reference/statuses", svc.crm.get_statuses,
                              "cannot read the order statuses"),
                             ("/api/v5/reference/status-groups", svc.crm.get_status_groups,
                              "cannot read the status groups"),
                             ("/api/v5/reference/sites", svc.crm.get_sites,
                              "cannot read the sites")):
        try:
            read[path] = call()
        except UpstreamError as e:
            return call_failed(name, "GET", path, e, scope="reference_read", what=what)
    statuses, groups, sites = read.values()
    wanted = [("REPEAT_ORDER_STATUS", "order status", [s.repeat_order_status], statuses),
              ("RECOMMENDED_ORDER_STATUS", "order status", [s.recommended_order_status],
               statuses)]
    for bundle in svc.sets.values():  # a set's own status and store (RECOMMENDED_SETS_FILE)
        env = f"RECOMMENDED_SETS_FILE set {bundle.offer_code}"
        wanted.append((env, "order status", [bundle.status], statuses))
    for env, codes in (("RETAILCRM_ORDER_EXCLUDED_GROUP_CODES",
                        s.retailcrm_order_excluded_group_codes),
                       ("RETAILCRM_ORDER_GROUP_COMPLETE_CODES",
                        s.retailcrm_order_group_complete_codes),
                       ("RETAILCRM_ORDER_GROUP_DELIVERY_CODES",
                        s.retailcrm_order_group_delivery_codes)):
        wanted.append((env, "status group", list(codes), groups))
    wanted += [(env, "site", [site], sites) for env, site in configured_sites(s, svc.sets)]
    missing = [(env, what, code) for env, what, codes, known in wanted
               for code in codes if code and code not in known]
    if missing:
        envs = sorted({env for env, _, _ in missing})
        kinds = {"order status": ("order statuses", statuses),
                 "status group": ("status groups", groups), "site": ("sites", sites)}
        offer = "; ".join(f"{kinds[what][0]}: {', '.join(list(kinds[what][1])[:12]) or 'none'}"
                          for what in dict.fromkeys(w for _, w, _ in missing))
        return failed(name, "; ".join(f"{what} {code} ({env}) does not exist in the account"
                                      for env, what, code in missing),
                      f"set {' / '.join(envs)} to codes the account has ({offer})")
    return passed(name, f"order statuses {s.repeat_order_status} (REPEAT_ORDER_STATUS) and "
                  f"{s.recommended_order_status} (RECOMMENDED_ORDER_STATUS), the status-group "
                  f"codes and the sites exist")


def check_sets(svc: Services) -> Check:
    """Each recommended set's bundle article in the shop's catalog: there, active, priced
    (``GET /api/v5/store/products``). A set whose bundle is missing or inactive cannot be
    ordered (answered bundle_unavailable); one without a price is ordered at no price."""
    from gurugrow.flows.recommended import bundle_offer, offer_price

    name, path = "recommended sets", "/api/v5/store/products"
    where = svc.settings.recommended_sets_file or "the demo sets (RECOMMENDED_SETS_FILE empty)"
    missing: list[str] = []
    inactive: list[str] = []
    unpriced: list[str] = []
    priced: list[str] = []
    for bundle in svc.sets.values():
        article = bundle.bundle_article
        try:
            products = svc.crm.find_products_by_name(article)
        except UpstreamError as e:
            return call_failed(name, "GET", path, e, scope="store_read",
                               what=f"cannot look up bundle {article}")
        offer = bundle_offer(products, article)
        label = f"{article} ({bundle.offer_code})"
        if offer is not None:
            (priced if offer_price(offer) else unpriced).append(label)
        elif _listed(products, article):
            inactive.append(label)
        else:
            missing.append(label)
    found = f"{len(priced)} of {len(svc.sets)} bundles in the catalog, active and priced"
    if missing or inactive:
        lines = ([f"not in the catalog: {', '.join(missing)}"] if missing else []) + (
            [f"inactive: {', '.join(inactive)}"] if inactive else [])
        fix = (f"add or activate these articles in RetailCRM's catalog, or change the sets' "
               f"bundle in {where}")
        if svc.settings.sandbox:  # the demo's beard_growth lacks its bundle on purpose
            return warned(name, f"{found}; {'; '.join(lines)} (sandbox: on purpose)", fix)
        return failed(name, f"{found}; {'; '.join(lines)} (ordering these answers "
                      "bundle_unavailable)", fix)
    if unpriced:
        return warned(name, f"{found}; no price in the catalog: {', '.join(unpriced)}",
                      "give these offers a price in RetailCRM's catalog")
    return passed(name, f"{found} ({where})")


def _listed(products: list[dict[str, Any]], article: str) -> bool:
    return any(isinstance(p, dict) and (p.get("article") == article or any(
        isinstance(o, dict) and o.get("article") == article for o in p.get("offers") or []))
        for p in products)


def list_customer_fields(svc: Services) -> tuple[dict[str, dict[str, Any]] | None, Check | None]:
    """The account's customer custom fields by code, or a failing ``custom fields`` check."""
    existing, failure, _ = list_fields_or_refusal(svc)
    return existing, failure


def list_fields_or_refusal(svc: Services) -> tuple[dict[str, dict[str, Any]] | None, Check | None,
                                         bool]:
    """``list_customer_fields`` and whether RetailCRM answered a refusal (not silence)."""
    name = "custom fields"
    try:
        listed = svc.crm.list_custom_fields("customer")
    except UpstreamError as e:
        by_hand = ("; or check by hand in " + CUSTOM_FIELDS_SETTING + " that these exist: "
                   + ", ".join(spec.code for spec in field_specs(svc.settings)))
        refused = isinstance(e, UpstreamRejected)
        return None, call_failed(name, "GET", "/api/v5/custom-fields", e,
                                 scope="custom_fields_read",
                                 what="cannot list the customer custom fields",
                                 also=by_hand if refused else ""), refused
    return {str(f.get("code")): f for f in listed}, None, False


def check_custom_fields(svc: Services) -> Iterator[Check]:
    """One line per configured customer custom field."""
    existing, failure = list_customer_fields(svc)
    if existing is None:
        yield failure  # type: ignore[misc]
        return
    for spec in field_specs(svc.settings):
        yield check_field(spec, existing.get(spec.code))


def check_field(spec: FieldSpec, found: dict[str, Any] | None) -> Check:
    name = f"custom field {spec.code}"
    if found is None:
        return failed(name, f"no customer custom field with this code ({spec.env})",
                      f"run `{CREATE_FIELDS_COMMAND}`, or create it in "
                      f"{CUSTOM_FIELDS_SETTING} (code {spec.code}, type String), or set "
                      f"{spec.env} to the code of an existing field")
    kind = str(found.get("type") or "")
    if spec.messenger_id and kind in RANGE_FILTERED_TYPES:
        return failed(name, f"is of type {kind}: RetailCRM filters it by range, so customers "
                      "cannot be found by their messenger id",
                      f"create a String field in {CUSTOM_FIELDS_SETTING} (a field's type "
                      f"cannot change) and set {spec.env} to its code")
    note = ""
    if kind and kind not in TEXT_TYPES:
        note = f"; note: the service writes text to it, check a {kind} field accepts that"
    return passed(name, f"exists ({kind or 'type not reported'}, {spec.env}){note}")


def check_greensms(svc: Services) -> Check:
    s, name = svc.settings, "greensms"
    base = safe_url(s.greensms_base_url)
    if s.greensms_token:
        how, env = "token", "GREENSMS_TOKEN"
    elif s.greensms_user and s.greensms_pass:
        how, env = "user/pass", "GREENSMS_USER / GREENSMS_PASS"
    else:
        return failed(name, "no credentials set, no code can be sent",
                      "set GREENSMS_TOKEN, or GREENSMS_USER and GREENSMS_PASS")
    try:
        balance = svc.sms.account_balance()
    except UpstreamRejected as e:
        code = (e.errors or {}).get("code") if isinstance(e.errors, dict) else None
        if e.status_code in (401, 403) or code == 0:
            return failed(name, f"{base} declined the {how} (GET /account/balance answered "
                          f"HTTP {e.status_code}: {e.message})",
                          f"set {env} to valid GreenSMS API credentials")
        return failed(name, f"{base} refused GET /account/balance (HTTP {e.status_code}: "
                      f"{e.message})",
                      f"check {env}" + _greensms_url_fix(s, " and "))
    except UpstreamError as e:
        if s.sandbox:
            fix = "sandbox: start it first (`make run`)"
        elif s.greensms_base_url.rstrip("/") == GREENSMS_API:
            # Already GreenSMS's address: the way there is what to look at.
            fix = ("check this host reaches it (firewall; HTTP_PROXY_FROM_ENV=1 for a "
                   "proxy) and run the doctor again")
        else:
            fix = f"set GREENSMS_BASE_URL to GreenSMS's API, {GREENSMS_API}"
        outcome = f"answered HTTP {e.status_code}" if e.status_code else "got no answer"
        return failed(name, f"cannot get an answer from {base}: GET /account/balance "
                      f"{outcome} ({e.message})", fix)
    notes = "".join(f"; note: the {ROUTES[route].title} route is off, {reason}"
                    for route, reason in _routes_off(s))
    return passed(name, f"{how} accepted by {base}; balance {balance[:24]}{notes}")


def _routes_off(s: Settings) -> list[tuple[str, str]]:
    """Each route a workflow lists that is off, with why (gurugrow/routes.py)."""
    listed = {route for channel in CHANNELS for route in s.workflow(channel)}
    return [(route, reason) for route in ROUTES
            if route in listed and (reason := s.route_off_reason(route)) is not None]


def check_routes(s: Settings) -> Check:
    """Each channel's workflow (DELIVERY_ROUTES_<CHANNEL>) as it runs: the routes that
    are on, in order, and the ones that are off with why."""
    name, lines, empty = "routes", [], []
    for channel in CHANNELS:
        on = [r for r in s.workflow(channel) if s.route_off_reason(r) is None]
        lines.append(f"{channel}: {' → '.join(on) or 'none'}")
        if not on:
            empty.append(workflow_setting(channel))
    off = "".join(f"; {ROUTES[route].title} off: {reason}" for route, reason in _routes_off(s))
    detail = f"workflows {', '.join(lines)}{off}"
    if empty:
        return failed(name, detail, f"list a route that is on in {', '.join(empty)}, or "
                      "set the sender of its routes")
    return passed(name, detail)



def _greensms_url_fix(s: Settings, joiner: str) -> str:
    """Point at GREENSMS_BASE_URL only when it is not GreenSMS's own address already."""
    if s.greensms_base_url.rstrip("/") == GREENSMS_API:
        return ""
    return f"{joiner}GREENSMS_BASE_URL (GreenSMS's API is {GREENSMS_API})"


def check_deduper(svc: Services) -> Check:
    """Which mode is on: no deduper (DEDUPE_BASE_URL empty), or one that answers."""
    s, name = svc.settings, "deduper"
    if not s.dedupe_base_url:
        return passed(name, "off (DEDUPE_BASE_URL empty): a phone shared by several "
                      "customers gets no code and is answered dedupe_failed, the hand-off "
                      "to a manager; set DEDUPE_BASE_URL and DEDUPE_API_KEY to resolve them")
    base = safe_url(s.dedupe_base_url)
    try:
        status = svc.deduper.probe(s.retailcrm_site)
    except UpstreamRejected as e:
        if e.status_code in (401, 403):
            return failed(name, f"{base} refused the API key (POST "
                          f"/api/dedupe/auto-resolve answered HTTP {e.status_code})",
                          "set DEDUPE_API_KEY to the key the deduper expects")
        return failed(name, f"{base} answered {e.message} to an auto-resolve (POST "
                      f"/api/dedupe/auto-resolve, HTTP {e.status_code})",
                      "check DEDUPE_BASE_URL is the deduper's base (it serves "
                      "POST /api/dedupe/auto-resolve)")
    except UpstreamError as e:
        hint = "; sandbox: start it first (`make run`)" if s.sandbox else ""
        outcome = f"answered HTTP {e.status_code}" if e.status_code else "got no answer"
        return failed(name, f"no usable answer from {base}: POST /api/dedupe/auto-resolve "
                      f"{outcome} ({e.message})",
                      f"check the deduper is up and DEDUPE_BASE_URL points at it{hint}")
    return passed(name, f"on: answers at {base} (status {status[:40]} for a probe phone "
                  "no customer has)")
