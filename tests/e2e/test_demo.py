"""`syncd demo` works from a fresh checkout: simulators, daemon, generator, report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.daemon import free_port


def test_demo_runs_and_reports() -> None:
    port = free_port()
    r = subprocess.run(
        [sys.executable, "-m", "syncd", "demo", "--duration", "18", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    assert f"http://127.0.0.1:{port}/metrics" in out
    assert "demo report" in out
    processed_in = re.search(r"inbound\s+processed\s+(\d+)", out)
    processed_out = re.search(r"outbound\s+processed\s+(\d+)", out)
    assert processed_in and int(processed_in.group(1)) > 0, out[-1500:]
    assert processed_out and int(processed_out.group(1)) > 0, out[-1500:]
    assert re.search(r"received \d+ \| pending \d+", out)
    assert re.search(r"divergence 0 of [1-9]\d* linked", out), out[-1500:]
    errors = re.search(r"inbound\s+error\s+(\d+)", out)
    assert errors is None, out[-1500:]  # every generated change is valid for Salesforce
    config = re.search(r"config\s+(\S+syncd\.toml)", out)
    assert config and not Path(config.group(1)).parent.exists()  # nothing left behind
