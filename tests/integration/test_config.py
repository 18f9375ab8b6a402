"""Configuration: validation messages, env overrides, *_file secrets, check-config exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config import ConfigInvalid, load_settings
from syncd.rules import Condition, Group, Op

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
[daemon]
listen = "127.0.0.1:18080"
state_dir = "{state}"
admin_token = "tok-123456"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "syncd.toml"
    p.write_text(text.replace("{state}", str(tmp_path)))
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(write(tmp_path, text))
    return info.value.problems


def test_example_config_is_valid() -> None:
    s = load_settings(ROOT / "etc" / "syncd.toml")
    assert s.hub is not None and s.hub.kind == "activecampaign"
    assert s.inbound.flush_interval == 600 and s.inbound.flush_size == 100
    assert s.outbound.interval_hours == 4
    assert isinstance(s.dbsync[0].rules, Group)


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.daemon.store == "sqlite"
    assert s.daemon.log_format == "json"
    assert s.inbound.flush_interval == 600
    assert s.inbound.flush_size == 100
    assert s.outbound.interval_hours == 4
    assert s.hub is None and s.crm is None and s.dbsync == []


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "[outbound]\ninterval_hours = 5",
            "outbound.interval_hours: must be one of 1, 2, 3, 4, 6, 8, 12, 24",
        ),
        ("[outbound]\ninterval_hours = true", "outbound.interval_hours: must be one of"),
        (
            "[inbound]\nflush_size = 0",
            "inbound.flush_size: Input should be greater than or equal to 1",
        ),
        (
            "[inbound]\nflush_interval = -1",
            "inbound.flush_interval: Input should be greater than 0",
        ),
        ("[inbound]\nflush_intervall = 5", "inbound.flush_intervall: unknown key"),
        ("[daemon2]\nx = 1", "daemon2: unknown key"),
        (
            "[sync]\nconflict_winner = 'both'",
            "sync.conflict_winner: Input should be 'crm' or 'hub'",
        ),
        (
            "[sync.objects.lead]\nselection = 'flagged'",
            "sync.objects.lead.flag_field: required when",
        ),
        (
            "[sync.objects.lead]\nselection = 'criteria'",
            "sync.objects.lead.criteria: required when",
        ),
        ("[sync.objects.widget]\nenabled = true", "sync.objects.widget: Input should be"),
        (
            "[hub]\nkind = 'mailchimp'\nbase_url = 'https://x'\napi_token = 'abcd'",
            "hub.kind: Input should be 'activecampaign' or 'hubspot'",
        ),
        (
            "[hub]\nkind = 'hubspot'\nbase_url = 'ftp://x'\napi_token = 'abcd'",
            "hub.base_url: must be an http(s) URL",
        ),
        ("[hub]\nkind = 'hubspot'\nbase_url = 'https://x'", "hub.api_token: required"),
        (
            "[crm]\nclient_id = 'x'\nauth_flow = 'jwt_bearer'",
            "crm.username: required for auth_flow = 'jwt_bearer'",
        ),
        (
            "[crm]\nclient_id = 'x'\nclient_secret = 's'\napi_version = 'v61'",
            "crm.api_version: must look like 61.0",
        ),
    ],
)
def test_validation_messages(tmp_path: Path, snippet: str, expected: str) -> None:
    found = problems(tmp_path, MINIMAL + snippet)
    assert any(p.startswith(expected) for p in found), found


def test_daemon_key_messages(tmp_path: Path) -> None:
    base = f'[daemon]\nstate_dir = "{tmp_path}"\n'
    assert problems(tmp_path, base + 'listen = "8080"') == [
        "daemon.listen: must be HOST:PORT, e.g. 127.0.0.1:8080"
    ]
    assert problems(tmp_path, base + 'store = "mysql"') == [
        "daemon.mysql_dsn: required when store = 'mysql'"
    ]
    assert problems(tmp_path, base + 'log_format = "xml"') == [
        "daemon.log_format: Input should be 'json' or 'console'"
    ]
    found = problems(tmp_path, base + 'store = "mysql"\nmysql_dsn = "postgres://u:SECRETPW@h/db"')
    assert found == ["daemon.mysql_dsn: must be a mysql://user:password@host:port/database URL"]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        MINIMAL + "[outbound]\ninterval_hours = 7\n[inbound]\nflush_size = 0\nbogus = 1\n",
    )
    assert len(found) == 3, found


def test_dbsync_rules_and_messages(tmp_path: Path) -> None:
    entry = """
[[dbsync]]
name = "shop"
dsn = "mysql://reader:pw@127.0.0.1/shop"
table = "customers"
list = "3"
mapping = { mail = "email" }
"""
    s = load_settings(
        write(tmp_path, MINIMAL + entry + 'rules = { field = "id", op = ">", value = 1 }\n')
    )
    assert s.dbsync[0].rules == Condition("id", Op.GT, 1)
    found = problems(
        tmp_path, MINIMAL + entry + 'rules = { all = [{ column = "id", op = "~~", value = 1 }] }'
    )
    assert found[0].startswith("dbsync[0].rules.all[0].op: unknown operator '~~'")
    found = problems(tmp_path, MINIMAL + entry.replace('"email"', '"firstName"'))
    assert found == ["dbsync[0].mapping: one column must be mapped to the hub field 'email'"]
    found = problems(tmp_path, MINIMAL + entry + 'schedule = "sometimes"')
    assert found[0].startswith("dbsync[0].schedule: must be 'manual'")
    found = problems(tmp_path, MINIMAL + entry + entry)
    assert found == ["dbsync[1].name: duplicate name 'shop'"]
    s = load_settings(write(tmp_path, MINIMAL + entry))
    assert (s.dbsync[0].delete_missing_action, s.dbsync[0].null_clears) == ("delete", True)
    s = load_settings(
        write(
            tmp_path, MINIMAL + entry + 'delete_missing_action = "unsubscribe"\nnull_clears = false'
        )
    )
    assert (s.dbsync[0].delete_missing_action, s.dbsync[0].null_clears) == ("unsubscribe", False)
    found = problems(tmp_path, MINIMAL + entry + 'delete_missing_action = "archive"')
    assert found == ["dbsync[0].delete_missing_action: Input should be 'delete' or 'unsubscribe'"]
    found = problems(tmp_path, MINIMAL + entry + 'null_clears = "sometimes"')
    assert found[0].startswith("dbsync[0].null_clears: Input should be a valid boolean")


def test_check_config_refuses_a_bad_delete_action(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        MINIMAL.replace("{state}", str(tmp_path))
        + '[[dbsync]]\nname = "shop"\ndsn = "mysql://reader:pw@127.0.0.1/shop"\n'
        + 'table = "customers"\nlist = "3"\nmapping = { mail = "email" }\n'
        + 'delete_missing_action = "purge"\n'
    )
    r = run_cli("check-config", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "dbsync[0].delete_missing_action: Input should be 'delete' or 'unsubscribe'"
    ]


def test_secret_from_file_and_both_given(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text("from-file-token\n")
    text = f'[daemon]\nstate_dir = "{tmp_path}"\nadmin_token_file = "{secret}"\n'
    s = load_settings(write(tmp_path, text))
    assert s.daemon.admin_token is not None
    assert s.daemon.admin_token.get_secret_value() == "from-file-token"
    found = problems(tmp_path, text + 'admin_token = "x"\n')
    assert found == [
        "daemon.admin_token_file: give either admin_token or admin_token_file, not both"
    ]
    found = problems(tmp_path, f'[daemon]\nadmin_token_file = "{tmp_path}/missing"\n')
    assert found[0].startswith("daemon.admin_token_file: cannot read")
    found = problems(tmp_path, '[daemon]\nlisten_file = "/etc/hostname"\n')
    assert found == ["daemon.listen_file: listen is not a secret; set it directly"]


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_DAEMON__LOG_LEVEL", "debug")
    monkeypatch.setenv("SYNCD_INBOUND__FLUSH_SIZE", "42")
    monkeypatch.setenv("SYNCD_OUTBOUND__INTERVAL_HOURS", "12")
    s = load_settings(write(tmp_path, MINIMAL + "[inbound]\nflush_size = 7\n"))
    assert s.daemon.log_level == "debug"
    assert s.daemon.listen == "127.0.0.1:18080"  # file value kept beside the override
    assert s.inbound.flush_size == 42
    assert s.outbound.interval_hours == 12
    monkeypatch.setenv("SYNCD_OUTBOUND__INTERVAL_HOURS", "5")
    found = problems(tmp_path, MINIMAL)
    assert found == ["outbound.interval_hours: must be one of 1, 2, 3, 4, 6, 8, 12, 24"]


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, MINIMAL)
    monkeypatch.setenv("SYNCD_CONFIG", str(p))
    assert load_settings().daemon.listen == "127.0.0.1:18080"


def test_missing_and_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(tmp_path / "nope.toml")
    assert info.value.problems[0].startswith("config: file not found")
    found = problems(tmp_path, "[daemon\nlisten=")
    assert found[0].startswith("config: ") and "not valid TOML" in found[0]


def test_digest_changes_with_any_value(tmp_path: Path) -> None:
    a = load_settings(write(tmp_path, MINIMAL)).digest()
    b = load_settings(write(tmp_path, MINIMAL + "[inbound]\nflush_size = 99\n")).digest()
    c = load_settings(write(tmp_path, MINIMAL.replace("tok-123456", "tok-654321"))).digest()
    assert len({a, b, c}) == 3


def test_secrets_are_collected_for_redaction(tmp_path: Path) -> None:
    text = MINIMAL + "[daemon.x]\n"
    text = MINIMAL.replace(
        "[daemon]", '[daemon]\nstore = "mysql"\nmysql_dsn = "mysql://u:Pa55word@h/db"'
    )
    s = load_settings(write(tmp_path, text))
    secrets = s.secret_values()
    assert "Pa55word" in secrets and "tok-123456" in secrets
    assert "Pa55word" not in repr(s) and "tok-123456" not in repr(s)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, MINIMAL)
    r = run_cli("check-config", "--config", str(good))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        MINIMAL.replace("{state}", str(tmp_path))
        + '[outbound]\ninterval_hours = 5\n[hub]\nkind = "hubspot"\nbase_url = "https://h"\n'
        + 'api_token = "CANARY-hub-token-77"\nbogus = 1\n'
    )
    r = run_cli("check-config", "--config", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert "outbound.interval_hours: must be one of 1, 2, 3, 4, 6, 8, 12, 24" in lines
    assert "hub.bogus: unknown key" in lines
    assert "CANARY-hub-token-77" not in r.stderr + r.stdout
    r = run_cli("check-config", env={"SYNCD_CONFIG": str(good)})
    assert r.returncode == 0, r.stderr
