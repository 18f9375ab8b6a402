"""The overview on the real daemon against the Salesforce and ActiveCampaign simulators:
records the sandbox rejects show in error with the vendor's code and a hint; once the
sandbox stops rejecting, retrying all errors with ?now=true gets every one processed.

The daemon runs as a real `syncd run` subprocess; the CLI is called through the same
entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import DaemonProcess, free_port
from tests.e2e.env import Env, ac_webhook, sf_records, wait_until

LAUNCHER = """
import sys

from syncd.cli import main

sys.exit(main())
"""
QUIET = "\n[inbound]\nflush_size = 1000\nflush_interval = 600\n"
# The daemon's first scheduled pull (5 s after start) may add outbound entries.
INBOUND = "/api/v1/queue?direction=inbound&status="


def start(env: Env, tmp: Path) -> tuple[DaemonProcess, Path]:
    launcher = tmp / "launch_syncd.py"
    launcher.write_text(LAUNCHER)
    port, token = free_port(), "overview-e2e-token-0123456789"
    state = tmp / "state"
    state.mkdir()
    config = tmp / "syncd.toml"
    config.write_text(
        env.config(QUIET)
        .replace("{port}", str(port))
        .replace("{state}", str(state))
        .replace("{token}", token)
    )
    log = tmp / "syncd.log"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(launcher), "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=run_env,
        )
    d = DaemonProcess(config, port, token, proc, log)
    env.daemons.append(d)
    d.wait_ready()
    return d, launcher


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_errors_from_the_sandbox_are_retried_to_processed(env: Env, tmp_path: Path) -> None:
    d, launcher = start(env, tmp_path)
    blocked = {f"person{i}@example.com" for i in range(1, 6)}
    env.sb.run(lambda: env.sf.faults.fail_emails.update(blocked))
    for i in range(1, 9):
        assert ac_webhook(env, d, i)[0] == 200
    status, body = d.json("POST", "/api/v1/flush?wait=true")
    assert status == 200 and body["counts"]["errors"] == 5, body

    status, listing = d.json("GET", INBOUND + "error")
    errors = [e["id"] for e in listing["entries"]]
    assert len(errors) == 5
    status, detail = d.json("GET", f"/api/v1/queue/{errors[0]}")
    assert detail["error"]["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Syncd_Blocked_Email" in detail["error"]["message"]
    assert detail["error"]["hint"].startswith("Validation:")
    _, done = d.json("GET", INBOUND + "processed")
    status, processed = d.json("GET", f"/api/v1/queue/{done['entries'][0]['id']}")
    assert processed["transferred_fields"]["Email"] == processed["email"]
    assert processed["transferred"]["object"] == "contact"

    # The CLI (a client of the daemon) sees the same.
    cli = [sys.executable, str(launcher), "queue", "list", "--status", "error"]
    out = subprocess.run(
        [*cli, "--direction", "inbound", "--format", "json", "--config", str(d.config)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [e["id"] for e in json.loads(out.stdout)["entries"]] == errors

    env.sb.run(lambda: env.sf.faults.fail_emails.clear())
    status, out_body = d.json("POST", "/api/v1/queue/retry?now=true&status=error&direction=inbound")
    assert status == 200 and out_body == {"retried": 5, "flush": "requested"}
    wait_until(
        lambda: len(d.json("GET", INBOUND + "processed")[1]["entries"]) == 8,
        what="every entry processed after the retry",
    )
    emails = {c["Email"] for c in sf_records(env, "Contact")}
    assert blocked <= emails

    # The page is served by the daemon too.
    status, html, _ = d.request("GET", "/?status=processed&direction=inbound")
    assert status == 200 and html.count(b'<tr data-id="') == 8
    status, html, _ = d.request("GET", "/", token="")  # redirected to the login form
    assert status == 200 and b'<input id="token" name="token" type="password"' in html
