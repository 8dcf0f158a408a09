"""Is the port a server is about to bind already taken? Said in one line, before
gunicorn would retry the bind five times and print five "Connection in use" errors."""

from __future__ import annotations

import errno
import socket


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound because something listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def port_busy_line(host: str, port: int) -> str:
    """The one line printed when ``port`` is taken, with the way out."""
    return (f"gurugrow: port {port} is already in use on {host} (another server is "
            f"running there); stop it, or pick another port: APP_PORT={port + 1} make run")
