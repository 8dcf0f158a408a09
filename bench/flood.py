"""A flood, as a broadcast or an attacker makes one: many keep-alive connections, each
sending its next request the moment the previous answer arrives.

    python -m bench.flood --base http://127.0.0.1:8000 --token T [--connections 128]
        [--seconds 20] [--path /auth/status]
    python -m bench.flood --base http://127.0.0.1:80 --slow 1600 --seconds 20

The default mode asks ``GET <path>?channelType=telegram&messengerUserId=flood-<n>`` with a
new messenger id every time (so nothing is cached and every request needs a RetailCRM
call) and prints, as one JSON line, the answers by kind (``200 not_authorized``,
``200 busy``, ``503``, ``error``: no answer) and the slowest answer's seconds.

``--slow N`` opens N connections, each sending a start's headers and then its body one
byte every two seconds, never finishing it (a slow client holding its connection); it
prints how many it held open to the end and how many the server answered or closed.
``--source`` makes the connections leave from that local address.

Run in a process of its own: its threads then never compete for one interpreter lock
with whatever measures the server meanwhile (tests/integration/test_flood.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

# A start whose headers arrive at once and whose body (1,000 bytes declared) never does.
SLOW_HEADERS = (b"POST /auth/start HTTP/1.1\r\nHost: gurugrow\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\n")


def flood(base: str, token: str, connections: int, seconds: float, path: str) -> dict:
    """Loop requests on ``connections`` keep-alive connections for ``seconds``."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port
    stop = time.monotonic() + seconds
    answers: Counter[str] = Counter()
    slowest = [0.0]
    lock = threading.Lock()

    def connection(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine: Counter[str] = Counter()
        worst, i = 0.0, 0
        while time.monotonic() < stop:
            i += 1
            began = time.monotonic()
            try:
                conn.request("GET", f"{path}?channelType=telegram&messengerUserId=flood-{n}-{i}",
                             headers={"X-API-Token": token})
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                mine["error"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                continue
            worst = max(worst, time.monotonic() - began)
            mine[_kind(response.status, body)] += 1
        conn.close()
        with lock:
            answers.update(mine)
            slowest[0] = max(slowest[0], worst)

    threads = [threading.Thread(target=connection, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"answers": dict(answers), "slowest_seconds": round(slowest[0], 3)}


def _kind(status: int, body: bytes) -> str:
    """``<http status> <status or errorCode>`` of one answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return f"{status} not-json"
    if not isinstance(answer, dict):
        return f"{status} not-json"
    return f"{status} {answer.get('errorCode') or answer.get('status')}"


def slow_clients(base: str, connections: int, seconds: float, source: str = "") -> dict:
    """Hold ``connections`` connections open with a request body that never finishes."""
    url = urlsplit(base)
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(connections):
        try:
            sock = socket.create_connection((url.hostname, url.port), timeout=5,
                                            source_address=(source, 0) if source else None)
            sock.sendall(SLOW_HEADERS)
        except OSError:
            refused += 1
            continue
        sock.setblocking(False)
        socks.append(sock)
    opened, answered, stop = len(socks), Counter[str](), time.monotonic() + seconds
    while time.monotonic() < stop and socks:
        still = []
        for sock in socks:
            try:
                data = sock.recv(1024)
            except BlockingIOError:  # nothing to read: still waiting for our body
                try:
                    sock.send(b"a")
                    still.append(sock)
                    continue
                except OSError:
                    data = b""
            except OSError:
                data = b""
            answered[data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else
                     "closed"] += 1
            sock.close()
        socks = still
        time.sleep(min(2.0, max(stop - time.monotonic(), 0)))
    for sock in socks:
        sock.close()
    return {"opened": opened, "refused": refused, "answered": dict(answered),
            "held_to_the_end": len(socks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--path", default="/auth/status")
    parser.add_argument("--slow", type=int, default=0,
                        help="slow connections instead of a flood of requests")
    parser.add_argument("--source", default="", help="local address to connect from")
    args = parser.parse_args()
    if args.slow:
        result = slow_clients(args.base, args.slow, args.seconds, args.source)
    else:
        result = flood(args.base, args.token, args.connections, args.seconds, args.path)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
