"""`syncd sandbox` serves the simulators, prints how to reach them and stops on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

from tests.e2e.daemon import free_port


def _serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `syncd sandbox ARGS`; the process and its banner up to 'Ctrl-C stops'."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("Ctrl-C" in ln for ln in lines):
        line = proc.stdout.readline()
        if not line:  # exited before it was ready
            break
        lines.append(line)
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(15)


def test_sandbox_command_serves_all_three_and_stops() -> None:
    # Free ports picked by the command itself (no --port): nothing else can hold them.
    proc, banner = _serve("all")
    try:
        urls = dict(
            re.findall(r"^(salesforce|activecampaign|hubspot)\s+(http://\S+)$", banner, re.M)
        )
        assert set(urls) == {"salesforce", "activecampaign", "hubspot"}, banner
        for url in urls.values():
            with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=5) as r:
                assert "requests" in json.loads(r.read())
    finally:
        assert _stop(proc) == 0


def test_sandbox_command_serves_on_the_port_asked_for() -> None:
    port = free_port()
    proc, banner = _serve("activecampaign", "--port", str(port))
    try:
        assert f"http://127.0.0.1:{port}" in banner, banner
        assert "Api-Token" in banner and "client_id" not in banner, banner
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as r:
            assert "requests" in json.loads(r.read())
    finally:
        assert _stop(proc) == 0
