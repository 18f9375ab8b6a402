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
    text = UNIT.read_text().replace("/opt/syncd/venv/bin/syncd", str(exe))
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
    # A pinned base: a release, not a moving tag.
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b) for b in bases), bases
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'VOLUME ["/var/lib/syncd"]' in text
    assert 'CMD ["syncd", "healthcheck"]' in text
    assert "STOPSIGNAL SIGTERM" in text
    assert "SYNCD_CONFIG=" in text
    # Dependencies are installed before the code is copied (their own cached layer).
    assert text.index("-r requirements.txt") < text.index("COPY syncd ./syncd")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    assert "--stop-timeout" in text and "--stop-timeout" in (ROOT / "README.md").read_text()


def test_hadolint_passes() -> None:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    r = subprocess.run([tool, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_credentials_the_unit_loads_are_the_ones_the_config_and_readme_name() -> None:
    loaded = set(re.findall(r"^LoadCredential=(\w+):", UNIT.read_text(), re.M))
    example = (ROOT / "etc" / "syncd.toml").read_text()
    named = set(re.findall(r"_file = \"/run/credentials/syncd\.service/(\w+)\"", example))
    assert loaded and loaded <= named, (loaded, named)
    readme = (ROOT / "README.md").read_text()
    for name in loaded:
        assert f"/etc/syncd/credentials/{name}" in readme, name
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.M)
    assert exec_start and exec_start.group(1) in readme  # the install steps make it
