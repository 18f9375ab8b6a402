"""``syncd dbsync list|test|run|report``: drive dbsync through the daemon's admin API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from syncd.cli.client import EXIT_FAILED, EXIT_OK, admin_call

POLL_SECONDS = 0.5
BAR_WIDTH = 30
SUMMARY_KEYS = (
    "rows_read",
    "new",
    "created",
    "updated",
    "skipped",
    "unchanged",
    "skipped_existing",
    "deleted",
    "delete_refused",
    "failed",
    "duplicates",
    "api_calls",
)


def _summary(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {counts[k]}" for k in SUMMARY_KEYS if k in counts)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the configured dbsyncs and their last run."""
    body = admin_call(args, "GET", "/api/v1/dbsyncs")
    if args.format == "json":
        print(json.dumps(body, indent=2))
        return EXIT_OK
    for d in body["dbsyncs"]:
        last = d.get("last_run")
        state = "never run"
        if d.get("running_run_id"):
            state = f"running (run {d['running_run_id']})"
        elif last:
            state = f"last run {last['id']} {last['status']} at {last['finished_at']}"
        print(f"{d['name']}: {d['table']} -> list {d['list']}  [{d['schedule']}]  {state}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    """Start a test (a run that writes nothing), follow it, print what a run would do."""
    exact = "true" if args.exact else "false"
    if args.exact:
        cost = admin_call(args, "GET", f"/api/v1/dbsyncs/{args.name}/lookup-cost")
        print(
            f"dbsync {args.name}: --exact looks the rows new to this dbsync up in the hub, at "
            f"most the {cost['rows']:,} matching rows: at most {cost['calls']:,} calls, about "
            f"{cost['minutes']:,.1f} min at the configured rate limit",
            file=sys.stderr,
        )
    started = admin_call(args, "POST", f"/api/v1/dbsyncs/{args.name}/test?exact={exact}")
    run = _follow(args, int(started["run_id"]), "test")
    if run is None:
        return EXIT_OK
    if args.format == "json":
        print(json.dumps(run, indent=2))
        return EXIT_OK if run["status"] == "succeeded" else EXIT_FAILED
    c = run["counts"]
    print(f"test {run['id']} {run['status']}: {c.get('total', 0)} matching rows")
    if args.exact:
        news = f"create {c.get('created', 0)}, update {c.get('updated', 0)}"
    else:
        news = (
            f"{c.get('new', 0)} rows new to this dbsync (created or updated: --exact tells), "
            f"update {c.get('updated', 0)}"
        )
    print(
        f"would {news}, skip {c.get('skipped', 0)}, delete {c.get('deleted', 0)}, "
        f"fail {c.get('failed', 0)} ({c.get('duplicates', 0)} duplicate rows merged)"
    )
    for f in run.get("failures", [])[:10]:
        print(f"  row {f['key']} [{', '.join(f['columns'])}]: {f['reason']}")
    if run.get("error"):
        print(f"{'error' if run['status'] != 'succeeded' else 'note'}: {run['error']}")
    return EXIT_OK if run["status"] == "succeeded" else EXIT_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a run or test going on (it is recorded interrupted)."""
    admin_call(args, "POST", f"/api/v1/runs/{args.run_id}/cancel")
    print(f"run {args.run_id}: cancelling")
    return EXIT_OK


def _bar(progress: dict[str, Any]) -> str:
    read, total = int(progress.get("rows_read", 0)), int(progress.get("total", 0))
    frac = min(read / total, 1.0) if total else 0.0
    filled = int(frac * BAR_WIDTH)
    eta = progress.get("eta_seconds")
    eta_text = f"ETA {eta:.0f}s" if isinstance(eta, int | float) else "ETA -"
    return (
        f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {read:,}/{total:,} rows "
        f"{progress.get('rows_per_second', 0):,.0f} rows/s {eta_text} "
    )


def _follow(args: argparse.Namespace, run_id: int, what: str) -> dict[str, Any] | None:
    """Follow a started run or test with a progress bar until it ends; None with
    --no-wait (its id printed)."""
    print(f"dbsync {args.name}: {what} {run_id} started", file=sys.stderr)
    if args.no_wait:
        print(run_id)
        return None
    tty = sys.stderr.isatty() or args.progress
    while True:
        run: dict[str, Any] = admin_call(args, "GET", f"/api/v1/runs/{run_id}?limit=10")
        if run["status"] != "running":
            break
        if tty and run.get("progress"):
            sys.stderr.write(_bar(run["progress"]))
            sys.stderr.flush()
        time.sleep(POLL_SECONDS)
    if tty:
        sys.stderr.write("\n")
    return run


def cmd_run(args: argparse.Namespace) -> int:
    """Start a run and follow it with a progress bar until it ends; print the summary."""
    started = admin_call(args, "POST", f"/api/v1/dbsyncs/{args.name}/run")
    run = _follow(args, int(started["run_id"]), "run")
    if run is None:
        return EXIT_OK
    print(f"run {run['id']} {run['status']}: {_summary(run['counts'])}")
    if run.get("error"):
        print(f"{'error' if run['status'] != 'succeeded' else 'note'}: {run['error']}")
    return EXIT_OK if run["status"] == "succeeded" else EXIT_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    """Print a run's report, or its failed rows as CSV."""
    if args.format == "csv":
        text = admin_call(args, "GET", f"/api/v1/runs/{args.run_id}?format=csv")
        sys.stdout.write(text if isinstance(text, str) else json.dumps(text))
        return EXIT_OK
    run = admin_call(args, "GET", f"/api/v1/runs/{args.run_id}?limit=10000")
    if args.format == "json":
        print(json.dumps(run, indent=2))
        return EXIT_OK
    print(f"run {run['id']} ({run['kind']} {run['name'] or ''}) trigger {run['trigger']}")
    print(f"status {run['status']}  started {run['started_at']}  ended {run['finished_at']}")
    print(_summary(run["counts"]))
    if run.get("error"):
        print(f"{'error' if run['status'] != 'succeeded' else 'note'}: {run['error']}")
    for f in run.get("failures", []):
        print(f"  row {f['key']} [{', '.join(f['columns'])}] {f['category']}: {f['reason']}")
    return EXIT_OK


def register(sub: Any, add: Any) -> None:
    """Add ``syncd dbsync list|test|run|report``."""
    top: argparse.ArgumentParser = add(
        "dbsync", lambda _a: _usage(top), "import MySQL tables into hub lists"
    )
    inner = top.add_subparsers(dest="dbsync_command")

    def child(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = inner.add_parser(name, help=help_)
        sp.add_argument("--config", default=argparse.SUPPRESS, help="config file")
        sp.add_argument("--url", default=argparse.SUPPRESS, help="admin API base URL")
        sp.set_defaults(func=fn)
        return sp

    top.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    sp = child("list", cmd_list, "list dbsyncs and their last run")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp = child("test", cmd_test, "count what a run would do (writes nothing)")
    sp.add_argument("name")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument(
        "--exact",
        action="store_true",
        help="look rows new to this dbsync up in the hub (created vs updated; costs calls)",
    )
    _following(sp)
    sp = child("run", cmd_run, "run now, with a progress bar, and print the summary")
    sp.add_argument("name")
    _following(sp)
    sp = child("cancel", cmd_cancel, "cancel a run or test going on (recorded interrupted)")
    sp.add_argument("run_id", type=int)
    sp = child("report", cmd_report, "print a run's report")
    sp.add_argument("run_id", type=int)
    sp.add_argument("--format", choices=("table", "json", "csv"), default="table")


def _following(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-wait", action="store_true", help="print the run id and return")
    sp.add_argument("--progress", action="store_true", help="draw the bar even without a tty")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
