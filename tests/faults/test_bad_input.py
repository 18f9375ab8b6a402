"""Hostile webhooks: malformed, truncated, oversized, wrongly encoded, forged, stale, replayed.

Every one gets a 4xx (never a 5xx), nothing reaches the queue, and the daemon's memory does
not grow by more than 50 MB over the whole barrage.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from syncd.sandbox.runner import HS_CLIENT_SECRET
from syncd.vendors.hubspot.signature import compute_signature_v3
from tests.e2e.daemon import DaemonProcess
from tests.e2e.env import AC_HOOK, Env, queue_counts
from tests.faults.harness import pick, rss_kb

QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
FORM = "application/x-www-form-urlencoded"
TEN_MB = 10 * 1024 * 1024
UTF16 = "type=update&contact[id]=7".encode("utf-16")
LATIN = '[{"subscriptionType": "contact.creation", "objectId": "é"}]'.encode("latin-1")


def _raw(d: DaemonProcess, head: bytes, body: bytes, *, shut: bool = False) -> int:
    """Send exactly these bytes; the status line's code (0 when the server just closed)."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=15) as s:
        try:
            s.sendall(head + body)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything
        try:
            data = s.recv(4096)
        except OSError:
            return 0
    if not data.startswith(b"HTTP/1."):
        return 0
    return int(data.split(b" ", 2)[1])


def _post(d: DaemonProcess, path: str, body: bytes, ctype: str, **headers: str) -> int:
    hdrs = {"Content-Type": ctype, **headers}
    try:
        status, _, _ = d.request("POST", path, body, headers=hdrs, token="", timeout=30)
    except OSError:
        return 0  # the server may close on a body it refuses to read to the end
    return status


def test_hostile_activecampaign_webhooks(env: Env) -> None:
    rounds = pick(3, 10)
    d = env.start(QUIET)
    codes: list[tuple[str, int]] = []
    # Warm up (first requests allocate caches) before the baseline.
    _post(d, AC_HOOK, b"type=nope", FORM)
    before = rss_kb(d.proc.pid)
    for _ in range(rounds):
        cases: dict[str, tuple[bytes, str]] = {
            "empty": (b"", FORM),
            "no id": (b"type=update&contact[email]=a@example.com", FORM),
            "bad id": (b"type=update&contact[id]=1%200", FORM),
            "bad type": (b"type=drop_table&contact[id]=1", FORM),
            "garbage": (b"%%%&&&===\x00\x01", FORM),
            "json": (b'{"type":"update","contact":{"id":1}}', "application/json"),
            "multipart lie": (b"--x\r\nnot really\r\n", "multipart/form-data; boundary=x"),
            "bad utf-8 escaped": (
                b"type=update&contact[id]=7&contact[first_name]=%FF%FE&contact[tags]=x",
                FORM,
            ),
            "bad utf-8 raw": (b"type=update&contact[id]=7&contact[first_name]=\xff\xfe", FORM),
            "utf-16 declared": (UTF16, FORM + "; charset=utf-16"),
            "utf-16 undeclared": (UTF16, FORM),
            "latin-1": ("type=update&contact[id]=7&contact[last_name]=Zoë".encode("latin-1"), FORM),
            "unknown charset": (b"type=update&contact[id]=7", FORM + "; charset=x-nonsense"),
        }
        for name, (body, ctype) in cases.items():
            codes.append((name, _post(d, AC_HOOK, body, ctype)))
        big = b"type=update&contact[id]=9&contact[first_name]=" + b"x" * TEN_MB
        codes.append(("10 MB", _post(d, AC_HOOK, big, FORM)))
        codes.append(("10 MB no type", _post(d, AC_HOOK, b"a" * TEN_MB, "text/plain")))
        head = (
            f"POST {AC_HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
            "Content-Length: 5000\r\n\r\n"
        ).encode()
        codes.append(("truncated", _raw(d, head, b"type=update&contact[id]=1", shut=True)))
        lying = (
            f"POST {AC_HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {TEN_MB * 10}\r\n\r\n"
        ).encode()
        codes.append(("huge length", _raw(d, lying, b"type=update")))
        chunked = (
            f"POST {AC_HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        piece = b"x" * 65536
        chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n") * (TEN_MB // len(piece))
        codes.append(("10 MB chunked", _raw(d, chunked, chunks + b"0\r\n\r\n")))
        for token in ("wrong", "demo-webhook-token-012345678", "DEMO-WEBHOOK-TOKEN-0123456789"):
            path = f"/webhooks/activecampaign/{token}"
            codes.append((f"token {token}", _post(d, path, b"type=update&contact[id]=1", FORM)))
        codes.append(("no token", _post(d, "/webhooks/activecampaign/", b"type=update", FORM)))
    grown = rss_kb(d.proc.pid) - before
    bad = [(n, c) for n, c in codes if not 400 <= c < 500 and not (c == 0 and "trunc" in n)]
    assert not bad, bad
    assert queue_counts(d) == {}
    assert grown <= 50 * 1024, f"RSS grew by {grown} kB"
    assert d.request("GET", "/healthz", token="")[0] == 200


def test_forged_stale_and_replayed_hubspot_signatures(tmp_path: Path) -> None:
    env = Env(tmp_path, ("salesforce", "hubspot"))
    try:
        d = env.start(QUIET, hub="hubspot")
        uri = f"{d.base}/webhooks/hubspot"
        events = [{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 51}]
        body = json.dumps(events).encode()

        def signed(
            payload: bytes, *, age_ms: int = 0, secret: str = HS_CLIENT_SECRET
        ) -> dict[str, str]:
            ts = str(int(time.time() * 1000) - age_ms)
            sig = compute_signature_v3(secret, "POST", uri, payload, ts)
            return {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}

        def post(payload: bytes, headers: dict[str, str], ctype: str = "application/json") -> int:
            return _post(d, "/webhooks/hubspot", payload, ctype, **headers)

        good = signed(body)
        codes = {
            "forged": post(body, {**good, "X-HubSpot-Signature-v3": "Zm9yZ2VkIHNpZ25hdHVyZQ=="}),
            "wrong secret": post(body, signed(body, secret="not-the-secret")),
            "stale": post(body, signed(body, age_ms=6 * 60 * 1000)),
            "future": post(body, signed(body, age_ms=-6 * 60 * 1000)),
            "no headers": post(body, {}),
            "bad timestamp": post(body, {**good, "X-HubSpot-Request-Timestamp": "yesterday"}),
            # A captured signature replayed on another body or with another timestamp.
            "replayed on other body": post(body.replace(b"51", b"52"), good),
            "replayed with new ts": post(
                body, {**good, "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000))}
            ),
            "signed garbage": post(b"{not json", signed(b"{not json")),
            "signed latin-1": post(LATIN, signed(LATIN)),
            "signed empty list": post(b"[]", signed(b"[]")),
            "signed wrong shape": post(b'{"a": 1}', signed(b'{"a": 1}')),
            "signed 10 MB": post(b"[" + b" " * TEN_MB + b"]", signed(b"[" + b" " * TEN_MB + b"]")),
        }
        bad = {k: v for k, v in codes.items() if not 400 <= v < 500}
        assert not bad, codes
        assert queue_counts(d) == {}
    finally:
        env.close()
