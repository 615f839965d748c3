"""Network helpers for tests and benchmarks that run servers or process groups on the loopback interface."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it), for a server or a process group.

    Nothing holds it after the call, so a test can also use it as a port where nothing listens.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
