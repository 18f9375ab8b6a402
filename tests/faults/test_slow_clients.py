"""Slow clients are cut off: 50 connections trickling their headers (slowloris), idle ones
that never send a byte, and bodies that trickle, against a real daemon over loopback.

With `header_timeout = 1` and `body_timeout = 1` every one of them must be closed by the
daemon (a body answered 408 first) while a normal request is served meanwhile; before the
timeouts existed they stayed open for as long as the client liked.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import AC_HOOK, Env

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
FAST = "header_timeout = 1\nbody_timeout = 1"
GIVE_UP = 60.0  # how long the test lets a connection trickle before calling it left open


def _trickle(d: DaemonProcess, head: bytes, drip: bytes, out: list[bytes | None]) -> None:
    """Send `head`, then `drip` a byte every 0.2 s until the daemon closes; record what it
    answered (None: still open after GIVE_UP seconds)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", d.port), timeout=0.2) as s:
        s.sendall(head)
        deadline = time.monotonic() + GIVE_UP
        i = 0
        while time.monotonic() < deadline:
            try:
                data = s.recv(4096)
            except TimeoutError:
                data = None
            except ConnectionError:
                out.append(answer)
                return
            if data == b"":
                out.append(answer)
                return
            if data:
                answer += data
                continue
            try:
                if drip:
                    s.sendall(drip[i % len(drip) : i % len(drip) + 1])
                    i += 1
            except OSError:
                out.append(answer)
                return
    out.append(None)


def _many(d: DaemonProcess, n: int, head: bytes, drip: bytes) -> list[bytes | None]:
    out: list[bytes | None] = []
    threads = [threading.Thread(target=_trickle, args=(d, head, drip, out)) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Served meanwhile: the slow ones hold no worker.
    assert d.request("GET", "/healthz", token="")[0] == 200
    for t in threads:
        t.join()
    return out


def test_slow_headers_idle_connections_and_slow_bodies_are_closed(tmp_path: Path) -> None:
    env = Env(tmp_path)
    try:
        d = env.start(QUIET, daemon_extra=FAST)
        slowloris = _many(
            d, 50, f"POST {AC_HOOK} HTTP/1.1\r\nHost: x\r\n".encode(), b"X-Slow: yes\r\n"
        )
        assert slowloris.count(None) == 0, f"{slowloris.count(None)} of 50 still open"
        idle = _many(d, 10, b"", b"")
        assert idle.count(None) == 0, f"{idle.count(None)} of 10 idle still open"
        for path, ctype in (
            (AC_HOOK, "application/x-www-form-urlencoded"),
            ("/api/v1/queue/retry", "application/json"),
            ("/login", "application/x-www-form-urlencoded"),
        ):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Authorization: Bearer {d.token}\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
            bodies = _many(d, 5, head, b"type=update&")
            assert bodies.count(None) == 0, (path, bodies)
            assert all(b.startswith(b"HTTP/1.1 408") for b in bodies if b is not None), (
                path,
                bodies,
            )
        assert d.request("GET", "/healthz", token="")[0] == 200
    finally:
        env.close()
