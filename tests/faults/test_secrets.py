"""A canary secret used throughout a small campaign never shows up anywhere it could leak.

The canary is the admin token, the ActiveCampaign webhook token (it is in every webhook
URL) and the Salesforce client secret. After webhooks, flushes, a session expiry, refused
authentication, bad tokens and an invalid reload naming it, it must appear in no log line,
no API response, no metric and no row of the store.
"""

from __future__ import annotations

import secrets
import signal
import sqlite3
import urllib.parse
from pathlib import Path

from syncd.sandbox.runner import SF_CLIENT_SECRET
from tests.e2e.env import FORM, Env, hub_edit, queue_counts, wait_until
from tests.faults.harness import INBOUND_ONLY

CANARY = "cnry" + secrets.token_hex(12)
OLD_HOOK_TOKEN = "demo-webhook-token-0123456789"


def _store_dump(state: Path) -> str:
    out: list[str] = []
    conn = sqlite3.connect(state / "syncd.sqlite3")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):
                out.append(repr(row))
    finally:
        conn.close()
    return "\n".join(out)


def test_canary_secret_never_leaks(env: Env) -> None:
    env.sb.run(lambda: setattr(env.sf, "client_secret", CANARY))
    extra = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n" + INBOUND_ONLY
    cfg = env.config(extra).replace(OLD_HOOK_TOKEN, CANARY).replace(SF_CLIENT_SECRET, CANARY)
    from tests.e2e.daemon import start_daemon

    d = start_daemon(env.tmp, cfg, token=CANARY)
    env.daemons.append(d)
    d.wait_ready()
    seen: list[str] = []

    def req(method: str, path: str, body: bytes | None = None, **kw: object) -> int:
        status, data, headers = d.request(method, path, body, **kw)  # type: ignore[arg-type]
        seen.append(f"{status}\n{headers}\n{data.decode(errors='replace')}")  # not the URL
        return status

    hook = f"/webhooks/activecampaign/{CANARY}"
    for i in range(30):
        form = {"type": "update", **hub_edit(env, 500 + i, email=f"p{i}@example.com", last=f"L{i}")}
        assert req("POST", hook, urllib.parse.urlencode(form).encode(), headers=FORM) == 200
    assert req("POST", "/api/v1/flush?wait=true", b"") == 200
    # The session expires (one re-auth with the secret), then authentication is refused.
    env.sb.run(lambda: env.sf.faults.apply({"expire_tokens": True}))
    for i in range(5):
        form = {"type": "update", **hub_edit(env, 600 + i, email=f"q{i}@example.com", last="X")}
        req("POST", hook, urllib.parse.urlencode(form).encode(), headers=FORM)
    req("POST", "/api/v1/flush?wait=true", b"")
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": True}))
    req("POST", hook, b"type=update&contact[id]=700&contact[last_name]=Y", headers=FORM)
    req("POST", "/api/v1/flush?wait=true", b"")
    env.sb.run(lambda: env.sf.faults.apply({"revoke_auth": False}))
    # Near misses of the token, and bearer tokens that embed it.
    req("POST", f"/webhooks/activecampaign/{CANARY}x", b"type=update", headers=FORM)
    req("POST", f"/webhooks/activecampaign/{CANARY[:-1]}", b"type=update", headers=FORM)
    req("GET", "/api/v1/status", token=CANARY + "x")
    req("GET", "/api/v1/status", token="x" + CANARY)
    # An invalid reload whose bad value is the secret itself.
    good = d.config.read_text()
    d.config.write_text(good + f'\n[outbound]\ninterval_hours = "{CANARY}"\n')
    d.signal(signal.SIGHUP)
    wait_until(lambda: "reload_rejected" in d.logs(), what="invalid reload rejected")
    listed = good.replace(f'client_secret = "{CANARY}"', f'client_secret = ["{CANARY}"]')
    d.config.write_text(listed)
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.logs().count("reload_rejected") >= 2, what="second reload rejected")
    d.config.write_text(good)
    # Everything an operator can read.
    status, doc = d.json("GET", "/api/v1/openapi.json")
    assert status == 200
    for path, ops in doc.get("paths", {}).items():
        if "get" in ops and "{" not in path:
            req("GET", path)
    for path in ("/", "/login", "/metrics", "/healthz", "/readyz", "/api/v1/status"):
        req("GET", path)
    _, entries = d.json("GET", "/api/v1/queue?limit=100")
    for e in (entries or {}).get("entries", [])[:5]:
        req("GET", f"/api/v1/queue/{e['id']}")
    assert queue_counts(d).get("processed", 0) >= 30
    d.stop()

    leaks = {
        "log": CANARY in d.logs(),
        "api": any(CANARY in s for s in seen),
        "store": CANARY in _store_dump(env.tmp / "syncd-state"),
    }
    assert not any(leaks.values()), (leaks, [s[:300] for s in seen if CANARY in s][:3])
    assert "***" in d.logs() or "reload_rejected" in d.logs()
