"""Shared helpers of the benchmarks: tables, the results log, /proc sampling, the daemon.

Every benchmark prints a table and appends one line to ``bench/results.md`` (date, commit,
machine, figures). Figures only: nothing here asserts a target.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.md"
MYSQL_ROOT = os.environ.get("SYNCD_BENCH_MYSQL", "mysql://root@127.0.0.1:3306")
_HEADER = (
    "# Benchmark results\n\n"
    "One line per run, newest last (written by `bench/*.py`).\n\n"
    "| date (UTC) | commit | machine | benchmark | figures |\n"
    "|---|---|---|---|---|\n"
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- machine and results -----------------------------------------------------------------
def commit() -> str:
    """The short commit of the working tree (``+dirty`` when it has local changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> str:
    """CPU count and memory, e.g. ``2 cpu, 23.5 GiB``."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return f"{os.cpu_count()} cpu, {mem_kb / 1024 / 1024:.1f} GiB"


def record(benchmark: str, figures: str) -> None:
    """Append one line to bench/results.md (creating it with a header)."""
    if not RESULTS.exists():
        RESULTS.write_text(_HEADER)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    line = f"| {now} | {commit()} | {machine()} | {benchmark} | {figures} |\n"
    with RESULTS.open("a") as f:
        f.write(line)
    print(f"\nappended to {RESULTS.relative_to(ROOT)}: {benchmark}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    """Print an aligned text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    for n, r in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if n and i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- /proc -------------------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def rss_mb(pid: int) -> float:
    """Current resident set size of `pid` in MiB."""
    return _status(pid).get("VmRSS", 0) / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of `pid` in MiB."""
    return _status(pid).get("VmHWM", 0) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used (from /proc/PID/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class RssSampler:
    """Samples a process's RSS in a thread; `peak` is the highest sample (MiB)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.peak = 0.0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, ValueError):
                return
            self._stop.wait(self._interval)

    def stop(self) -> float:
        """Stop sampling; the peak."""
        self._stop.set()
        self._thread.join(2)
        return self.peak


# -- HTTP and databases --------------------------------------------------------------------
def http(
    method: str,
    url: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    """One request; (status, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def timed_gets(
    url: str, n: int, token: str | None = None, budget: float = 60.0
) -> tuple[list[float], int]:
    """Up to `n` sequential GETs on one keep-alive connection, stopping after `budget`
    seconds; (latencies in ms, non-200 count)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lat: list[float] = []
    bad = 0
    deadline = time.monotonic() + budget
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append((time.perf_counter() - started) * 1000)
        bad += resp.status != 200
    conn.close()
    return lat, bad


def mariadb(*args: str, db: str | None = None) -> str:
    """Run the mariadb client as root on the local server; its output."""
    cmd = ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", "--batch", "--skip-column-names"]
    if db:
        cmd.append(db)
    return subprocess.run([*cmd, *args], check=True, capture_output=True, text=True).stdout


def fresh_mysql_database(name: str) -> str:
    """Drop and create database `name` on the local MariaDB; its DSN for syncd."""
    mariadb("-e", f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return f"{MYSQL_ROOT}/{name}"


def drop_mysql_database(name: str) -> None:
    """Drop a benchmark database."""
    mariadb("-e", f"DROP DATABASE IF EXISTS {name}")


def store_config(store: str, dsn: str | None) -> str:
    """The lines to add under [daemon] for the chosen store."""
    if store == "mysql":
        return f'store = "mysql"\nmysql_dsn = "{dsn}"\n'
    return 'store = "sqlite"\n'


# -- the daemon under test ------------------------------------------------------------------
QUIET_INBOUND = "\n[inbound]\nflush_size = 10000\nflush_interval = 86400\n"
NO_PULLS = "\n[outbound]\ninterval_hours = 24\n"


def start_bench_daemon(
    tmp: Path,
    sandboxes: Any,
    *,
    name: str,
    hub: str = "activecampaign",
    store: str = "sqlite",
    dsn: str | None = None,
    extra: str = QUIET_INBOUND + NO_PULLS,
    daemon_extra: str = "",
    log_level: str = "info",
) -> Any:
    """`syncd run` as a subprocess against the simulators (tests/e2e/daemon.py), ready."""
    from tests.e2e.daemon import BASE_CONFIG, start_daemon

    daemon = store_config(store, dsn) + daemon_extra
    cfg = (
        BASE_CONFIG.replace("drain_timeout = 10", "drain_timeout = 10\n" + daemon).replace(
            'log_level = "info"', f'log_level = "{log_level}"'
        )
        + sandboxes.config_toml(hub)
        + extra
    )
    d = start_daemon(tmp, cfg, name=name)
    d.wait_ready(timeout=60)
    return d


def sandbox_calls(sandbox: Any, runner: Any) -> dict[str, int]:
    """A copy of a simulator's request counters (read on its own loop)."""
    return dict(runner.run(lambda: dict(sandbox.requests)))


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Requests per endpoint between two snapshots (non-zero only)."""
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: n for k, n in out.items() if n}


def is_write(endpoint: str) -> bool:
    """A write call: POST/PATCH/PUT/DELETE, except auth and query-like POSTs."""
    method, _, path = endpoint.partition(" ")
    if method not in ("POST", "PATCH", "PUT", "DELETE"):
        return False
    return not any(p in path for p in ("/oauth2/", "/search", "/batch/read", "/query"))


# -- realistic limits -------------------------------------------------------------------------
def rate_limited_answers(metrics_text: str, connector: str | None = None) -> int:
    """How many 429s syncd's clients received, from a Prometheus text exposition (the
    daemon's /metrics): the ``rate_limited`` outcome of ``syncd_api_requests_total``."""
    total = 0
    for line in metrics_text.splitlines():
        if not line.startswith("syncd_api_requests_total{") or 'outcome="rate_limited"' not in line:
            continue
        if connector is not None and f'connector="{connector}"' not in line:
            continue
        total += int(float(line.rsplit(" ", 1)[1]))
    return total


def api_calls_by_endpoint(metrics_text: str, connector: str) -> dict[str, int]:
    """syncd's own tally of its calls to one vendor, by endpoint group (all outcomes), from
    the daemon's /metrics: names the purpose of calls the simulator counts under one path."""
    out: dict[str, int] = {}
    for line in metrics_text.splitlines():
        if (
            not line.startswith("syncd_api_requests_total{")
            or f'connector="{connector}"' not in line
        ):
            continue
        endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
        out[endpoint] = out.get(endpoint, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def in_process_rate_limited(connector: str | None = None) -> int:
    """The same count for syncd clients running in this process."""
    from syncd import metrics

    total = 0
    for family in metrics.API_REQUESTS.collect():
        for s in family.samples:
            if not s.name.endswith("_total") or s.labels.get("outcome") != "rate_limited":
                continue
            if connector is None or s.labels.get("connector") == connector:
                total += int(s.value)
    return total


def floor_ratio(seconds: float, floor: float) -> str:
    """``time ÷ floor`` as text (``n/a`` when the floor is 0)."""
    return f"{seconds / floor:.2f}" if floor > 0 else "n/a"
