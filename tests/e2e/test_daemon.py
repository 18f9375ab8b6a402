"""The daemon as a real subprocess: readiness, SIGHUP reload, SIGTERM drain, sd_notify, secrets."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e.daemon import BASE_CONFIG, DaemonProcess, start_daemon

CANARY = "CANARY-9f8e7d6c5b4a"
CONFIG = (
    BASE_CONFIG
    + f"""
[hub]
kind = "activecampaign"
base_url = "http://127.0.0.1:9/api/3"
api_token = "{CANARY}"
webhook_token = "webhook-token-123456"
"""
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(tmp_path, CONFIG, notify=True)
    try:
        d.wait_ready()
        yield d
    finally:
        d.kill()
        if d.notify:
            d.notify.close()


def metric_value(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + (labels or "")) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if labels or head == name:
                return float(value)
    return 0.0


def test_ready_status_and_notify(daemon: DaemonProcess) -> None:
    assert daemon.notify is not None
    daemon.notify.wait_for("READY=1")
    status, body = daemon.json("GET", "/readyz", token="")
    assert status == 200
    assert body["checks"]["store"]["ok"] is True
    assert body["checks"]["scheduler"]["ok"] is True
    status, body = daemon.json("GET", "/healthz", token="")
    assert status == 200
    status, body = daemon.json("GET", "/api/v1/status")
    assert status == 200
    assert body["store"] == "sqlite"
    assert len(body["config_digest"]) == 16
    assert body["uptime_seconds"] >= 0
    assert isinstance(body["queue"], dict)


def test_admin_api_needs_the_token(daemon: DaemonProcess) -> None:
    for token in ("", "wrong-token"):
        status, body = daemon.json("GET", "/api/v1/status", token=token)
        assert status == 401
        assert "token" in body["error"]
    status, _ = daemon.json("GET", "/api/v1/openapi.json", token="")
    assert status == 401
    status, doc = daemon.json("GET", "/api/v1/openapi.json")
    assert status == 200
    assert "/api/v1/status" in doc["paths"]


def test_unknown_route_and_oversized_body(daemon: DaemonProcess) -> None:
    status, body = daemon.json("GET", "/api/v1/nope")
    assert status == 404
    assert body["error"]
    big = b"x" * (2 * 1024 * 1024)
    status, _, _ = daemon.request("POST", "/api/v1/status", big)
    assert status in (405, 413)


def test_sighup_reload_valid_then_invalid(daemon: DaemonProcess) -> None:
    assert daemon.notify is not None
    _, before = daemon.json("GET", "/api/v1/status")
    text = daemon.config.read_text()
    daemon.config.write_text(text + "\n[inbound]\nflush_size = 50\n")
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1")
    daemon.notify.wait_for("READY=1", count=2)
    _, after = daemon.json("GET", "/api/v1/status")
    assert after["config_digest"] != before["config_digest"]

    daemon.config.write_text(text + "\n[outbound]\ninterval_hours = 5\n")
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1", count=2)
    daemon.notify.wait_for("READY=1", count=3)
    assert daemon.proc.poll() is None
    _, kept = daemon.json("GET", "/api/v1/status")
    assert kept["config_digest"] == after["config_digest"]
    problems = [e for e in daemon.log_events() if e.get("event") == "reload_rejected"]
    assert problems and problems[0]["problem"].startswith("outbound.interval_hours: must be one of")
    _, metrics_raw, _ = daemon.request("GET", "/metrics", token="")
    text_metrics = metrics_raw.decode()
    assert metric_value(text_metrics, "syncd_config_reloads_total", '{outcome="failure"}') == 1
    assert metric_value(text_metrics, "syncd_config_reloads_total", '{outcome="success"}') == 1


def test_sigterm_exits_zero_and_notifies_stopping(daemon: DaemonProcess) -> None:
    assert daemon.notify is not None
    started = time.monotonic()
    assert daemon.stop(timeout=15) == 0
    assert time.monotonic() - started < 15
    daemon.notify.wait_for("STOPPING=1")
    events = [e.get("event") for e in daemon.log_events()]
    assert "stopped" in events


def test_logs_are_json_with_required_keys_and_no_secret(daemon: DaemonProcess) -> None:
    daemon.json("GET", "/api/v1/status")
    daemon.json("GET", "/api/v1/status", token=CANARY)  # a wrong token must not be echoed
    daemon.stop()
    events = daemon.log_events()
    assert events, daemon.logs()
    for e in events:
        assert {"event", "level", "timestamp", "logger"} <= set(e), e
    assert CANARY not in daemon.logs()


def test_secret_never_in_api_responses(daemon: DaemonProcess) -> None:
    for path in ("/api/v1/status", "/api/v1/openapi.json", "/readyz", "/healthz", "/metrics"):
        _, raw, _ = daemon.request("GET", path)
        assert CANARY.encode() not in raw, path


def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, CONFIG + "\n[outbound]\ninterval_hours = 7\n")
    assert d.proc.wait(30) == 2
    assert "outbound.interval_hours: must be one of 1, 2, 3, 4, 6, 8, 12, 24" in d.logs()


def test_unreachable_mysql_store_is_not_ready_but_alive(tmp_path: Path) -> None:
    cfg = CONFIG.replace(
        "drain_timeout = 10",
        'drain_timeout = 10\nstore = "mysql"\nmysql_dsn = "mysql://root:Sekr3tPw@127.0.0.1:9/x"',
    )
    d = start_daemon(tmp_path, cfg)
    try:
        d.wait_ready(path="/healthz")
        status, body = d.json("GET", "/readyz", token="")
        assert status == 503
        assert body["checks"]["store"]["ok"] is False
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0
    assert "Sekr3tPw" not in d.logs()


def promtool() -> str | None:
    path = shutil.which("promtool")
    if path is None and IN_CI:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            check=False,
            capture_output=True,
            timeout=600,
        )
        path = shutil.which("promtool")
    return path


def test_metrics_pass_promtool(daemon: DaemonProcess) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(
            "promtool missing (Debian package prometheus); installed automatically under CI"
        )
    daemon.json("GET", "/api/v1/status")
    _, raw, headers = daemon.request("GET", "/metrics", token="")
    assert headers["Content-Type"].startswith("text/plain")
    text = raw.decode()
    for name in (
        "syncd_build_info",
        "syncd_up_since_timestamp_seconds",
        "syncd_config_reloads_total",
        "syncd_store_errors_total",
        "syncd_queue_entries",
        "syncd_http_requests_total",
    ):
        assert name in text, name
    r = subprocess.run([tool, "check", "metrics"], input=raw, capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, CONFIG, notify=True, env={"WATCHDOG_USEC": "400000"})
    try:
        d.wait_ready()
        assert d.notify is not None
        d.notify.wait_for("WATCHDOG=1", count=3, timeout=10)
    finally:
        d.kill()
        if d.notify:
            d.notify.close()


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = start_daemon(tmp_path, CONFIG, port=port)
        assert d.proc.wait(30) == 2
        err = d.logs()
        assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
        demo = subprocess.run(
            [sys.executable, "-m", "syncd", "demo", "--port", str(port), "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert demo.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in demo.stderr
        assert "Traceback" not in demo.stderr


@pytest.mark.parametrize("damage", ["empty", "garbage", "foreign"])
def test_a_store_that_existed_and_is_now_unusable_stops_the_daemon(
    tmp_path: Path, damage: str
) -> None:
    d = start_daemon(tmp_path, CONFIG)
    d.wait_ready()
    assert d.stop() == 0
    store = tmp_path / "syncd-state" / "syncd.sqlite3"
    assert store.stat().st_size > 0
    for extra in ("-wal", "-shm"):
        store.with_name(store.name + extra).unlink(missing_ok=True)
    if damage == "empty":
        store.write_bytes(b"")
    elif damage == "garbage":
        store.write_bytes(b"this is not a database file, it lost its pages " * 200)
    else:
        store.unlink()
        import sqlite3

        db = sqlite3.connect(store)
        db.execute("CREATE TABLE notes (x TEXT)")
        db.commit()
        db.close()
    before = store.read_bytes()
    d2 = start_daemon(tmp_path, CONFIG, port=d.port)
    assert d2.proc.wait(30) == 4
    assert "store_unusable" in d2.logs() and str(store) in d2.logs()
    assert store.read_bytes() == before  # left as it was for the operator


def test_sighup_changing_the_store_needs_a_restart_and_keeps_the_running_one(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    assert daemon.notify is not None
    text = daemon.config.read_text()
    moved = tmp_path / "elsewhere"
    changed = text.replace(
        "[daemon]",
        '[daemon]\nstore = "mysql"\nmysql_dsn = "mysql://root@127.0.0.1:3306/nowhere"',
        1,
    ).replace("state_dir = ", f'state_dir = "{moved}"\n# was ', 1)
    daemon.config.write_text(changed)
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1")
    daemon.notify.wait_for("READY=1", count=2)
    events = [e for e in daemon.log_events() if e.get("event") == "reload_needs_restart"]
    assert (
        events and "daemon.store" in events[0]["keys"] and "daemon.state_dir" in events[0]["keys"]
    )
    _, status = daemon.json("GET", "/api/v1/status")
    assert status["store"] == "sqlite"  # the store in use, not the one the file now names
    _, raw, _ = daemon.request("GET", "/metrics", token="")
    assert (
        metric_value(raw.decode(), "syncd_config_reloads_total", '{outcome="needs_restart"}') == 1
    )
    assert not moved.exists()


def test_healthcheck_command_asks_the_configured_listen_address(daemon: DaemonProcess) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncd", "healthcheck", "--config", str(daemon.config)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    ok = check()
    assert ok.returncode == 0 and f":{daemon.port}/healthz" in ok.stdout, ok.stdout + ok.stderr
    assert daemon.stop() == 0
    down = check()
    assert down.returncode == 1 and "unhealthy" in down.stderr
