"""CLI commands that drive the sync engine through the admin API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from syncd.cli.client import EXIT_FAILED, EXIT_OK, admin_call


def cmd_flush(args: argparse.Namespace) -> int:
    """Flush the inbound buffer now (``--wait`` prints the flush's counts)."""
    path = "/api/v1/flush" + ("?wait=true" if args.wait else "")
    body = admin_call(args, "POST", path)
    print(json.dumps(body) if args.wait else "flush requested")
    return EXIT_FAILED if args.wait and body.get("status") == "failed" else EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull one object from the CRM now."""
    path = f"/api/v1/pulls/{args.object}" + ("?wait=true" if args.wait else "")
    body = admin_call(args, "POST", path)
    print(json.dumps(body) if args.wait else f"pull of {args.object} started")
    return EXIT_FAILED if args.wait and body.get("status") == "failed" else EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause or resume one direction."""
    body = admin_call(args, "POST", f"/api/v1/sync/{args.direction}/{args.action}")
    print(f"{args.direction}: {body['status']}")
    return EXIT_OK


def register(sub: Any, add: Any) -> None:
    """Add flush, pull, pause and resume."""
    sp = add("flush", cmd_flush, "flush the inbound buffer now")
    sp.add_argument("--wait", action="store_true", help="wait for the flush and print its counts")
    sp = add("pull", cmd_pull, "pull one object from Salesforce now")
    sp.add_argument("object", choices=("contact", "lead", "account", "opportunity"))
    sp.add_argument("--wait", action="store_true", help="wait for the pull and print its counts")
    for action in ("pause", "resume"):
        sp = add(action, cmd_pause, f"{action} one direction")
        sp.add_argument("direction", choices=("inbound", "outbound"))
        sp.set_defaults(action=action)
