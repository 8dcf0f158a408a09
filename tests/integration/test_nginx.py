"""The real deploy/nginx/gurugrow.conf in front of the real stack: a real nginx, gunicorn
(TRUSTED_PROXIES=127.0.0.1), redis-server and the stand-ins over HTTP.

The site file is only rewritten for ports (``listen 80`` and the upstream's
``127.0.0.1:8000``), so what is tested is the file that gets deployed. Without an nginx
binary these tests skip, unless GURUGROW_REQUIRE_NGINX=1, where they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from requests.adapters import HTTPAdapter

from gurugrow import texts
from tests.conftest import API_TOKEN, TOKEN_HEADER
from tests.integration.conftest import ROOT, free_port, require_binary, wait_until
from tests.integration.stack import running_stack

pytestmark = pytest.mark.integration

SITE = ROOT / "deploy" / "nginx" / "gurugrow.conf"
PHONE = "79990000001"  # sandbox data: exactly one customer (1001), a plain code by Telegram
SPOOFED = ("203.0.113.9", "203.0.113.10")
UNTRUSTED_PEER = "127.0.0.2"  # also loopback on Linux, but not in TRUSTED_PROXIES
# One code per client address per hour makes the address the app believes observable:
# a second start counted against the same address is refused with rate_limited.
# The query token is on here, so a token in the URL can be shown to stay out of the logs.
# (Set for token callers too: these tests call with the token, as the bot does.)
SETTINGS = {"TRUSTED_PROXIES": "127.0.0.1", "OTP_MAX_SENDS_PER_IP_PER_HOUR": "1",
            "OTP_MAX_SENDS_PER_IP_PER_HOUR_TOKEN_CALLERS": "1",
            "OTP_RESEND_COOLDOWN_SECONDS": "0", "OTP_MAX_SENDS_PER_PHONE_PER_HOUR": "0",
            "OTP_MAX_SENDS_PER_PHONE_PER_DAY": "1000", "GUNICORN_WORKERS": "2",
            "API_TOKEN_IN_QUERY": "1"}
ACCESS_LOG = "/var/log/nginx/gurugrow.access.log"


class Nginx:
    """nginx running deploy/nginx/gurugrow.conf on a free port, without root."""

    def __init__(self, binary: str, workdir: Path, upstream_port: int,
                 rewrite: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        site = SITE.read_text()
        assert "listen 80;" in site and "server 127.0.0.1:8000;" in site, "site file changed"
        assert ACCESS_LOG in site, "site file changed"
        self.access_log = workdir / "access.log"
        for old, new in (rewrite or {}).items():  # e.g. a shorter timeout, to see a 504
            assert old in site, old
            site = site.replace(old, new)
        (workdir / "site.conf").write_text(
            site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
                .replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
                .replace(ACCESS_LOG, str(self.access_log)))
        temp = "\n".join(f"    {kind}_temp_path {workdir / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root the workers would drop to `nobody`, who cannot enter pytest's 0700 tmp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf = workdir / "nginx.conf"
        # 768 connections, as Debian's /etc/nginx/nginx.conf has them: the site's limits
        # must hold a flood with the stock configuration.
        self.conf.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} info;\nevents {{ worker_connections 768; }}\n"
            f"http {{\n    access_log off;\n{temp}\n    include {workdir / 'site.conf'};\n}}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf), "-p", f"{self.workdir}/",
             "-e", str(self.workdir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def answers() -> bool:
            assert self.proc.poll() is None, f"nginx exited: {self.error_log()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        assert wait_until(answers), f"nginx did not start: {self.error_log()}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown, workers included
            self.proc.wait(timeout=10)

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text()[-2000:] if path.exists() else ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_binary("redis-server", "GURUGROW_REQUIRE_REDIS")
    binary = require_binary("nginx", "GURUGROW_REQUIRE_NGINX", "/usr/sbin/nginx")
    workdir = tmp_path_factory.mktemp("nginx")
    with running_stack(workdir, SETTINGS) as (app, standins, redis_server):
        nginx = Nginx(binary, workdir, app.port)
        try:
            nginx.start()
            yield app, standins, redis_server, nginx
        finally:
            nginx.stop()


@pytest.fixture
def fresh(stack):
    _, standins, redis_server, _ = stack
    redis.Redis.from_url(redis_server.url).flushdb()
    standins.state.reset()
    return stack


def ip_counters(redis_url: str) -> dict[str, int]:
    """The per-address hourly send counters: address -> codes counted."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = client.keys("gg:throttle:*:ip-hour:*")
    return {key.split(":ip-hour:")[1].rsplit(":", 1)[0]: int(client.get(key)) for key in keys}


def peer_session(source: str) -> requests.Session:
    """A requests session whose connections leave from ``source`` (a loopback address)."""
    try:
        socket.create_server((source, 0)).close()
    except OSError as e:
        pytest.skip(f"no local address {source}: {e}")

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **{**kwargs, "source_address": (source, 0)})

    session = requests.Session()
    session.mount("http://", Adapter())
    return session


def start_code(http, base: str, user: str, spoofed: str) -> dict:
    return http.post(f"{base}/auth/start", timeout=10, headers={"X-Forwarded-For": spoofed},
                     data={"phone": PHONE, "channelType": "telegram",
                           "messengerUserId": user}).json()


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_journey_through_nginx(fresh, encoding):
    app, standins, _, nginx = fresh
    identity = {"channelType": "telegram", "messengerUserId": f"nginx-{encoding}"}

    def post(path: str, body: dict) -> dict:
        body_kwarg = {"data": body} if encoding == "form" else {"json": body}
        response = requests.post(nginx.base + path, timeout=10, **body_kwarg)
        assert response.status_code == 200, response.text
        return response.json()

    def status() -> str:
        return requests.get(f"{nginx.base}/auth/status", params=identity,
                            timeout=10).json()["status"]

    health = requests.get(f"{nginx.base}/health", headers={"X-Request-ID": "from-client"},
                          timeout=10)
    assert health.status_code == 200
    # nginx replaced the client's id by its $request_id, which the app adopted: echoed back
    # and on its request log line.
    request_id = health.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert status() == "not_authorized"
    started = post("/auth/start", {"phone": PHONE, **identity})
    assert started["status"] == "sent", started
    code = next(m["code"] for m in list(standins.state.outbox) if m["to"] == PHONE)
    checked = post("/auth/check", {"sessionId": started["sessionId"], "code": code, **identity})
    assert checked["status"] == "authorized", checked
    assert status() == "authorized"
    assert re.search(rf"request method=GET path=/health .*request_id={request_id}", app.log())


def test_client_address_is_the_peer_nginx_sees(fresh):
    """Through nginx, a start counts against the address nginx saw the client at, whatever
    X-Forwarded-For the client sends: two starts with two different spoofed addresses share
    one counter, and a client at another address has a counter of its own."""
    app, _, redis_server, nginx = fresh
    for peer, users in (("127.0.0.1", ("a", "b")), (UNTRUSTED_PEER, ("c", "d"))):
        http = peer_session(peer)
        assert start_code(http, nginx.base, users[0], SPOOFED[0])["status"] == "sent"
        refused = start_code(http, nginx.base, users[1], SPOOFED[1])
        assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited"), refused
        assert re.search(rf"limit_refused kind=ip_hour .* ip={re.escape(peer)} ", app.log())
    # 127.0.0.2 can only be known from nginx's X-Forwarded-For: gunicorn's peer is nginx.
    # (A refused start takes nothing: each counter holds the one start that was sent.)
    assert ip_counters(redis_server.url) == {"127.0.0.1": 1, UNTRUSTED_PEER: 1}


def test_forwarded_header_is_believed_only_from_trusted_proxies(fresh):
    """Straight to gunicorn: from an untrusted peer the header is ignored; from a trusted
    one (what nginx is) it is believed, so the checks above are not vacuous."""
    app, _, redis_server, _ = fresh
    untrusted = peer_session(UNTRUSTED_PEER)
    assert start_code(untrusted, app.base, "e", SPOOFED[0])["status"] == "sent"
    refused = start_code(untrusted, app.base, "f", SPOOFED[1])
    assert (refused["status"], refused["errorCode"]) == ("error", "rate_limited"), refused
    assert ip_counters(redis_server.url) == {UNTRUSTED_PEER: 1}
    trusted = peer_session("127.0.0.1")  # in TRUSTED_PROXIES, as nginx is
    for spoofed, user in zip(SPOOFED, ("g", "h"), strict=True):
        assert start_code(trusted, app.base, user, spoofed)["status"] == "sent"
    assert ip_counters(redis_server.url) == {UNTRUSTED_PEER: 1, SPOOFED[0]: 1, SPOOFED[1]: 1}


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "//metrics", "/metrics?x=1",
                                  "/sandbox", "/sandbox/outbox", "/sandbox/reset"])
def test_private_paths_are_not_served_through_nginx(stack, path):
    _, _, _, nginx = stack
    for method in ("GET", "POST"):
        response = requests.request(method, nginx.base + path, timeout=10)
        assert_json_error(response, 404, "not_found")
        assert "X-Request-ID" not in response.headers  # answered by nginx, the app never saw it


def test_large_body_is_refused_by_nginx(stack):
    app, _, _, nginx = stack
    body = {"phone": PHONE, "channelType": "telegram", "messengerUserId": "x" * 17000}
    response = requests.post(f"{nginx.base}/auth/start", data=body, timeout=10)
    assert_json_error(response, 413, "body_too_large")  # nginx's own answer, as JSON
    assert "X-Request-ID" not in response.headers
    # Just under the limit still reaches the app (which answers with its envelope).
    body["messengerUserId"] = "x" * 16000
    response = requests.post(f"{nginx.base}/auth/start", data=body, timeout=10)
    assert response.status_code == 200 and response.headers["X-Request-ID"]


def test_a_token_is_in_neither_log(fresh):
    """Tokens in the query (API_TOKEN_IN_QUERY=1) and in headers, valid and wrong, reach
    the app through nginx; neither nginx's access log nor gurugrow's log holds them."""
    app, _, _, nginx = fresh
    identity = {"channelType": "telegram", "messengerUserId": "log-test-424242"}
    wrong = "wrong-token-for-the-log-test-0000"
    status_url = f"{nginx.base}/auth/status"

    def call(method: str, url: str, params: dict, headers: dict, **body) -> requests.Response:
        # None drops the token the test session sends by default.
        return requests.request(method, url, params=params, timeout=10,
                                headers={TOKEN_HEADER: None, **headers}, **body)

    answers = [
        (call("GET", status_url, {**identity, "token": API_TOKEN}, {}), 200),
        (call("POST", f"{nginx.base}/auth/unlink", {"token": API_TOKEN}, {}, json=identity),
         200),
        (call("GET", status_url, {**identity, "token": wrong}, {}), 401),
        (call("GET", status_url, identity, {"Authorization": f"Bearer {API_TOKEN}"}), 200),
        (call("GET", status_url, identity, {TOKEN_HEADER: wrong}), 401),
    ]
    for response, expected in answers:
        assert response.status_code == expected, response.text
    assert answers[0][0].json()["status"] == "not_authorized"  # the query token worked
    assert answers[2][0].json()["errorCode"] == "unauthorized"
    request_ids = [response.headers["X-Request-ID"] for response, _ in answers]

    def logged_all(path) -> bool:
        return path.exists() and all(rid in path.read_text() for rid in request_ids)

    assert wait_until(lambda: logged_all(nginx.access_log)), nginx.access_log.read_text()
    assert wait_until(lambda: all(rid in app.log() for rid in request_ids)), app.log()[-2000:]
    access = nginx.access_log.read_text()
    for status in (200, 401):
        assert f'"GET /auth/status HTTP/1.1" {status}' in access
    for log in (access, app.log()):
        for secret in (API_TOKEN, wrong, "token="):
            assert secret not in log
        assert "log-test-424242" not in log  # nor the rest of the query


# -- nginx's own errors are JSON; chunked bodies obey the size limit -------------------
def chunked_post(base: str, path: str, body: bytes, content_type: str) -> requests.Response:
    """POST ``body`` with Transfer-Encoding: chunked (requests does so for a generator)."""
    def chunks():
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]
    return requests.post(base + path, data=chunks(), timeout=20,
                         headers={"Content-Type": content_type})


def assert_json_error(response: requests.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert (body["status"], body["errorCode"]) == ("error", error_code)
    assert body["message"] == texts.error_message(error_code)


CHUNKED_FORM = "application/x-www-form-urlencoded"
BIG_FORM = (f"phone={PHONE}&channelType=telegram&messengerUserId=big&x=").encode() + \
    b"a" * 1_000_000


@pytest.mark.parametrize("target", ["nginx", "gunicorn"])
def test_chunked_bodies_obey_the_size_limit(fresh, target):
    """A 1 MB chunked form is refused with 413 JSON, by nginx and by gunicorn alone (the
    app reads it to the limit); a small chunked form is served."""
    app, standins, _, nginx = fresh
    base = nginx.base if target == "nginx" else app.base
    refused = chunked_post(base, "/auth/start", BIG_FORM, CHUNKED_FORM)
    assert_json_error(refused, 413, "body_too_large")
    if target == "gunicorn":  # the app's own 413, logged with its request id
        request_id = refused.headers["X-Request-ID"]
        assert re.search(rf"request method=POST path=/auth/start http_status=413 .*"
                         rf"request_id={request_id}", app.log())
    else:
        assert "X-Request-ID" not in refused.headers
    assert not [m for m in list(standins.state.outbox) if m["to"] == PHONE]
    small = chunked_post(base, "/auth/start", f"phone={PHONE}&channelType=telegram&"
                         f"messengerUserId=chunked-{target}".encode(), CHUNKED_FORM)
    assert small.status_code == 200 and small.json()["status"] == "sent", small.text


def test_gateway_errors_are_json(stack, tmp_path):
    """502 with gunicorn gone (nothing listens), 504 with gunicorn silent past the read
    timeout (shortened to 1 s here; the deployed one is BOT_ANSWER_SECONDS + 2 s)."""
    binary = stack[3].binary
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    silent.listen()
    gone = free_port()
    for port, status, error_code, rewrite in (
            (gone, 502, "service_unavailable", None),
            (silent.getsockname()[1], 504, "service_timeout",
             {"proxy_read_timeout 5s;": "proxy_read_timeout 1s;"})):
        workdir = tmp_path / str(status)
        workdir.mkdir()
        nginx = Nginx(binary, workdir, port, rewrite)
        try:
            nginx.start()
            for method in ("GET", "POST"):
                response = requests.request(method, f"{nginx.base}/auth/status", timeout=20,
                                            data={"a": "1"} if method == "POST" else None)
                assert_json_error(response, status, error_code)
        finally:
            nginx.stop()
    silent.close()


# -- nginx's own limits and errors ------------------------------------------------------------
def raw_exchange(nginx, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request sent as bytes; the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ")[1]), headers, body


@pytest.mark.parametrize(("name", "request_bytes"), [
    ("malformed request line", b"NOT A REQUEST\r\n\r\n"),
    ("URI over the header buffers", b"GET /auth/status?x=" + b"a" * 10000
     + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ("header over the header buffers", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
     + b"a" * 10000 + b"\r\nConnection: close\r\n\r\n"),
    ("no Host header in HTTP/1.1", b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"),
    ("TRACE", b"TRACE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
])
def test_nginx_answers_its_own_errors_as_json_without_a_version(stack, name, request_bytes):
    nginx = stack[3]
    status, headers, body = raw_exchange(nginx, request_bytes)
    expected = (405, "method_not_allowed") if name == "TRACE" else (400, "bad_request")
    assert status == expected[0], (name, status, body[:200])
    assert headers["Content-Type"].startswith("application/json"), headers
    answer = json.loads(body)
    assert (answer["errorCode"], answer["message"]) == (
        expected[1], texts.error_message(expected[1]))
    assert headers["Server"] == "nginx"  # server_tokens off: no version
    assert "X-Request-ID" not in headers  # nginx's answer: gunicorn never saw it


def test_one_address_past_the_request_rate_gets_json_429(stack):
    """Requests from one address past the burst of 40 are refused by nginx at once."""
    nginx = stack[3]

    def ask(_: int) -> requests.Response:
        with peer_session("127.0.0.3") as session:
            return session.get(f"{nginx.base}/health", timeout=10)

    with ThreadPoolExecutor(60) as pool:
        answers = list(pool.map(ask, range(120)))
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) > 0 and len([r for r in answers if r.status_code == 200]) >= 40
    assert {r.status_code for r in answers} == {200, 429}
    assert_json_error(refused[0], 429, "too_many_requests")
    # Another address is not affected.
    with peer_session("127.0.0.6") as other:
        assert other.get(f"{nginx.base}/health", timeout=10).status_code == 200


def test_slow_clients_from_one_address_leave_the_service_to_others(stack):
    """1,600 slow connections from one address (each a start whose body never arrives),
    more than nginx's 768 connections: nginx keeps 32 of them (limit_conn) and answers
    the rest 429 at once, or closes them when out of connections; meanwhile /health
    answers another address every time, within a second."""
    nginx = stack[3]
    peer_session("127.0.0.4").close()  # skips when the address is missing
    slow = subprocess.Popen(
        [sys.executable, "-m", "bench.flood", "--base", nginx.base, "--slow", "1600",
         "--seconds", "15", "--source", "127.0.0.4"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    probes: list[tuple[int, float]] = []
    try:
        time.sleep(2)  # the connections are open by now
        with peer_session("127.0.0.5") as other:
            stop = time.monotonic() + 10
            while time.monotonic() < stop:
                began = time.monotonic()
                status = other.get(f"{nginx.base}/health", timeout=5).status_code
                probes.append((status, time.monotonic() - began))
                time.sleep(0.1)
        output, _ = slow.communicate(timeout=60)
    finally:
        if slow.poll() is None:
            slow.kill()
    held = json.loads(output)
    print(f"\nslow clients: {held}; /health from another address: {len(probes)} probes, "
          f"slowest {max(s for _, s in probes) * 1000:.0f} ms")
    assert held["opened"] + held["refused"] == 1600
    assert held["held_to_the_end"] <= 32
    # Every other one was let go of: answered 429, or closed.
    assert sum(held["answered"].values()) == held["opened"] - held["held_to_the_end"]
    assert held["answered"].get("429", 0) >= 300
    assert {status for status, _ in probes} == {200}
    assert max(seconds for _, seconds in probes) < 1.0
