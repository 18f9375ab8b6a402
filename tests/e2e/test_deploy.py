"""Deployment files: the systemd unit verifies cleanly and is hardened; the Dockerfile is sane."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "syncd.service"


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is required (Debian package systemd)")
    return tool


def unit_for_this_machine(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists; point it at this checkout's entry point.
    exe = Path(sys.executable).parent / "syncd"
    text = UNIT.read_text().replace("/usr/local/bin/syncd", str(exe))
    out = tmp_path / "syncd.service"
    out.write_text(text)
    return out


def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    r = subprocess.run(
        [analyze(), "verify", str(unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_unit_exposure_at_most_two(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            analyze(),
            "security",
            "--offline=true",
            "--threshold=20",
            str(unit_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m is not None, r.stdout
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_has_the_operational_keys() -> None:
    text = UNIT.read_text()
    for key in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=syncd",
        "DynamicUser=yes",
        "LoadCredential=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
    ):
        assert key in text, key


def test_dockerfile_basics() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER syncd$", text, re.M)
    assert 'VOLUME ["/var/lib/syncd"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "STOPSIGNAL SIGTERM" in text
    assert "SYNCD_CONFIG=" in text
