"""`syncd check-config --online` against the simulators: auth, mapped fields, required fields."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.runner import AC_TOKEN, SandboxThread
from tests.e2e.daemon import BASE_CONFIG

LEAD_OK = """
[sync.objects.lead]
mapping = { email = "Email", firstName = "FirstName", lastName = "LastName", company = "Company" }
"""


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[SandboxThread]:
    sb = SandboxThread(["salesforce", "activecampaign"], seed=True)
    yield sb
    sb.close()


def check(
    tmp_path: Path, sb: SandboxThread, extra: str = "", *, replace: tuple[str, str] = ("", "")
) -> subprocess.CompletedProcess[str]:
    text = (
        BASE_CONFIG.replace("{port}", "1").replace("{state}", str(tmp_path)).replace("{token}", "t")
    )
    text += sb.set.config_toml() + extra
    if replace[0]:
        text = text.replace(*replace)
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--online", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fitting_config_passes(tmp_path: Path, sandboxes: SandboxThread) -> None:
    r = check(tmp_path, sandboxes, LEAD_OK)
    assert r.returncode == 0, r.stderr
    assert "crm: authentication ok" in r.stdout and "hub: authentication ok" in r.stdout
    assert "API quota" in r.stdout


def test_missing_required_crm_field_is_reported(tmp_path: Path, sandboxes: SandboxThread) -> None:
    r = check(tmp_path, sandboxes)
    assert r.returncode == 2
    assert "sync.objects.lead.mapping: Salesforce requires 'Company' to create a lead" in r.stderr


def test_unknown_fields_on_either_side(tmp_path: Path, sandboxes: SandboxThread) -> None:
    extra = (
        LEAD_OK
        + '\n[sync.objects.contact]\nmapping = { email = "Email", shoeSize = "Shoe_Size__c" }\n'
    )
    r = check(tmp_path, sandboxes, extra)
    assert r.returncode == 2
    assert (
        "sync.objects.contact.mapping.shoeSize: Salesforce contact has no field 'Shoe_Size__c'"
        in r.stderr
    )
    assert (
        "sync.objects.contact.mapping.shoeSize: the hub has no contact field 'shoeSize'" in r.stderr
    )


def test_bad_hub_token_fails_auth_without_echoing_it(
    tmp_path: Path, sandboxes: SandboxThread
) -> None:
    r = check(tmp_path, sandboxes, LEAD_OK, replace=(AC_TOKEN, "WRONG-token-0000"))
    assert r.returncode == 2
    assert "hub: authentication failed" in r.stderr and "hub.api_token" in r.stderr
    assert "WRONG-token-0000" not in r.stdout + r.stderr


def test_salesforce_login_refused_is_one_line_and_exit_2(
    tmp_path: Path, sandboxes: SandboxThread
) -> None:
    from syncd.sandbox.runner import SF_CLIENT_SECRET

    r = check(tmp_path, sandboxes, LEAD_OK, replace=(SF_CLIENT_SECRET, "wrong-secret-0000"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crm: "), r.stderr
    assert "Traceback" not in r.stderr and "wrong-secret-0000" not in r.stdout + r.stderr


def test_the_demos_own_config_passes(tmp_path: Path, sandboxes: SandboxThread) -> None:
    from syncd.cli.demo import demo_config

    text = demo_config(sandboxes.set, port=1, state=tmp_path, token="t", hub="activecampaign")
    path = tmp_path / "demo.toml"
    path.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--online", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
