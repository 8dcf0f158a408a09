"""A Redis reply lost after the command ran is an error, never a second run.

redis-py 8's clients carry a default retry policy (10 retries on ConnectionError and
TimeoutError). A write sent again after Redis ran it but before its reply arrived would
apply twice: a code's attempt counted twice, a send limit spent twice, a quota slot taken
twice. Between the service's Redis client (built as the app builds it) and a real
redis-server sits a proxy that resets the connection once Redis has answered the marked
command, so the reply never arrives; the write must fail (``storage_unavailable``) and
have run once. Pinned here so a redis-py upgrade or a client setting cannot change it
unseen.
"""

from __future__ import annotations

import socket
import threading
import uuid
from urllib.parse import urlsplit

import pytest
import redis

from gurugrow import make_redis_client
from gurugrow.basics.errors import StorageUnavailable
from gurugrow.config import Settings
from gurugrow.stores.client import WriteBatch, registered_script, run_script
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.integration

INCR_SCRIPT = "return redis.call('INCR', KEYS[1])"


class ReplyLosingProxy:
    """Forwards every connection to Redis; the first reply to a request holding
    ``marker`` is never delivered: both sides are reset instead."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream, self.marker = upstream, marker
        self.lost = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        marked = threading.Event()
        with client, socket.create_connection(self.upstream) as server:
            def replies() -> None:
                while data := _recv(server):
                    if marked.is_set() and not self.lost.is_set():
                        self.lost.set()  # Redis ran it; its reply goes nowhere
                        for side in (client, server):
                            _reset(side)
                        return
                    try:
                        client.sendall(data)
                    except OSError:
                        return

            answering = threading.Thread(target=replies, daemon=True)
            answering.start()
            while data := _recv(client):
                if self.marker in data.upper():
                    marked.set()
                try:
                    server.sendall(data)
                except OSError:
                    break
            _reset(server)  # the client left: so does the reply side
            answering.join(timeout=5)

    def close(self) -> None:
        self._server.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _reset(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def direct(redis_url):
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def through_proxy(redis_url, request):
    """The service's own client (``make_redis_client``), talking to Redis through a
    proxy that loses the reply to the first command holding the test's marker."""
    address = urlsplit(redis_url)
    proxy = ReplyLosingProxy((address.hostname, address.port), request.param)
    client = make_redis_client(Settings.load({
        **TEST_ENV, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}))
    client.ping()  # connected and past the handshake before the marked command
    yield proxy, client
    client.close()
    proxy.close()


@pytest.mark.parametrize("through_proxy", [b"INCR"], indirect=True)
def test_a_batched_write_whose_reply_is_lost_fails_and_ran_once(through_proxy, direct):
    proxy, client = through_proxy
    key = f"lost-reply:{uuid.uuid4().hex}"
    batch = WriteBatch(client)
    batch.commands(lambda pipe: pipe.incr(key))
    with pytest.raises(StorageUnavailable):
        batch.send()
    assert proxy.lost.is_set()
    assert direct.get(key) == b"1"


@pytest.mark.parametrize("through_proxy", [b"EVALSHA"], indirect=True)
def test_a_script_whose_reply_is_lost_fails_and_ran_once(through_proxy, direct):
    proxy, client = through_proxy
    key = f"lost-reply:{uuid.uuid4().hex}"
    script = registered_script(client, INCR_SCRIPT)
    direct.script_load(INCR_SCRIPT)  # loaded: the one EVALSHA runs it at once
    with pytest.raises(StorageUnavailable):
        run_script(client, script, [key], [])
    assert proxy.lost.is_set()
    assert direct.get(key) == b"1"
    assert run_script(client, script, [key], []) == 2  # the next call is answered again
