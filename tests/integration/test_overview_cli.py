"""The overview CLI against a live app, and the three faces (API, CLI, page) agreeing."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.cli.overview import register
from syncd.model import Direction, ErrorCategory
from tests.integration.overview_support import (
    LiveApp,
    Seeded,
    seed,
    seed_links,
    seed_repeated_failures,
)

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def parser() -> argparse.ArgumentParser:
    """The CLI shape of syncd/cli.py, with only the overview's commands."""
    p = argparse.ArgumentParser(prog="syncd")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config")
        sp.set_defaults(func=fn)
        return sp

    register(sub, add)
    return p


class Cli:
    """Runs `syncd …` in-process with a config pointing at the live app."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            args = parser().parse_args([*argv, "--config", str(self.config)])
            code = int(args.func(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = self.capsys.readouterr()
        return code, _no_logs(out.out), _no_logs(out.err)


def _no_logs(text: str) -> str:
    """Drop the in-process server's log lines (the daemon logs to its own stderr)."""
    return "".join(line for line in text.splitlines(keepends=True) if not LOG_LINE.match(line))


def write_config(tmp: Path, port: int, token: str) -> Path:
    path = tmp / "cli.toml"
    path.write_text(
        f'[daemon]\nlisten = "127.0.0.1:{port}"\nadmin_token = "{token}"\nstate_dir = "{tmp}"\n'
    )
    return path


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, engine=True)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def seeded(live: LiveApp) -> Seeded:
    live.run(seed_links(live.store))
    return live.run(seed(live.store))


@pytest.fixture
def cli(live: LiveApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(write_config(tmp_path, live.port, live.token), capsys)


def page_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


@pytest.mark.parametrize("query", ["status=error", "status=pending", "object=lead", "q=person1"])
def test_api_cli_and_page_agree(live: LiveApp, seeded: Seeded, cli: Cli, query: str) -> None:
    _, api = live.json("GET", f"/api/v1/queue?{query}&limit=50")
    api_ids = [e["id"] for e in api["entries"]]
    key, _, value = query.partition("=")
    flag = {"status": "--status", "object": "--object", "q": "--search"}[key]
    code, out, _ = cli("queue", "list", flag, value, "--format", "json")
    assert code == 0
    assert [e["id"] for e in json.loads(out)["entries"]] == api_ids
    status, raw, _ = live.request("GET", f"/?{query}")
    assert status == 200
    assert page_ids(raw.decode()) == api_ids
    assert api_ids


def test_health_agrees(live: LiveApp, seeded: Seeded, cli: Cli) -> None:
    _, api = live.json("GET", "/api/v1/health")
    code, out, _ = cli("health", "--format", "json")
    assert code == 0 and json.loads(out)["objects"] == api["objects"]
    code, out, _ = cli("health")
    assert code == 0
    assert re.search(
        r"contact\s+6\s+10\s+10 \(validation 10\)\s+10\s+10 \(untagged 10\)\s+10", out
    ), out
    assert "hint contact/validation:" in out
    assert "api salesforce: quota 1234/15000" in out
    from tests.integration.test_overview_api import some_runs

    live.run(some_runs(live.store))
    code, out, _ = cli("health")
    assert "run dbsync customers: succeeded at" in out and "processed 3" in out


def test_health_counts_records_not_entries(live: LiveApp, cli: Cli) -> None:
    # 101 records, each rejected three times: 101 failing records, 303 entries.
    live.run(seed_repeated_failures(live.store, 101, 3))
    _, h = live.json("GET", "/api/v1/health")
    failing = h["objects"]["contact"]["failing"]
    assert (failing["total"], failing["entries"]) == (101, 303)
    assert [(c["category"], c["count"], c["entries"]) for c in failing["by_category"]] == [
        ("rejected", 101, 303)
    ]
    code, out, _ = cli("health")
    assert code == 0
    assert re.search(r"contact\s+0\s+0\s+101 \(rejected 101\)\s+303\s+0\s+0", out), out
    assert "count records" in out
    status, raw, _ = live.request("GET", "/", headers={"Authorization": f"Bearer {live.token}"})
    html = raw.decode()
    assert status == 200 and "101 (303 entries)" in html and "rejected: 101 (303 entries)" in html


def test_queue_list_table_csv_paging_and_banner(live: LiveApp, seeded: Seeded, cli: Cli) -> None:
    live.run(
        live.store.set_integration_error(
            Direction.INBOUND, ErrorCategory.QUOTA, "TotalRequests Limit exceeded."
        )
    )
    code, out, err = cli("queue", "list", "--status", "error")
    assert code == 0
    assert "!! INTEGRATION ERROR inbound quota since" in err and "24-hour" in err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "RECORD", "EMAIL"]
    assert len(lines) == 1 + len(seeded.error)
    code, out, _ = cli(
        "queue", "list", "--status", "error", "--status", "excluded", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(int(r["id"]) for r in rows) == sorted(seeded.error + seeded.excluded)
    code, out, _ = cli("queue", "list", "--limit", "7", "--all", "--format", "json")
    assert len(json.loads(out)["entries"]) == 50
    code, out, _ = cli("queue", "list", "--limit", "7")
    assert "(more: --before" in out
    code, out, _ = cli("queue", "list", "--since", "1h", "--format", "json")
    assert len(json.loads(out)["entries"]) == 50
    code, out, _ = cli("queue", "list", "--since", "2999-01-01", "--format", "json")
    assert json.loads(out)["entries"] == []
    assert cli("queue", "list", "--since", "soon")[0] == 2


def test_queue_show_retry_delete(live: LiveApp, seeded: Seeded, cli: Cli) -> None:
    code, out, _ = cli("queue", "show", str(seeded.error[0]))
    assert code == 0
    assert "REQUIRED_FIELD_MISSING" in out and "hint" in out and "'LastName'" in out
    code, out, _ = cli("queue", "show", str(seeded.processed[0]))
    assert "transferred to" in out and "skipped by conflict rules:" in out
    assert cli("queue", "show", "999999")[0] == 1

    code, out, _ = cli("queue", "retry", str(seeded.error[0]), str(seeded.error[1]))
    assert code == 0 and out.startswith("2 entries back to pending")
    code, _, err = cli("queue", "retry", str(seeded.processed[0]))
    assert code == 1 and "not in error" in err
    code, out, _ = cli("queue", "retry", "--all-errors", "--object", "contact")
    assert code == 0 and out.startswith(f"{len(seeded.error) - 2} entries")
    assert cli("queue", "retry")[0] == 2
    assert cli("queue", "retry", "1", "--all-errors")[0] == 2

    code, out, _ = cli("queue", "delete", str(seeded.pending[0]))
    assert code == 0 and "deleted" in out
    code, _, err = cli("queue", "delete", str(seeded.processed[0]))
    assert code == 1 and "(409)" in err and "target system" in err


def test_export_and_restore(live: LiveApp, seeded: Seeded, cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    code, _, _ = cli("export", "--deleted-side", "crm", "--output", str(target))
    assert code == 0
    rows = list(csv.DictReader(target.open()))
    assert [r["hub_id"] for r in rows] == ["5000", "5003"]
    code, _, _ = cli("export", "--format", "json", "--search", "linked4", "-o", str(target))
    assert [r["email"] for r in json.loads(target.read_text())] == ["linked4@example.com"]

    code, out, _ = cli("restore-deleted", "--object", "contact", "--to", "crm", "--dry-run")
    assert code == 0 and out.startswith("2 contact records deleted in the crm would be restored")
    live.hub.records["5000"] = {"email": "linked0@example.com", "lastName": "Person"}
    code, out, err = cli("restore-deleted", "--object", "contact", "--to", "crm")
    assert code == 1  # 5003 is gone from the hub too
    assert out.startswith("restored 1 of 2") and "deleted on both sides" in err
    assert cli("restore-deleted", "--object", "contact")[0] == 2


def test_unreachable_wrong_token_and_usage(tmp_path: Path, cli: Cli, live: LiveApp) -> None:
    from tests.e2e.daemon import free_port

    (tmp_path / "x").mkdir()
    dead = Cli(write_config(tmp_path / "x", free_port(), live.token), cli.capsys)
    code, _, err = dead("queue", "list")
    assert code == 3 and "daemon unreachable" in err
    assert dead("export", "-o", str(tmp_path / "e.csv"))[0] == 3
    wrong = Cli(write_config(tmp_path / "x", live.port, "not-the-token"), cli.capsys)
    code, _, err = wrong("health")
    assert code == 1 and "refused the admin token" in err
    assert wrong("export", "-o", str(tmp_path / "e.csv"))[0] == 1
    assert cli("queue", "list", "--status", "nope")[0] == 2
    assert cli("queue", "show", "abc")[0] == 2
