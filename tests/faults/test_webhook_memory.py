"""Refused webhooks cost no lasting memory: 1,500 forged 1 MB HubSpot webhooks (well-formed,
fresh headers, so the body has to be read and hashed) and 1,500 invalid 1 MB ActiveCampaign
bodies under the valid token, posted to a real daemon over loopback. The daemon's RSS may
grow by at most 50 MB over each barrage (it grew by 1.4 GB when refused bodies waited for
the collector)."""

from __future__ import annotations

import base64
import http.client
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import AC_HOOK, Env, queue_counts
from tests.faults.harness import rss_kb

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
REQUESTS = 1500
SENDERS = 4
ONE_MB = 1_000_000


def _barrage(
    d: DaemonProcess, path: str, body: bytes, headers: Callable[[], dict[str, str]], n: int
) -> dict[int, int]:
    """`n` posts of `body` from SENDERS keep-alive connections; count per status."""
    counts: dict[int, int] = {}
    lock = threading.Lock()
    left = iter(range(n))

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        while True:
            with lock:
                if next(left, None) is None:
                    break
            conn.request("POST", path, body, headers=headers())
            resp = conn.getresponse()
            resp.read()
            with lock:
                counts[resp.status] = counts.get(resp.status, 0) + 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def _grown_mb(
    d: DaemonProcess, path: str, body: bytes, headers: Callable[[], dict[str, str]]
) -> tuple[float, dict[int, int]]:
    """RSS growth (MB) over REQUESTS posts, after a warm-up (first requests fill caches)."""
    _barrage(d, path, body, headers, 2 * SENDERS)
    before = rss_kb(d.proc.pid)
    counts = _barrage(d, path, body, headers, REQUESTS)
    return (rss_kb(d.proc.pid) - before) / 1024, counts


def test_forged_hubspot_webhooks_do_not_grow_memory(tmp_path: Path) -> None:
    env = Env(tmp_path, ("salesforce", "hubspot"))
    try:
        d = env.start(QUIET, hub="hubspot")
        forged = base64.b64encode(b"f" * 32).decode()  # the form of a digest, not the digest
        body = b"[" + b" " * (ONE_MB - 2) + b"]"

        def headers() -> dict[str, str]:
            return {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": forged,
                "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000)),
            }

        grown, counts = _grown_mb(d, "/webhooks/hubspot", body, headers)
        print(f"\nRSS growth after {REQUESTS} forged 1 MB HubSpot webhooks: {grown:.1f} MB")
        assert counts == {401: REQUESTS}, counts
        assert grown <= 50, f"RSS grew by {grown:.1f} MB"
        assert queue_counts(d) == {}
    finally:
        env.close()


def test_invalid_activecampaign_bodies_do_not_grow_memory(tmp_path: Path) -> None:
    env = Env(tmp_path)
    try:
        d = env.start(QUIET)
        body = b"type=update&contact[id]=x&contact[first_name]=" + b"y" * (ONE_MB - 60)

        def headers() -> dict[str, str]:
            return {"Content-Type": "application/x-www-form-urlencoded"}

        grown, counts = _grown_mb(d, AC_HOOK, body, headers)
        print(f"\nRSS growth after {REQUESTS} invalid 1 MB ActiveCampaign webhooks: {grown:.1f} MB")
        assert counts == {400: REQUESTS}, counts
        assert grown <= 50, f"RSS grew by {grown:.1f} MB"
        assert queue_counts(d) == {}
    finally:
        env.close()
