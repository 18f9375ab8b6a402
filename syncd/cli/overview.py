"""CLI of the sync overview: queue list/show/retry/delete, health, export, restore-deleted.

Every command is a client of the admin API (URL and token from the config). Exit codes:
0 ok, 1 failed (including a refused token or a 409), 2 usage, 3 daemon unreachable.
Integration-wide errors are printed to stderr by every command that reads the queue.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from urllib.parse import urlencode

from syncd.cli.client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    admin_call,
    client_for,
    still_working,
)

OBJECTS = ("contact", "lead", "account", "opportunity")
STATUSES = ("pending", "processing", "processed", "error", "excluded")
CATEGORIES = (
    "validation",
    "duplicate",
    "converted_lead",
    "rejected",
    "transient",
    "auth",
    "quota",
    "mapping",
    "store",
)
COLUMNS = (
    ("id", "ID"),
    ("name", "RECORD"),
    ("email", "EMAIL"),
    ("object", "OBJECT"),
    ("direction", "DIRECTION"),
    ("status", "STATUS"),
    ("created_at", "INITIATED"),
    ("updated_at", "CHANGED"),
    ("attempts", "ATT"),
    ("error", "ERROR"),
)
# CSV keeps the parts apart (a spreadsheet filters on the category).
CSV_COLUMNS = (*COLUMNS[:-1], ("error_category", ""), ("error_message", ""))
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def moment(text: str) -> str:
    """ISO 8601, or a relative age like 30m, 2h, 7d (meaning that long ago), as ISO UTC."""
    m = _RELATIVE.match(text.strip().lower())
    if m:
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return (datetime.now(UTC) - delta).isoformat(timespec="seconds")
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give an ISO date-time (2026-01-31T08:00) or an age like 2h"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()


def print_integration_errors(errors: list[dict[str, Any]]) -> None:
    """The integration errors, prominently, on stderr."""
    for err in errors:
        print(
            f"!! INTEGRATION ERROR {err['direction']} {err['category']} since {err['since']}:"
            f" {err['message']}\n   -> {err['hint']}",
            file=sys.stderr,
        )


def table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> str:
    """Rows as a fixed-width text table."""
    cells = [[head for _, head in columns]]
    for r in rows:
        cells.append(["" if r.get(k) is None else str(r.get(k)) for k, _ in columns])
    widths = [min(max(len(row[i]) for row in cells), 40) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c[:40].ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _filters(args: argparse.Namespace) -> dict[str, str]:
    q: dict[str, str] = {}
    if getattr(args, "status", None):
        q["status"] = ",".join(args.status)
    for key in ("object", "direction", "source", "error_category"):
        if getattr(args, key, None):
            q[key] = getattr(args, key)
    if getattr(args, "since", None):
        q["created_after"] = args.since
    if getattr(args, "until", None):
        q["created_before"] = args.until
    if getattr(args, "changed_since", None):
        q["updated_after"] = args.changed_since
    if getattr(args, "search", None):
        q["q"] = args.search
    return q


def cmd_queue_list(args: argparse.Namespace) -> int:
    """List queue entries, newest first; --all follows the cursor through every page."""
    query = _filters(args)
    query["limit"] = str(args.limit)
    if args.before:
        query["before"] = str(args.before)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    while True:
        body = admin_call(args, "GET", "/api/v1/queue?" + urlencode(query))
        rows.extend(body["entries"])
        errors = body["integration_errors"]
        if not args.all or body["next_cursor"] is None:
            break
        query["before"] = str(body["next_cursor"])
    print_integration_errors(errors)
    if args.format == "json":
        print(
            json.dumps({"entries": rows, "next_cursor": None if args.all else body["next_cursor"]})
        )
    elif args.format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([k for k, _ in CSV_COLUMNS])
        for r in rows:
            w.writerow(["" if r.get(k) is None else r[k] for k, _ in CSV_COLUMNS])
    else:
        print(table([{**r, "error": error_text(r)} for r in rows], COLUMNS))
        if body["next_cursor"] is not None and not args.all:
            print(f"(more: --before {body['next_cursor']}, or --all)")
    return EXIT_OK


def cmd_queue_show(args: argparse.Namespace) -> int:
    """Show one entry in full."""
    body = admin_call(args, "GET", f"/api/v1/queue/{args.id}")
    errs = admin_call(args, "GET", "/api/v1/integration-errors")["errors"]
    print_integration_errors(errs)
    if args.format == "json":
        print(json.dumps(body, indent=2))
        return EXIT_OK
    for key, head in COLUMNS[:-1]:
        print(f"{head.lower():<12} {body.get(key) if body.get(key) is not None else ''}")
    print(f"{'source':<12} {body['source']}  event {body['event']}  key {body['record_key']}")
    if body.get("excluded_reason"):
        print(f"{'excluded':<12} {body['excluded_reason']}")
    err = body.get("error")
    if err:
        print(f"error        {err['category']} {err['code']}: {err['message']}")
        print(f"hint         {err['hint']}")
    if body["transferred_fields"]:
        target = body["transferred"].get("object", "")
        print(f"transferred to {target}:")
        for k, v in sorted(body["transferred_fields"].items()):
            print(f"  {k} = {json.dumps(v, default=str)}")
    if body["skipped_fields"]:
        print("skipped by conflict rules:")
        for k, v in sorted(body["skipped_fields"].items()):
            print(f"  {k}: {v}")
    print("payload:")
    print(json.dumps(body["payload"], indent=2, sort_keys=True))
    return EXIT_OK


def cmd_queue_retry(args: argparse.Namespace) -> int:
    """Retry entries in error: given ids, or every one matching the filters (--all-errors)."""
    if bool(args.ids) == bool(args.all_errors):
        print("syncd: give entry ids or --all-errors (not both)", file=sys.stderr)
        return EXIT_USAGE
    query = {} if args.ids else _filters(args)
    if args.now:
        query["now"] = "true"
    path = "/api/v1/queue/retry" + (f"?{urlencode(query)}" if query else "")
    out = admin_call(args, "POST", path, {"ids": args.ids} if args.ids else None)
    print(f"{out['retried']} entries back to pending (flush: {out['flush']})")
    if args.ids and out["retried"] < len(args.ids):
        print(
            f"syncd: {len(args.ids) - out['retried']} of the ids were not in error",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_queue_delete(args: argparse.Namespace) -> int:
    """Delete a pending entry (a sent one can only be removed in the target system)."""
    admin_call(args, "DELETE", f"/api/v1/queue/{args.id}")
    print(f"entry {args.id} deleted")
    return EXIT_OK


def error_text(row: dict[str, Any]) -> str | None:
    """A queue row's error as the list shows it: the category and the message."""
    cat, msg = row.get("error_category"), row.get("error_message")
    if not cat:
        return None
    return f"{cat}: {msg}" if msg else str(cat)


def print_paused(directions: dict[str, dict[str, Any]]) -> None:
    """Each direction an operator paused, prominently, on stderr."""
    for d, v in sorted(directions.items()):
        if v.get("paused"):
            print(
                f"!! {d.upper()} SYNC PAUSED by an operator: changes queue, nothing is written"
                f"\n   -> syncd resume {d}",
                file=sys.stderr,
            )


def cmd_health(args: argparse.Namespace) -> int:
    """Per-object health, paused directions, API use per connector, integration errors."""
    body = admin_call(args, "GET", "/api/v1/health")
    print_integration_errors(body["integration_errors"])
    print_paused(body.get("directions", {}))
    if args.format == "json":
        print(json.dumps(body, indent=2))
        return EXIT_OK
    rows = []
    for obj, h in body["objects"].items():
        cats = ", ".join(f"{c['category']} {c['count']}" for c in h["failing"]["by_category"])
        groups = ", ".join(f"{g} {n}" for g, n in sorted(h["excluded"]["by_group"].items()))
        rows.append(
            {
                "object": obj,
                "synced": h["synced"],
                "pending": h["pending"] + h["processing"],
                "failing": f"{h['failing']['total']}" + (f" ({cats})" if cats else ""),
                "failing_entries": h["failing"]["entries"],
                "excluded": f"{h['excluded']['total']}" + (f" ({groups})" if groups else ""),
                "excluded_entries": h["excluded"]["entries"],
            }
        )
    # Synced, failing and excluded count records; the queue entries behind them apart.
    cols = (
        ("object", "OBJECT"),
        ("synced", "SYNCED"),
        ("pending", "PENDING"),
        ("failing", "FAILING"),
        ("failing_entries", "(ENTRIES)"),
        ("excluded", "EXCLUDED"),
        ("excluded_entries", "(ENTRIES)"),
    )
    print(table(rows, cols))
    print("synced, failing and excluded count records; (entries) the queue entries")
    for obj, h in body["objects"].items():
        for c in h["failing"]["by_category"]:
            print(f"hint {obj}/{c['category']}: {c['hint']}")
    for d, v in sorted(body.get("directions", {}).items()):
        print(f"direction {d}: {'PAUSED' if v.get('paused') else 'running'}")
    for c in body["connectors"]:
        quota = f"{c['quota_used']}/{c['quota_limit']}" if c["quota_limit"] else "not reported"
        print(f"api {c['name']}: quota {quota}, {int(c['calls_since_start'])} calls since start")
    for r in body["latest_runs"]:
        what = r["kind"] + (f" {r['name']}" if r["name"] else "")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()) if v)
        error = f" ({r['error']})" if r["error"] else ""
        print(f"run {what}: {r['status']} at {r['started_at']}: {counts or '-'}{error}")
    return EXIT_OK


def stream_to(args: argparse.Namespace, path: str, out: IO[bytes]) -> int:
    """GET `path` and copy the body to `out` in chunks (exports never sit in memory)."""
    import urllib.error
    import urllib.request

    client = client_for(args)
    req = urllib.request.Request(client.base + path)
    req.add_header("Authorization", f"Bearer {client.token}")
    try:
        # The timeout bounds each read, not the whole export.
        with urllib.request.urlopen(req, timeout=client.timeout) as resp:
            while chunk := resp.read(65536):
                out.write(chunk)
    except BrokenPipeError:
        raise  # our reader went away (`| head`), not the daemon: main() ends quietly
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            print("syncd: the daemon refused the admin token (daemon.admin_token)", file=sys.stderr)
        else:
            print(f"syncd: GET {path} failed ({exc.code}): {exc.read()[:500]!r}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError:
        print(still_working("GET", path, client.timeout), file=sys.stderr)
        return EXIT_FAILED
    except (urllib.error.URLError, OSError) as exc:
        print(f"syncd: daemon unreachable at {client.base}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    out.flush()
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Export linked records (filtered) as CSV or JSON, streamed to stdout or --output."""
    q = {k: v for k, v in _filters(args).items() if k in ("object", "q")}
    if args.link_status:
        q["status"] = args.link_status
    if args.deleted_side:
        q["deleted_side"] = args.deleted_side
    if args.since:
        q["synced_after"] = args.since
    path = f"/api/v1/records/export.{args.format}" + (f"?{urlencode(q)}" if q else "")
    if args.output and args.output != "-":
        with open(args.output, "wb") as fh:
            return stream_to(args, path, fh)
    return stream_to(args, path, sys.stdout.buffer)


def cmd_restore(args: argparse.Namespace) -> int:
    """Re-create records deleted on one side; --dry-run only counts them."""
    query = {"object": args.object, "to": args.to, "dry_run": str(args.dry_run).lower()}
    if args.search:
        query["q"] = args.search
    path = "/api/v1/records/restore?" + urlencode(query)
    out = admin_call(args, "POST", path, {"ids": args.ids} if args.ids else None)
    if args.format == "json":
        print(json.dumps(out))
    elif args.dry_run:
        print(f"{out['matching']} {args.object} records deleted in the {args.to} would be restored")
    else:
        print(f"restored {out['restored']} of {out['matching']} {args.object} records")
        for f in out.get("failed", []):
            print(f"  record {f['id']}: {f['error']}", file=sys.stderr)
    return EXIT_FAILED if out.get("failed") else EXIT_OK


def _common(p: argparse.ArgumentParser, formats: tuple[str, ...] = ("table", "json")) -> None:
    p.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    p.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    if formats:
        p.add_argument("--format", choices=formats, default=formats[0])


def _queue_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", action="append", choices=STATUSES, help="repeatable")
    p.add_argument("--object", choices=OBJECTS)
    p.add_argument("--direction", choices=("inbound", "outbound", "dbsync"))
    p.add_argument("--source", help="webhook, poll, pull or a dbsync name")
    p.add_argument("--error-category", choices=CATEGORIES)
    p.add_argument("--since", type=moment, help="initiated at/after (ISO, or an age: 2h, 7d)")
    p.add_argument("--until", type=moment, help="initiated before")
    p.add_argument("--changed-since", type=moment, help="last changed at/after")
    p.add_argument("--search", help="part of the email or name")


def register(sub: Any, add: Any) -> None:
    """Add queue (list/show/retry/delete), health, export and restore-deleted."""
    qp = add("queue", None, "inspect and act on the sync queue")
    qsub = qp.add_subparsers(dest="queue_command", required=True)

    sp = qsub.add_parser("list", help="list entries, newest first")
    _common(sp, ("table", "json", "csv"))
    _queue_filters(sp)
    sp.add_argument("--limit", type=int, default=50, choices=range(1, 501), metavar="1..500")
    sp.add_argument("--before", type=int, help="cursor: entries older than this id")
    sp.add_argument("--all", action="store_true", help="follow the cursor through every page")
    sp.set_defaults(func=cmd_queue_list)

    sp = qsub.add_parser("show", help="one entry in full")
    _common(sp)
    sp.add_argument("id", type=int)
    sp.set_defaults(func=cmd_queue_show)

    sp = qsub.add_parser("retry", help="retry entries in error")
    _common(sp, ())
    sp.add_argument("ids", type=int, nargs="*", metavar="ID")
    sp.add_argument("--all-errors", action="store_true", help="every error matching filters")
    sp.add_argument("--now", action="store_true", help="flush right away")
    _queue_filters(sp)
    sp.set_defaults(func=cmd_queue_retry)

    sp = qsub.add_parser("delete", help="delete a pending entry")
    _common(sp, ())
    sp.add_argument("id", type=int)
    sp.set_defaults(func=cmd_queue_delete)

    sp = add("health", cmd_health, "sync health per object and API use")
    sp.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    sp.add_argument("--format", choices=("table", "json"), default="table")

    sp = add("export", cmd_export, "export linked records as CSV or JSON (streamed)")
    sp.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    sp.add_argument("--format", choices=("csv", "json"), default="csv")
    sp.add_argument("--object", choices=OBJECTS)
    sp.add_argument("--link-status", help="link status (linked, converted …)")
    sp.add_argument("--deleted-side", choices=("hub", "crm"))
    sp.add_argument("--since", type=moment, help="last synced at/after")
    sp.add_argument("--search", help="part of the email or name")
    sp.add_argument("--output", "-o", help="file to write (default stdout)")

    sp = add("restore-deleted", cmd_restore, "re-create records deleted on one side")
    sp.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    sp.add_argument("--object", choices=OBJECTS, required=True)
    sp.add_argument("--to", choices=("hub", "crm"), required=True, help="the side to restore on")
    sp.add_argument("--ids", type=int, nargs="+", metavar="ID", help="only these record ids")
    sp.add_argument("--search", help="only records whose email or name contains this")
    sp.add_argument("--dry-run", action="store_true", help="only count what would be restored")
    sp.add_argument("--format", choices=("table", "json"), default="table")
