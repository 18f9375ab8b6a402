"""A full disk under the SQLite store: reads still work, every write fails.

The daemon is a real subprocess; the disk fills by lowering its file-size limit
(RLIMIT_FSIZE: a write past it fails, as on a full disk, while reads go on). Webhooks get
503, /readyz must say not ready (it said "store ok" while 595 of 602 webhooks were
refused), the refusals are logged but rate-limited, and once the store takes writes again
the daemon is ready again by itself.
"""

from __future__ import annotations

import resource
import urllib.parse
from pathlib import Path

from tests.e2e.env import AC_HOOK, Env, wait_until

QUIET = "\n[inbound]\nflush_size = 10000\nflush_interval = 3600\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _webhook(cid: int) -> bytes:
    form = {
        "type": "update",
        "contact[id]": str(cid),
        "contact[email]": f"c{cid}@example.com",
        "contact[first_name]": "x" * 20_000,  # fills pages quickly
        "contact[tags]": "added-to-salesforce-contact",
    }
    return urllib.parse.urlencode(form).encode()


def _store_bytes(state: Path) -> int:
    return max(f.stat().st_size for f in state.iterdir() if f.is_file())


def test_disk_full_makes_the_daemon_unready_and_refusals_are_logged(env: Env) -> None:
    d = env.start(QUIET)
    d.wait_ready()
    assert d.request("POST", AC_HOOK, _webhook(1), headers=FORM, token="")[0] == 200
    state = env.tmp / "syncd-state"
    limit = _store_bytes(state) + 64 * 1024
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    statuses = [
        d.request("POST", AC_HOOK, _webhook(cid), headers=FORM, token="")[0]
        for cid in range(2, 202)
    ]
    refused = statuses.count(503)
    assert refused > 100, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-1] == 503
    status, body, _ = d.request("GET", "/readyz", token="")
    print(f"\n{refused} of {len(statuses)} webhooks refused; /readyz: {status} {body[:300]!r}")
    assert status == 503, body
    assert b"last write failed" in body, body
    lines = [e for e in d.log_events() if e.get("event") == "webhook_refused"]
    assert 1 <= len(lines) < refused, len(lines)
    assert "{token}" in lines[0]["path"] and "demo-webhook-token" not in d.logs()
    assert lines[0]["refused"] == 1
    # Space again: a small write the daemon tries every few seconds finds the store
    # writable, so it is ready again without waiting for a webhook (a balancer that took it
    # out of rotation sends none).
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    wait_until(lambda: d.request("GET", "/readyz", token="")[0] == 200, what="ready again")
    assert any(e.get("event") == "store_writable_again" for e in d.log_events())
    assert d.request("POST", AC_HOOK, _webhook(500), headers=FORM, token="")[0] == 200
