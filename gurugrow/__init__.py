"""gurugrow: the HTTP backend BotMarketing bots call to authorize messenger accounts as
RetailCRM customers, show their orders and create orders."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
from dotenv import dotenv_values
from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider

from gurugrow.config import (
    CONFIG_PROBLEMS,
    ENV_FILE,
    ConfigError,
    ConfigProblem,
    Settings,
    sandbox_ignored,
)
from gurugrow.logs import begin_request, configure_logging, log_event
from gurugrow.routes import ROUTES

if TYPE_CHECKING:
    from gurugrow.basics.catalog import RecommendedSet
    from gurugrow.basics.shop import ShopFiles
    from gurugrow.services import Services

__all__ = ["ConfigError", "Settings", "create_app", "create_cli_app"]


def load_settings(overrides: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``.env`` (if present), then the environment, then ``overrides``."""
    return Settings.load(load_environment(overrides))


def load_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables settings are built from: ``.env``, the environment, ``overrides``."""
    import os

    env = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
    env.update(os.environ)
    env.update(overrides or {})
    return env


def create_app(test_config: Mapping[str, str] | Settings | None = None, *,
               redis_client: Any = None) -> Flask:
    """The app factory. ``test_config`` overrides env variables (or is ready Settings);
    ``redis_client`` replaces the client built from ``REDIS_URL`` (tests: fakeredis)."""
    from gurugrow.basics.shop import load_shop_files

    env = None if isinstance(test_config, Settings) else load_environment(test_config)
    if isinstance(test_config, Settings):
        settings, problems = test_config, list[ConfigProblem]()
    else:
        settings, problems = Settings.load_lenient(env)
    shop, shop_problems = load_shop_files(settings)
    if problems or shop_problems:  # every problem at once, the files' too
        raise ConfigError([*problems, *shop_problems])
    return _build_app(settings, env, redis_client, shop)


def create_cli_app(test_config: Mapping[str, str] | None = None, *,
                   redis_client: Any = None) -> Flask:
    """The app ``flask --app wsgi`` gets when a start would be refused (wsgi.py).

    Built from ``Settings.load_lenient``: every command's ``--help`` works with no
    ``.env``, the doctor prints every check it can run and says why the others cannot,
    and the other commands stop listing the problems (``CONFIG_PROBLEMS``)."""
    env = load_environment(test_config)
    from gurugrow.basics.shop import load_shop_files

    settings, problems = Settings.load_lenient(env)
    shop, shop_problems = load_shop_files(settings)
    problems += shop_problems
    if any(p.env == "REDIS_URL" for p in problems):
        # Never connected (the doctor's redis check says to fix REDIS_URL first), but the
        # client must still be buildable.
        settings = dataclasses.replace(settings, redis_url=Settings().redis_url)
    app = _build_app(settings, env, redis_client, shop)
    app.extensions[CONFIG_PROBLEMS] = problems
    if problems:
        app.wsgi_app = _refuse_to_serve  # type: ignore[method-assign]  # `flask run` too
    return app


def _refuse_to_serve(environ: dict, start_response: Any) -> list[bytes]:
    """What an app on a refused configuration answers to every request: HTTP 503."""
    import json

    from gurugrow import texts

    log_event("configuration_refused", logging.ERROR, path=environ.get("PATH_INFO", ""))
    body = json.dumps({"status": "error", "errorCode": "internal_error",
                       "message": texts.error_message("internal_error")},
                      ensure_ascii=False).encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body)))])
    return [body]


def _build_app(settings: Settings, env: dict[str, str] | None, redis_client: Any,
               shop: ShopFiles) -> Flask:
    from gurugrow import texts

    configure_logging(settings.log_level)
    texts.apply_overrides(shop.text_overrides)  # per process (TEXTS_FILE)
    app = Flask(__name__, static_folder=None)  # no static files: no route to protect
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Russian texts as they are (not \u-escaped); fields in the schema's order.
    app.json = json_provider = DefaultJSONProvider(app)
    json_provider.ensure_ascii = False
    json_provider.sort_keys = False
    app.extensions["gurugrow"] = build_services(settings, redis_client, sets=shop.sets)

    from gurugrow.api import auth, health, openapi, ops, orders, recommended
    from gurugrow.api.bodies import install_body_limit
    from gurugrow.api.callers import install_caller_check
    from gurugrow.api.contract import check_path_parameters
    from gurugrow.api.errors import register_error_handlers
    from gurugrow.cli import cli

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(recommended.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(openapi.bp)
    register_error_handlers(app)
    check_path_parameters(app)
    app.cli.add_command(cli)
    _install_request_logging(app)
    install_caller_check(app, settings)
    # After the request id is set (a 413 carries it too) and the caller is checked.
    install_body_limit(app)
    if settings.sandbox:
        from gurugrow.sandbox.mount import mount_sandbox

        mount_sandbox(app, ignored=sandbox_ignored(env or {}))
    return app


def build_services(settings: Settings, redis_client: Any = None, *,
                   sets: dict[str, RecommendedSet] | None = None) -> Services:
    """Redis client, OTP store and gateways, created once per process; ``sets``: the
    recommended sets (default: the demo's)."""
    from gurugrow.basics.catalog import RECOMMENDED_SETS
    from gurugrow.basics.clock import Clock
    from gurugrow.gateways.deduper import DeduperGateway
    from gurugrow.gateways.greensms import GreenSmsGateway
    from gurugrow.gateways.http import make_session
    from gurugrow.services import Services
    from gurugrow.stores.caches import FlowCaches
    from gurugrow.stores.deliveries import DeliveryTracker
    from gurugrow.stores.limits import LimitPolicy, Limits
    from gurugrow.stores.mirror import MirrorStore
    from gurugrow.stores.otp import OtpPolicy, OtpStore
    from gurugrow.stores.server import RedisServer

    s = settings
    client = redis_client or make_redis_client(s)
    connect = s.http_connect_timeout_seconds

    def session():
        return make_session(trust_env=s.http_proxy_from_env)

    clock = Clock()  # the one clock: the stores and the flows read the same time
    return Services(
        settings=s,
        storage=RedisServer(client, s.redis_prefix),
        clock=clock,
        caches=FlowCaches(client, s.redis_prefix),
        otp=OtpStore(client, s.redis_prefix, OtpPolicy.from_settings(s), clock=clock),
        limits=Limits(client, s.redis_prefix, LimitPolicy.from_settings(s), clock=clock),
        crm=crm_gateway(s, client, session()),
        sms=GreenSmsGateway(s.greensms_base_url, token=s.greensms_token, user=s.greensms_user,
                            password=s.greensms_pass,
                            senders={route: s.route_sender(route) for route in ROUTES},
                            telegram_ttl=s.greensms_telegram_ttl or None,
                            timeout=s.greensms_timeout_seconds, connect_timeout=connect,
                            session=session()),
        deduper=DeduperGateway(s.dedupe_base_url, s.dedupe_api_key,
                               timeout=s.dedupe_timeout_seconds, connect_timeout=connect,
                               session=session()),
        # A delivery record outlives its code a little; then nothing about it matters.
        deliveries=DeliveryTracker(client, s.redis_prefix,
                                   ttl_seconds=s.otp_ttl_seconds + 600),
        # The in-process store (memory://, sandbox only) cannot be shared with a poller.
        mirror=MirrorStore(client, s.redis_prefix, max_lag_seconds=s.mirror_max_lag_seconds,
                           clock=clock) if s.crm_mirror and s.redis_url != "memory://" else None,
        sets=dict(RECOMMENDED_SETS if sets is None else sets),
    )


def crm_gateway(settings: Settings, redis_client: Any, session: Any) -> Any:
    """The RetailCRM gateway behind the shared quota bucket and this process's breaker."""
    from gurugrow.gateways.breaker import CircuitBreaker
    from gurugrow.gateways.retailcrm import RetailCrmGateway
    from gurugrow.governor import CrmQuota

    s = settings
    quota = CrmQuota(redis_client, s.redis_prefix, rate_limit=s.retailcrm_rate_limit,
                     queue_seconds=s.retailcrm_queue_seconds,
                     read_horizon_seconds=s.retailcrm_read_horizon_seconds,
                     max_waiting=s.retailcrm_max_waiting)
    breaker = CircuitBreaker(failures=s.retailcrm_breaker_failures,
                             cooloff_seconds=s.retailcrm_breaker_cooloff_seconds)
    return RetailCrmGateway(s.retailcrm_base_url, s.retailcrm_api_key, s.retailcrm_site,
                            timeout=s.retailcrm_timeout_seconds,
                            connect_timeout=s.http_connect_timeout_seconds,
                            max_retries=s.retailcrm_max_retries, session=session,
                            quota=quota, breaker=breaker,
                            throttle_pause_seconds=s.retailcrm_throttle_pause_seconds)


def make_redis_client(settings: Settings) -> Any:
    """The Redis client of ``REDIS_URL``: a single server (``redis://``, TLS with
    ``rediss://``), a Cluster (``REDIS_CLUSTER``) or a Sentinel-watched master
    (``REDIS_SENTINELS``); ``memory://`` (sandbox only) is in-process."""
    s = settings
    if s.redis_url == "memory://":
        import fakeredis

        return fakeredis.FakeRedis()
    timeouts = {"socket_timeout": s.redis_timeout_seconds,
                "socket_connect_timeout": s.redis_timeout_seconds}
    if s.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(s.redis_url, **timeouts)
    if s.redis_sentinels:
        from redis.sentinel import Sentinel

        url = redis.connection.parse_url(s.redis_url)
        hosts = [(h, int(p)) for h, _, p in (e.rpartition(":") for e in s.redis_sentinels)]
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
        return sentinel.master_for(s.redis_sentinel_master, db=url.get("db", 0),
                                   username=url.get("username"), password=url.get("password"))
    return redis.Redis.from_url(s.redis_url, health_check_interval=30, **timeouts)


def _install_request_logging(app: Flask) -> None:
    @app.before_request
    def _begin() -> None:
        g.request_id = begin_request(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    from gurugrow import metrics

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        elapsed_ms = elapsed * 1000
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = metrics.method_label(request.method)
        metrics.REQUESTS.labels(route, method, response.status_code,
                                g.get("contract_status") or "-").inc()
        metrics.REQUEST_SECONDS.labels(route, method).observe(elapsed)
        if not g.get("request_logged"):  # a refused caller's one line is caller_refused
            log_event("request", method=request.method, path=request.path,
                      http_status=response.status_code, ms=f"{elapsed_ms:.1f}")
        return response
