"""`syncd sandbox` serves the simulators, prints how to reach them and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

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


def _create_twice(url: str) -> list[int]:
    """Log in with client credentials and create two contacts with one email; the statuses."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": "sandbox-client-id",
            "client_secret": "sandbox-client-secret",
        }
    ).encode()
    with urllib.request.urlopen(f"{url}/services/oauth2/token", form, timeout=5) as r:
        token = json.loads(r.read())["access_token"]
    statuses = []
    for last in ("One", "Two"):
        req = urllib.request.Request(
            f"{url}/services/data/v61.0/sobjects/Contact/",
            json.dumps({"LastName": last, "Email": "same@example.com"}).encode(),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses


@pytest.mark.parametrize(
    ("args", "statuses"), [((), [201, 400]), (("--no-duplicate-rules",), [201, 201])]
)
def test_salesforce_duplicate_rules_are_on_unless_turned_off(
    args: tuple[str, ...], statuses: list[int]
) -> None:
    proc, banner = _serve("salesforce", *args)
    try:
        [url] = re.findall(r"^salesforce\s+(http://\S+)$", banner, re.M)
        assert _create_twice(url) == statuses
    finally:
        assert _stop(proc) == 0


def test_banner_names_the_activecampaign_base_url() -> None:
    proc, banner = _serve("activecampaign")
    try:
        [url] = re.findall(r"^activecampaign\s+(http://\S+)$", banner, re.M)
        assert f"(base_url {url}/api/3)" in banner, banner
        assert "{url}" not in banner, banner
    finally:
        assert _stop(proc) == 0


def _search_total(url: str, email: str) -> int:
    body = {
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}]
    }
    req = urllib.request.Request(
        f"{url}/crm/v3/objects/contacts/search",
        json.dumps(body).encode(),
        {"Authorization": "Bearer sandbox-hubspot-token", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(json.loads(r.read())["total"])


@pytest.mark.parametrize(("args", "found_at_once"), [((), False), (("--hs-search-lag", "0"), True)])
def test_hubspot_search_lags_unless_turned_off(args: tuple[str, ...], found_at_once: bool) -> None:
    """By default a create is found by search only later (the vendor's lag, on the test
    clock); ``--hs-search-lag 0`` makes search instantly consistent."""
    proc, banner = _serve("hubspot", *args)
    try:
        [url] = re.findall(r"^hubspot\s+(http://\S+)$", banner, re.M)
        req = urllib.request.Request(
            f"{url}/crm/v3/objects/contacts",
            json.dumps({"properties": {"email": "lag@example.com"}}).encode(),
            {"Authorization": "Bearer sandbox-hubspot-token", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
        assert _search_total(url, "lag@example.com") == (1 if found_at_once else 0)
    finally:
        assert _stop(proc) == 0


def _import_statuses(url: str) -> list[object]:
    """Queue a bulk import of two contacts; import/info's status right away and once more
    after 0.5 s."""
    headers = {"Api-Token": "sandbox-ac-api-token", "Content-Type": "application/json"}
    body = json.dumps({"contacts": [{"email": "a@example.com"}, {"email": "b@example.com"}]})
    req = urllib.request.Request(
        f"{url}/api/3/import/bulk_import", data=body.encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        batch = json.loads(r.read())["batchId"]
    out = []
    for pause in (0.0, 0.5):
        time.sleep(pause)
        info = urllib.request.Request(f"{url}/api/3/import/info?batchId={batch}", headers=headers)
        with urllib.request.urlopen(info, timeout=5) as r:
            out.append(json.loads(r.read())["status"])
    return out


@pytest.mark.parametrize(
    ("latency", "done"),
    [("0", ["completed", "completed"]), ("3600", None)],
)
def test_ac_import_latency_is_how_long_an_import_takes(latency: str, done: object) -> None:
    proc, banner = _serve("activecampaign", "--ac-import-latency", latency)
    try:
        [url] = re.findall(r"^activecampaign\s+(http://\S+)$", banner, re.M)
        statuses = _import_statuses(url)
        if done is not None:
            assert statuses == done
        else:  # an hour: still without a status (false) or waiting, never completed
            assert all(s in (False, "waiting") for s in statuses), statuses
    finally:
        assert _stop(proc) == 0


@pytest.mark.parametrize("bad", ["-1", "soon", "nan"])
def test_bad_search_lag_exits_2(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "sandbox", "hubspot", "--hs-search-lag", bad],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "--hs-search-lag" in done.stderr and "Traceback" not in done.stderr


def test_bad_time_factor_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "sandbox", "hubspot"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SYNCD_SANDBOX_TIME_FACTOR": "0"},
    )
    assert done.returncode == 2, done
    assert "SYNCD_SANDBOX_TIME_FACTOR" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", ["-1", "soon", "nan"])
def test_ac_import_latency_must_be_seconds(bad: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "syncd", "sandbox", "activecampaign", "--ac-import-latency", bad],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "--ac-import-latency" in run.stderr and "Traceback" not in run.stderr
