"""Settings: every environment variable the service reads, typed, with defaults.

Built once in ``create_app`` from ``os.environ`` (and ``.env`` via python-dotenv).
Every missing, malformed or placeholder value is collected in one pass: ``ConfigError``
carries one ``ConfigProblem`` per setting, each naming its variable, so a refused start
lists them all at once. ``Settings.load_lenient`` gives the doctor settings anyway (a bad
value falls back to its default) together with the same problems.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from gurugrow import routes as _routes

CHANNELS = ("telegram", "vk", "whatsapp", "max", "instagram")
# Messengers whose contact share carries the id of the user it belongs to.
CONTACT_CHANNELS = ("telegram", "max")
# The routes a code goes by (CODE_PRICES prices them): gurugrow/routes.py declares them.


# gunicorn.conf.py's default threads per worker (RETAILCRM_MAX_WAITING's default is half).
DEFAULT_GUNICORN_THREADS = 32
# Callers: the shortest API token accepted (a token is a password the bot platform keeps).
MIN_API_TOKEN_LENGTH = 16
# What REDIS_URL may name: a server (TLS: rediss), a socket, or the sandbox's in-process store.
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", "memory://")
# A live OTP_SECRET is the pepper that keeps a Redis dump from revealing codes.
LIVE_MIN_OTP_SECRET_LENGTH = 32
# The example values of .env.example a live start refuses (tests compare with the file).
ENV_EXAMPLE_PLACEHOLDERS = {
    "RETAILCRM_BASE_URL": "https://example.retailcrm.ru",
    "RETAILCRM_API_KEY": "replace-with-your-retailcrm-api-key",
    "RETAILCRM_SITE": "your-site",
    "OTP_SECRET": "replace-with-at-least-32-random-characters",
}


# Keys the sandbox stand-ins accept (gurugrow.sandbox re-exports them). Not secrets:
# sandbox only. Defined here so that configuration depends on nothing of ours.
SANDBOX_RETAILCRM_KEY = "sandbox-retailcrm-key"
SANDBOX_GREENSMS_TOKEN = "sandbox-greensms-token"
SANDBOX_DEDUPE_KEY = "sandbox-dedupe-key"


@dataclass(frozen=True)
class ConfigProblem:
    """One setting a start refuses: ``env`` names it, ``text`` says what is wrong."""

    env: str
    text: str

    def __str__(self) -> str:
        return self.text


class ConfigError(Exception):
    """Settings a start refuses: ``problems`` holds one line per setting. The one error
    type not in ``gurugrow.basics.errors`` (this module imports nothing of ours)."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem) -> None:
        self.problems = [problems] if isinstance(problems, ConfigProblem) else list(problems)
        super().__init__("; ".join(p.text for p in self.problems))


# The settings file read beside the environment (python-dotenv), in the working directory.
ENV_FILE = ".env"
# app.extensions key of an app built by create_cli_app: the problems a start would refuse.
CONFIG_PROBLEMS = "gurugrow.config_problems"


def config_problems(app: Any) -> list[ConfigProblem]:
    """The problems a start of ``app``'s (a Flask app's) configuration would refuse (none:
    it started)."""
    return list(app.extensions.get(CONFIG_PROBLEMS, []))


def config_error_lines(error: ConfigError, *, env_file_exists: bool) -> list[str]:
    """What a refused start prints: every problem, one line each, and the hint to copy
    ``.env.example`` when there is no ``.env``."""
    problems = error.problems
    if len(problems) == 1:
        lines = [f"gurugrow: configuration error: {problems[0].text}"]
    else:
        lines = [f"gurugrow: configuration error: {len(problems)} settings to fix:"]
        lines += [f"gurugrow:   {p.text}" for p in problems]
    if not env_file_exists:
        lines.append(f"gurugrow: {NO_ENV_FILE_HINT}")
    return lines


# Said by a refused start and by the doctor when the working directory has no .env.
NO_ENV_FILE_FIX = ("cp .env.example .env, then fill it in (`make run` needs none: it serves "
                   "the sandbox)")
NO_ENV_FILE_HINT = f"there is no .env here: {NO_ENV_FILE_FIX}"
# GreenSMS's own API address: GREENSMS_BASE_URL's default, and what the doctor names.
GREENSMS_API = "https://api3.greensms.ru"


def _is_price(text: str) -> bool:
    """True for a price: a finite number, not negative."""
    try:
        price = float(text)
    except ValueError:
        return False
    return math.isfinite(price) and price >= 0


class _Problems(list):
    """The problems found so far (``add`` names the variable first)."""

    def add(self, env: str, text: str) -> None:
        self.append(ConfigProblem(env, text))


def _env(name: str, default: Any = None, *, required: bool = False, secret: bool = False,
         minimum: float | None = None, choices: tuple | None = None) -> Any:
    """Declare a setting: its env variable, default and checks (read by ``Settings.load``)."""
    meta = {"env": name, "required": required, "secret": secret, "minimum": minimum,
            "choices": choices}
    return field(default=default, metadata=meta)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bool": _parse_bool, "int": int, "float": float, "str": str, "tuple[str, ...]": _parse_csv}


@dataclass(frozen=True)
class Settings:
    """Typed, validated configuration. Field names are the env names in lower case."""

    # Service
    app_host: str = _env("APP_HOST", "127.0.0.1")
    app_port: int = _env("APP_PORT", 8000, minimum=1)
    log_level: str = _env("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sandbox: bool = _env("GURUGROW_SANDBOX", False)
    max_body_bytes: int = _env("MAX_BODY_BYTES", 16384, minimum=1024)
    trusted_proxies: tuple[str, ...] = _env("TRUSTED_PROXIES", ())

    # Callers: who may call the contract endpoints (gurugrow/basics/callers.py)
    api_tokens: tuple[str, ...] = _env("API_TOKENS", (), secret=True)
    api_token_in_query: bool = _env("API_TOKEN_IN_QUERY", False)
    allowed_caller_networks: tuple[str, ...] = _env("ALLOWED_CALLER_NETWORKS", ())
    allow_anonymous_callers: bool = _env("ALLOW_ANONYMOUS_CALLERS", False)

    # Redis
    redis_url: str = _env("REDIS_URL", "redis://localhost:6379/0")
    redis_prefix: str = _env("REDIS_PREFIX", "gg:")
    redis_timeout_seconds: float = _env("REDIS_TIMEOUT_SECONDS", 2.0, minimum=0.1)
    metrics_token: str = _env("METRICS_TOKEN", "", secret=True)
    redis_cluster: bool = _env("REDIS_CLUSTER", False)
    redis_sentinels: tuple[str, ...] = _env("REDIS_SENTINELS", ())
    redis_sentinel_master: str = _env("REDIS_SENTINEL_MASTER", "mymaster")

    # RetailCRM
    retailcrm_base_url: str = _env("RETAILCRM_BASE_URL", "", required=True)
    retailcrm_api_key: str = _env("RETAILCRM_API_KEY", "", required=True, secret=True)
    retailcrm_site: str = _env("RETAILCRM_SITE", "")
    retailcrm_timeout_seconds: float = _env("RETAILCRM_TIMEOUT_SECONDS", 10.0, minimum=0.1)
    retailcrm_max_retries: int = _env("RETAILCRM_MAX_RETRIES", 3, minimum=0)
    http_proxy_from_env: bool = _env("HTTP_PROXY_FROM_ENV", False)
    http_connect_timeout_seconds: float = _env("HTTP_CONNECT_TIMEOUT_SECONDS", 3.0,
                                               minimum=0.1)
    retailcrm_cf_telegram_id: str = _env("RETAILCRM_CF_TELEGRAM_ID", "bot_telegram_account_id")
    retailcrm_cf_vk_id: str = _env("RETAILCRM_CF_VK_ID", "bot_vk_account_id")
    retailcrm_cf_whatsapp_id: str = _env("RETAILCRM_CF_WHATSAPP_ID", "bot_whatsapp_account_id")
    retailcrm_cf_max_id: str = _env("RETAILCRM_CF_MAX_ID", "bot_max_account_id")
    retailcrm_cf_instagram_id: str = _env("RETAILCRM_CF_INSTAGRAM_ID",
                                          "bot_instagram_account_id")
    retailcrm_cf_last_verified_channel: str = _env("RETAILCRM_CF_LAST_VERIFIED_CHANNEL",
                                                   "bot_last_verified_channel")
    retailcrm_cf_last_verified_at: str = _env("RETAILCRM_CF_LAST_VERIFIED_AT",
                                              "bot_last_verified_at")
    retailcrm_cf_last_verification_method: str = _env("RETAILCRM_CF_LAST_VERIFICATION_METHOD",
                                                      "bot_last_verification_method")
    retailcrm_cf_chatbot_interacted: str = _env("RETAILCRM_CF_CHATBOT_INTERACTED",
                                                "chatbot_interacted")

    # GreenSMS
    greensms_base_url: str = _env("GREENSMS_BASE_URL", GREENSMS_API)
    greensms_token: str = _env("GREENSMS_TOKEN", "", secret=True)
    greensms_user: str = _env("GREENSMS_USER", "")
    greensms_pass: str = _env("GREENSMS_PASS", "", secret=True)
    greensms_sms_from: str = _env("GREENSMS_SMS_FROM", "")
    greensms_vk_from: str = _env("GREENSMS_VK_FROM", "")
    # Senders GreenSMS requires for the WhatsApp and Viber routes (off while empty).
    greensms_whatsapp_from: str = _env("GREENSMS_WHATSAPP_FROM", "")
    greensms_viber_from: str = _env("GREENSMS_VIBER_FROM", "")
    # Workflows: the routes a channel's codes try, in order (gurugrow/routes.py): the
    # first on a start, the next on a resend after an undelivered or unknown send and in
    # the deliveries worker. Default: the channel's own messenger where there is one, SMS.
    delivery_routes_telegram: tuple[str, ...] = _env(
        "DELIVERY_ROUTES_TELEGRAM", _routes.default_workflow("telegram"))
    delivery_routes_vk: tuple[str, ...] = _env(
        "DELIVERY_ROUTES_VK", _routes.default_workflow("vk"))
    delivery_routes_whatsapp: tuple[str, ...] = _env(
        "DELIVERY_ROUTES_WHATSAPP", _routes.default_workflow("whatsapp"))
    delivery_routes_max: tuple[str, ...] = _env(
        "DELIVERY_ROUTES_MAX", _routes.default_workflow("max"))
    delivery_routes_instagram: tuple[str, ...] = _env(
        "DELIVERY_ROUTES_INSTAGRAM", _routes.default_workflow("instagram"))
    greensms_telegram_ttl: int = _env("GREENSMS_TELEGRAM_TTL", 0, minimum=0)
    greensms_timeout_seconds: float = _env("GREENSMS_TIMEOUT_SECONDS", 10.0, minimum=0.1)

    # Delivery tracking
    # A messenger code not delivered this long after its send goes again by SMS (on
    # resend, and by the `deliveries` worker); its status is asked every check interval.
    delivery_fallback_after_seconds: int = _env("DELIVERY_FALLBACK_AFTER_SECONDS", 30,
                                                minimum=1)
    delivery_check_interval_seconds: int = _env("DELIVERY_CHECK_INTERVAL_SECONDS", 10,
                                                minimum=1)
    delivery_worker_poll_seconds: float = _env("DELIVERY_WORKER_POLL_SECONDS", 1.0,
                                               minimum=0.05)
    delivery_worker_batch: int = _env("DELIVERY_WORKER_BATCH", 50, minimum=1)

    # Deduper
    dedupe_base_url: str = _env("DEDUPE_BASE_URL", "")
    dedupe_api_key: str = _env("DEDUPE_API_KEY", "", secret=True)
    dedupe_timeout_seconds: float = _env("DEDUPE_TIMEOUT_SECONDS", 10.0, minimum=0.1)

    # RetailCRM quota, breaker and caches
    # One Redis bucket shared by every worker and host: at most this many calls in any
    # one-second window (the key allows 10; the headroom absorbs network jitter).
    retailcrm_rate_limit: int = _env("RETAILCRM_RATE_LIMIT", 9, minimum=1)
    # A request's CRM calls wait this long for slots, then it answers errorCode=busy.
    retailcrm_queue_seconds: float = _env("RETAILCRM_QUEUE_SECONDS", 10.0, minimum=0.1)
    # Reads (status, orders, preview) reserve slots at most this far ahead (short: a
    # journey step of four CRM calls must fit BOT_ANSWER_SECONDS under a wave), so a
    # step after a code was sent never waits behind more than this much of a read wave.
    retailcrm_read_horizon_seconds: float = _env("RETAILCRM_READ_HORIZON_SECONDS", 0.3,
                                                 minimum=0.1)
    # Requests of one worker parked waiting for a slot at once; past it a read answers busy
    # at once (a step after a code was sent has half as many places again), so requests
    # needing no CRM call always find a thread. 0: half of GUNICORN_THREADS.
    retailcrm_max_waiting: int = _env("RETAILCRM_MAX_WAITING", 0, minimum=0)
    # Every answer within this many seconds of the request's arrival (bot builders give up
    # after about 3): waiting for a CRM slot stops in time to answer busy.
    bot_answer_seconds: float = _env("BOT_ANSWER_SECONDS", 3.0, minimum=1.0)
    # A 503/429 without Retry-After pauses the shared bucket this long.
    retailcrm_throttle_pause_seconds: float = _env("RETAILCRM_THROTTLE_PAUSE_SECONDS", 1.0,
                                                   minimum=0.1)
    # Consecutive timeouts/5xx that open the breaker, and how long it stays open.
    retailcrm_breaker_failures: int = _env("RETAILCRM_BREAKER_FAILURES", 5, minimum=1)
    retailcrm_breaker_cooloff_seconds: float = _env("RETAILCRM_BREAKER_COOLOFF_SECONDS", 30.0,
                                                    minimum=0.1)
    binding_cache_seconds: int = _env("BINDING_CACHE_SECONDS", 300, minimum=0)
    binding_negative_cache_seconds: int = _env("BINDING_NEGATIVE_CACHE_SECONDS", 10, minimum=0)
    orders_cache_seconds: int = _env("ORDERS_CACHE_SECONDS", 60, minimum=0)

    # The RetailCRM mirror (docs/MIRROR.md): bindings and order lists kept in Redis by
    # `flask --app wsgi gurugrow mirror` from RetailCRM's history. Off by default for a
    # live start (it needs that process running); the sandbox turns it on. Reads use it
    # only while its last sync is at most MIRROR_MAX_LAG_SECONDS old; else the live path.
    crm_mirror: bool = _env("CRM_MIRROR", False)
    mirror_poll_seconds: float = _env("MIRROR_POLL_SECONDS", 5.0, minimum=0.5)
    mirror_max_lag_seconds: float = _env("MIRROR_MAX_LAG_SECONDS", 60.0, minimum=1)
    # Every bound customer is re-read within this (a rolling reconcile that heals a missed
    # change; at the default at most one call a minute for up to 144,000 bound customers).
    mirror_reconcile_seconds: float = _env("MIRROR_RECONCILE_SECONDS", 86400.0, minimum=10)

    # OTP policy
    otp_secret: str = _env("OTP_SECRET", "", required=True, secret=True)
    otp_length: int = _env("OTP_LENGTH", 6, choices=(4, 5, 6, 7, 8))
    otp_ttl_seconds: int = _env("OTP_TTL_SECONDS", 300, minimum=30)
    otp_max_attempts: int = _env("OTP_MAX_ATTEMPTS", 5, minimum=1)
    otp_resend_cooldown_seconds: int = _env("OTP_RESEND_COOLDOWN_SECONDS", 60, minimum=0)
    otp_max_sends: int = _env("OTP_MAX_SENDS", 5, minimum=1)
    otp_max_sends_per_phone_per_day: int = _env("OTP_MAX_SENDS_PER_PHONE_PER_DAY", 10,
                                                minimum=1)
    otp_hash_iterations: int = _env("OTP_HASH_ITERATIONS", 1000, minimum=1000)
    auth_verified_days: int = _env("AUTH_VERIFIED_DAYS", 180, minimum=1)

    # Abuse limits (0 switches a counter off)
    otp_max_sends_per_phone_per_hour: int = _env("OTP_MAX_SENDS_PER_PHONE_PER_HOUR", 5,
                                                 minimum=0)
    otp_max_sends_per_ip_per_hour: int = _env("OTP_MAX_SENDS_PER_IP_PER_HOUR", 300, minimum=0)
    # The same cap for callers that proved one of API_TOKENS (0: none; they call from the
    # bot platform's few addresses, one counter for every customer).
    otp_max_sends_per_ip_per_hour_token_callers: int = _env(
        "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS", 0, minimum=0)
    otp_daily_send_budget: int = _env("OTP_DAILY_SEND_BUDGET", 2000, minimum=0)
    otp_identity_max_failures: int = _env("OTP_IDENTITY_MAX_FAILURES", 10, minimum=0)
    otp_lockout_base_seconds: int = _env("OTP_LOCKOUT_BASE_SECONDS", 300, minimum=1)
    otp_lockout_max_seconds: int = _env("OTP_LOCKOUT_MAX_SECONDS", 86400, minimum=1)
    phone_allowed_regions: tuple[str, ...] = _env("PHONE_ALLOWED_REGIONS", ("RU", "KZ", "BY"))
    # Codes per messenger account (channel + id), so one chat user cannot drain the budget.
    otp_max_sends_per_account_per_hour: int = _env("OTP_MAX_SENDS_PER_ACCOUNT_PER_HOUR", 10,
                                                   minimum=0)
    otp_max_sends_per_account_per_day: int = _env("OTP_MAX_SENDS_PER_ACCOUNT_PER_DAY", 20,
                                                  minimum=0)

    # Contact verification (POST /auth/contact) and what codes cost
    # Channels whose shared contact (the messenger's share button: phone + its user id) is
    # trusted as a verified phone; only telegram and max. Empty: the endpoint refuses.
    contact_verified_channels: tuple[str, ...] = _env("CONTACT_VERIFIED_CHANNELS", ())
    # route=price pairs (any route of gurugrow/routes.py) in the shop's currency:
    # gurugrow_code_cost_total.
    code_prices: tuple[str, ...] = _env("CODE_PRICES", ())
    # The conversion alert fires below this ratio of codes verified to codes sent (1 h).
    conversion_alert_ratio: float = _env("CONVERSION_ALERT_RATIO", 0.35, minimum=0)
    # Sends stop once the UTC day's priced cost (CODE_PRICES; a start to an unknown phone
    # costs nothing) reaches it; 0: off.
    otp_daily_cost_budget: float = _env("OTP_DAILY_COST_BUDGET", 0.0, minimum=0)

    # My orders
    retailcrm_order_excluded_status_codes: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_EXCLUDED_STATUS_CODES", ())
    retailcrm_order_excluded_status_names: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_EXCLUDED_STATUS_NAMES", ())
    retailcrm_order_excluded_group_codes: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_EXCLUDED_GROUP_CODES", ("cancel",))
    retailcrm_order_group_complete_codes: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_GROUP_COMPLETE_CODES", ("complete",))
    retailcrm_order_group_delivery_codes: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_GROUP_DELIVERY_CODES", ("delivery",))
    retailcrm_order_group_complete_names: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_GROUP_COMPLETE_NAMES", ())
    retailcrm_order_group_delivery_names: tuple[str, ...] = _env(
        "RETAILCRM_ORDER_GROUP_DELIVERY_NAMES", ())
    orders_default_limit: int = _env("ORDERS_DEFAULT_LIMIT", 3, choices=(1, 2, 3, 4, 5))
    orders_max_lookback: int = _env("ORDERS_MAX_LOOKBACK", 20, choices=(20, 50, 100))
    order_tracking_urls: tuple[str, ...] = _env("ORDER_TRACKING_URLS", ())
    reference_cache_seconds: int = _env("REFERENCE_CACHE_SECONDS", 600, minimum=0)

    # Repeat order
    repeat_order_number_prefix: str = _env("REPEAT_ORDER_NUMBER_PREFIX", "CHT")
    repeat_order_number_suffix: str = _env("REPEAT_ORDER_NUMBER_SUFFIX", "-BOT")
    repeat_order_comment_template: str = _env(
        "REPEAT_ORDER_COMMENT_TEMPLATE",
        "Повтор заказа {sourceOrderNumber} из чат-бота ({channelType})")
    repeat_order_status: str = _env("REPEAT_ORDER_STATUS", "new")
    repeat_order_site: str = _env("REPEAT_ORDER_SITE", "")

    # Recommended sets: the sets themselves are a TOML file (empty: the demo's,
    # gurugrow/basics/recommended_sets.toml); a set without its own site/status takes
    # these (an empty site: RETAILCRM_SITE).
    recommended_order_site: str = _env("RECOMMENDED_ORDER_SITE", "")
    recommended_order_status: str = _env("RECOMMENDED_ORDER_STATUS", "new")
    recommended_sets_file: str = _env("RECOMMENDED_SETS_FILE", "")
    # Bot texts: a TOML file overriding texts by name (`make texts` writes them all out).
    texts_file: str = _env("TEXTS_FILE", "")

    # A repeated identical order request within this window gets the first answer back.
    order_idempotency_seconds: int = _env("ORDER_IDEMPOTENCY_SECONDS", 600, minimum=10)
    # An order-creating request is looked up in RetailCRM by an externalId naming it and
    # this window before it creates (Redis may have lost its marker): one order per window.
    order_once_window_seconds: int = _env("ORDER_ONCE_WINDOW_SECONDS", 600, minimum=10)

    # Side channels: /auth/start, /auth/resend and /orders/recommended/start answer no
    # earlier than this many seconds after the request arrived, whoever the phone belongs
    # to (no customer, one, duplicates resolved by the deduper, an SMS fallback). Set it
    # above the slowest normal start; 0 switches the floor off.
    start_min_seconds: float = _env("START_MIN_SECONDS", 2.0, minimum=0)
    # Retries and crashes: a check or order in progress holds a lease this long, renewed
    # while it runs; a crashed worker's lease lapses by itself and the next attempt resumes.
    in_progress_lease_seconds: float = _env("IN_PROGRESS_LEASE_SECONDS", 1.0, minimum=0.2)
    # Sandbox: where the stand-ins run on their own server (`make run` sets it); empty
    # serves them inside the app.
    sandbox_standins_url: str = _env("SANDBOX_STANDINS_URL", "")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); raise ConfigError
        listing every problem found."""
        settings, problems = cls.load_lenient(environ)
        if problems:
            raise ConfigError(problems)
        return settings

    @classmethod
    def load_lenient(cls, environ: Mapping[str, str] | None = None
                     ) -> tuple[Settings, list[ConfigProblem]]:
        """Settings and every problem a start would refuse; a value that does not parse
        takes its default (for the doctor, which checks what it can)."""
        env = dict(os.environ if environ is None else environ)
        problems = _Problems()
        try:
            sandbox = _parse_bool(env.get("GURUGROW_SANDBOX", "0") or "0")
        except ValueError:
            problems.add("GURUGROW_SANDBOX", "GURUGROW_SANDBOX has a malformed value "
                         "(expected bool)")
            sandbox = False
            env["GURUGROW_SANDBOX"] = "0"
        if sandbox:
            # The stand-ins are always the upstreams: a sandbox never sends a key anywhere.
            env = {**sandbox_defaults(env), **{k: v for k, v in env.items() if v != ""},
                   **sandbox_upstreams(env)}
        values: dict[str, Any] = {}
        for f in fields(cls):
            meta = f.metadata
            raw = env.get(meta["env"])
            if raw is None or raw.strip() == "":
                if meta["required"]:
                    problems.add(meta["env"], f"{meta['env']} is required but not set")
                continue
            # Annotations are strings here (from __future__ import annotations).
            type_name = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                values[f.name] = _convert(type_name, meta, raw.strip())
            except ConfigError as e:
                problems.extend(e.problems)
        if not values.get("retailcrm_max_waiting"):
            values["retailcrm_max_waiting"] = max(1, _threads(env) // 2)
        settings = cls(**values)
        settings._check_consistency(problems)
        return settings, list(problems)

    def _check_consistency(self, problems: _Problems) -> None:
        if self.retailcrm_base_url and not self.retailcrm_base_url.startswith(
                ("http://", "https://")):
            problems.add("RETAILCRM_BASE_URL",
                         "RETAILCRM_BASE_URL must start with http:// or https://")
        if self.otp_secret and len(self.otp_secret) < 16:
            problems.add("OTP_SECRET", "OTP_SECRET must be at least 16 characters long")
        self._check_callers(problems)
        self._check_live_start(problems)
        self._check_answer_time(problems)
        self._check_redis(problems)
        for entry in self.order_tracking_urls:
            code, sep, template = entry.partition("=")
            if not (sep and code.strip() and template.strip().startswith("http")
                    and "{code}" in template):
                problems.add("ORDER_TRACKING_URLS",
                             "ORDER_TRACKING_URLS entries must be code=https://...{code}")
                break
        try:
            self.repeat_order_comment_template.format(sourceOrderNumber="", channelType="",
                                                      sourceOrderId="")
        except (KeyError, IndexError, ValueError):
            problems.add("REPEAT_ORDER_COMMENT_TEMPLATE",
                         "REPEAT_ORDER_COMMENT_TEMPLATE may use only {sourceOrderNumber}, "
                         "{sourceOrderId} and {channelType}")
        self._check_contact_and_prices(problems)
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                problems.add("TRUSTED_PROXIES",
                             f"TRUSTED_PROXIES has a malformed address: {proxy}")

    def _check_redis(self, problems: _Problems) -> None:
        if not self.redis_url.startswith(REDIS_URL_SCHEMES):
            problems.add("REDIS_URL", "REDIS_URL must start with redis://, rediss:// or "
                         "unix://")
        elif self.redis_url == "memory://" and not self.sandbox:
            problems.add("REDIS_URL", "REDIS_URL=memory:// is allowed only with "
                         "GURUGROW_SANDBOX=1")
        if not self.redis_prefix:
            problems.add("REDIS_PREFIX", "REDIS_PREFIX must not be empty")
        if self.redis_cluster and self.redis_sentinels:
            problems.add("REDIS_CLUSTER", "REDIS_CLUSTER and REDIS_SENTINELS exclude each other")
        for entry in self.redis_sentinels:
            host, sep, port = entry.rpartition(":")
            if not (sep and host and port.isdigit()):
                problems.add("REDIS_SENTINELS",
                             f"REDIS_SENTINELS entries must be host:port, got {entry}")

    def _check_contact_and_prices(self, problems: _Problems) -> None:
        for channel in self.contact_verified_channels:
            if channel not in CONTACT_CHANNELS:
                problems.add("CONTACT_VERIFIED_CHANNELS",
                             "CONTACT_VERIFIED_CHANNELS may list only "
                             f"{', '.join(CONTACT_CHANNELS)}, got {channel}")
        priced = _priced_routes()
        for entry in self.code_prices:
            route, sep, price = entry.partition("=")
            if not (sep and route.strip() in priced and _is_price(price)):
                problems.add("CODE_PRICES",
                             "CODE_PRICES entries must be route=price with route "
                             f"{', '.join(priced)} and price >= 0, got {entry}")
        self._check_workflows(problems)

    def _check_workflows(self, problems: _Problems) -> None:
        names = _routes.route_names()
        for channel in CHANNELS:
            env = _routes.workflow_setting(channel)
            chosen = self.workflow(channel)
            unknown = [r for r in chosen if r not in names]
            if unknown or not chosen or len(set(chosen)) != len(chosen):
                problems.add(env, f"{env} must list routes of {', '.join(names)}, each "
                             f"once, got {','.join(chosen) or 'nothing'}")

    def workflow(self, channel: str) -> tuple[str, ...]:
        """DELIVERY_ROUTES_<CHANNEL>: the routes ``channel``'s codes try, in order."""
        return getattr(self, f"delivery_routes_{channel}", None) or \
            _routes.default_workflow(channel)

    @cached_property
    def code_lengths(self) -> tuple[int, ...]:
        """The lengths a typed code may have: OTP_LENGTH, and the own length of each
        route a workflow lists (a flash call's 4 digits only where one is used)."""
        listed = {route for channel in CHANNELS for route in self.workflow(channel)}
        return _routes.code_lengths(self.otp_length, listed)

    def route_off_reason(self, route: str) -> str | None:
        """Why ``route`` is off (its sender is not set), or None when it is on."""
        declared = _routes.ROUTES.get(route)
        if declared is None:
            return f"{route} is no route"
        attr = declared.setting_attr
        if declared.sender_required and attr and not getattr(self, attr, ""):
            return (f"{declared.sender_setting} is not set (GreenSMS requires a sender "
                    f"for {route})")
        return None

    def route_sender(self, route: str) -> str:
        """The ``from`` a route's sends carry ('' for none)."""
        attr = _routes.ROUTES[route].setting_attr
        return str(getattr(self, attr, "") or "") if attr else ""

    @cached_property
    def route_prices(self) -> dict[str, float]:
        """CODE_PRICES as route → price (a route not listed costs 0)."""
        priced = _priced_routes()
        prices = (entry.partition("=") for entry in self.code_prices)
        return {route.strip(): float(price) for route, _, price in prices
                if route.strip() in priced and _is_price(price)}

    def _check_answer_time(self, problems: _Problems) -> None:
        if self.start_min_seconds >= self.bot_answer_seconds:
            problems.add("START_MIN_SECONDS",
                         "START_MIN_SECONDS must be below BOT_ANSWER_SECONDS (the start's "
                         "timing floor is part of the bot's patience)")

    def _check_callers(self, problems: _Problems) -> None:
        for network in self.allowed_caller_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                problems.add("ALLOWED_CALLER_NETWORKS",
                             f"ALLOWED_CALLER_NETWORKS has a malformed network: {network}")
        if any(len(token) < MIN_API_TOKEN_LENGTH for token in self.api_tokens):
            problems.add("API_TOKENS", f"API_TOKENS entries must be at least "
                         f"{MIN_API_TOKEN_LENGTH} characters long")

    def _check_live_start(self, problems: _Problems) -> None:
        """A live start refuses to be open by accident, to run on example values, or to
        run with no way to send a code."""
        if self.sandbox:
            return
        if not (self.api_tokens or self.allowed_caller_networks
                or self.allow_anonymous_callers):
            problems.add("API_TOKENS", "API_TOKENS or ALLOWED_CALLER_NETWORKS must be set "
                         "for a live start (ALLOW_ANONYMOUS_CALLERS=1 runs it open on "
                         "purpose)")
        for f in fields(self):
            placeholder = ENV_EXAMPLE_PLACEHOLDERS.get(f.metadata["env"])
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if placeholder is not None and placeholder in values:
                problems.add(f.metadata["env"], f"{f.metadata['env']} is still the "
                             ".env.example placeholder; set the real value")
        if self.otp_secret and len(self.otp_secret) < LIVE_MIN_OTP_SECRET_LENGTH:
            problems.add("OTP_SECRET", f"OTP_SECRET must be at least "
                         f"{LIVE_MIN_OTP_SECRET_LENGTH} characters long for a live start")
        if not (self.greensms_token or (self.greensms_user and self.greensms_pass)):
            problems.add("GREENSMS_TOKEN", "GREENSMS_TOKEN (or GREENSMS_USER and "
                         "GREENSMS_PASS) must be set for a live start: without them no code "
                         "can be sent")
        if self.dedupe_base_url and not self.dedupe_api_key:
            problems.add("DEDUPE_API_KEY", "DEDUPE_API_KEY must be set when DEDUPE_BASE_URL "
                         "is (leave both empty to run without a deduper)")

    @cached_property
    def caller_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """ALLOWED_CALLER_NETWORKS as networks (single addresses become /32 or /128)."""
        return [ipaddress.ip_network(n, strict=False) for n in self.allowed_caller_networks]

    @cached_property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """TRUSTED_PROXIES as networks (single addresses become /32 or /128)."""
        return [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]

    def channel_field(self, channel: str) -> str:
        """The customer custom field that stores the messenger id of ``channel``."""
        return getattr(self, f"retailcrm_cf_{channel}_id")


def _priced_routes() -> tuple[str, ...]:
    """The CODE_PRICES keys: every declared route's."""
    return tuple(r.price for r in _routes.ROUTES.values())


def _threads(env: Mapping[str, str]) -> int:
    """GUNICORN_THREADS as gunicorn.conf.py reads it (a malformed value stops gunicorn)."""
    try:
        return int(env.get("GUNICORN_THREADS") or DEFAULT_GUNICORN_THREADS)
    except ValueError:
        return DEFAULT_GUNICORN_THREADS


def _convert(type_name: str, meta: Mapping[str, Any], raw: str) -> Any:
    name = meta["env"]
    try:
        value = _PARSERS[type_name](raw)
    except (ValueError, KeyError) as e:
        raise ConfigError(ConfigProblem(
            name, f"{name} has a malformed value (expected {type_name})")) from e
    if type_name in ("int", "float") and not math.isfinite(value):
        # nan compares false with every minimum and inf passes them: refused here.
        raise ConfigError(ConfigProblem(name, f"{name} must be a finite number"))
    if type_name in ("int", "float") and meta["minimum"] is None and value < 0:
        raise ConfigError(ConfigProblem(name, f"{name} must not be negative"))
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ConfigError(ConfigProblem(name, f"{name} must be at least {meta['minimum']}"))
    if meta["choices"] is not None and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        raise ConfigError(ConfigProblem(name, f"{name} must be one of: {allowed}"))
    return value


def sandbox_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """Values that make a sandbox start work with no .env (an env value wins)."""
    return {"OTP_SECRET": "sandbox-only-otp-pepper-not-secret", "CRM_MIRROR": "1",
            # The demo shop's store and its "manual processing" status.
            "RECOMMENDED_ORDER_SITE": "1minoxidil-ru",
            "RECOMMENDED_ORDER_STATUS": "ruchnaia-obrabotka",
            # The demo shows the free path: contacts shared in Telegram and MAX bind.
            "CONTACT_VERIFIED_CHANNELS": "telegram,max",
            # ... and, for MAX users, a flash call and an incoming call (README quickstart).
            "DELIVERY_ROUTES_MAX": "sms,call,incoming_call"}


def sandbox_ignored(env: Mapping[str, str]) -> list[str]:
    """The upstream variables set in ``env`` that a sandbox start ignores."""
    forced = sandbox_upstreams(env)
    return [name for name in forced if env.get(name) and env[name] != forced[name]]


def sandbox_upstreams(env: Mapping[str, str]) -> dict[str, str]:
    """The upstream URLs and credentials of a sandbox start: always the stand-ins."""
    port = env.get("APP_PORT") or "8000"
    # The stand-ins' own server when one runs (make run), else the app's /sandbox mount.
    base = (env.get("SANDBOX_STANDINS_URL") or "").rstrip("/") or \
        f"http://127.0.0.1:{port}/sandbox"
    return {
        "RETAILCRM_BASE_URL": f"{base}/retailcrm",
        "RETAILCRM_API_KEY": SANDBOX_RETAILCRM_KEY,
        "RETAILCRM_SITE": "1minoxidil-ru",
        "GREENSMS_BASE_URL": f"{base}/greensms",
        "GREENSMS_TOKEN": SANDBOX_GREENSMS_TOKEN,
        "GREENSMS_VK_FROM": "sandbox",
        "GREENSMS_SMS_FROM": "sandbox",
        "GREENSMS_WHATSAPP_FROM": "sandbox",
        "GREENSMS_VIBER_FROM": "sandbox",
        "DEDUPE_BASE_URL": f"{base}/deduper",
        "DEDUPE_API_KEY": SANDBOX_DEDUPE_KEY,
        "GREENSMS_USER": "",
        "GREENSMS_PASS": "",
    }
