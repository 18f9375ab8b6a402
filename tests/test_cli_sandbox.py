"""`syncd sandbox all` serves the three simulators and prints how to reach them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

from tests.daemon_harness import free_port


def test_sandbox_command_serves_and_stops() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "sandbox", "all", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("Ctrl-C" in ln for ln in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        for vendor in ("salesforce", "activecampaign", "hubspot"):
            assert vendor in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as r:
            assert "requests" in json.loads(r.read())
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
