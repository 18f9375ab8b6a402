"""End-to-end harness: simulators in a thread, the real daemon as a subprocess, webhooks."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.sandbox.activecampaign.ui import edit_contact
from syncd.sandbox.runner import SandboxThread
from tests.e2e.daemon import BASE_CONFIG, DaemonProcess, start_daemon

AC_HOOK = "/webhooks/activecampaign/demo-webhook-token-0123456789"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Env:
    """Simulators plus daemons started against them."""

    def __init__(self, tmp: Path, vendors: tuple[str, ...] = ("salesforce", "activecampaign")):
        self.tmp = tmp
        self.sb = SandboxThread(vendors)
        self.daemons: list[DaemonProcess] = []

    @property
    def sf(self) -> Any:
        return self.sb.set.state("salesforce")

    @property
    def ac(self) -> Any:
        return self.sb.set.state("activecampaign")

    def config(self, extra: str = "", hub: str = "activecampaign", daemon_extra: str = "") -> str:
        base = BASE_CONFIG.replace("drain_timeout = 10", "drain_timeout = 10\n" + daemon_extra)
        return base + self.sb.set.config_toml(hub) + extra

    def start(
        self,
        extra: str = "",
        *,
        name: str = "syncd",
        daemon_extra: str = "",
        hub: str = "activecampaign",
        **kw: Any,
    ) -> DaemonProcess:
        cfg = self.config(extra, hub=hub, daemon_extra=daemon_extra)
        d = start_daemon(self.tmp, cfg, name=name, **kw)
        self.daemons.append(d)
        d.wait_ready()
        return d

    def start_config(self, config: str, *, name: str = "syncd", **kw: Any) -> DaemonProcess:
        """A daemon on a whole configuration text (see `config`); its state dir is kept
        from an earlier daemon of the same name."""
        d = start_daemon(self.tmp, config, name=name, **kw)
        self.daemons.append(d)
        d.wait_ready()
        return d

    def close(self) -> None:
        for d in self.daemons:
            d.kill()
            if d.notify:
                d.notify.close()
        self.sb.close()


def hub_edit(
    env: Env,
    cid: int,
    *,
    email: str | None = None,
    first: str = "Pat",
    last: str | None = None,
    tags: str = "added-to-salesforce-contact",
    fields: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """A person edits contact `cid` in ActiveCampaign (the simulator holds it as they left
    it); the form of the `update` webhook ActiveCampaign then sends."""
    values: dict[str, str | None] = {
        "email": email if email is not None else f"person{cid}@example.com",
        "firstName": first,
        "lastName": last if last is not None else f"Last{cid}",
        **(fields or {}),
    }
    tag_list = [t.strip() for t in tags.split(",") if t.strip()]
    env.sb.run(lambda: edit_contact(env.ac, cid, values, tags=tag_list))
    return {
        "contact[id]": str(cid),
        "contact[email]": str(values["email"]),
        "contact[first_name]": first,
        "contact[last_name]": str(values["lastName"]),
        "contact[tags]": tags,
    }


def ac_webhook(
    env: Env,
    d: DaemonProcess,
    cid: int,
    *,
    email: str | None = None,
    first: str = "Pat",
    last: str | None = None,
    tags: str = "added-to-salesforce-contact",
    event: str = "update",
    fields: dict[str, str | None] | None = None,
) -> tuple[int, bytes]:
    """A person edits contact `cid` in ActiveCampaign, which posts its `update` webhook."""
    form = {
        "type": event,
        **hub_edit(env, cid, email=email, first=first, last=last, tags=tags, fields=fields),
    }
    status, body, _ = d.request(
        "POST", AC_HOOK, urllib.parse.urlencode(form).encode(), headers=FORM
    )
    return status, body


def wait_until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` until true or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def queue_counts(d: DaemonProcess, direction: str = "inbound") -> dict[str, int]:
    """Queue counts of one direction from /api/v1/status."""
    _, body = d.json("GET", "/api/v1/status")
    return dict(body["queue"].get(direction, {}))


def metric(d: DaemonProcess, name: str, labels: str = "") -> float:
    """One sample of the daemon's /metrics."""
    _, raw, _ = d.request("GET", "/metrics", token="")
    for line in raw.decode().splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def sf_records(env: Env, obj: str) -> list[dict[str, Any]]:
    """Live records of one Salesforce object in the simulator."""

    def read() -> list[dict[str, Any]]:
        return [dict(r) for r in env.sf.records[obj].values() if not r["IsDeleted"]]

    return list(env.sb.run(read))
