"""Command line: ``syncd run``, ``check-config``, ``status``, and every command group's parser.

Exit codes are in `syncd.cli.client`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from syncd import __version__
from syncd.cli import dbsync, overview, sandbox, store, sync
from syncd.cli.client import (
    ANSWER_SECONDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AdminClient,
    admin_call,
    exit_if_taken,
    load_or_exit,
    seconds_above_zero,
)
from syncd.config import DEFAULT_CONFIG_PATH, Settings, config_path


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    from syncd.daemon import Daemon
    from syncd.logging import configure_logging
    from syncd.wiring import component_factories, route_installers

    settings = load_or_exit(args.config)
    d = settings.daemon
    exit_if_taken(d.host, d.port)
    configure_logging(d.log_level, d.log_format, settings.secret_values())

    async def main() -> int:
        daemon = Daemon(
            settings,
            config_path(args.config),
            components=component_factories(settings),
            installers=route_installers(),
        )
        return await daemon.run()

    return asyncio.run(main())


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration; print each problem as ``section.key: what is wrong``."""
    settings = load_or_exit(args.config)
    print(f"{config_path(args.config)}: ok (digest {settings.digest()})")
    if not args.online:
        return EXIT_OK
    return asyncio.run(_check_online(settings))


async def _check_online(settings: Settings) -> int:
    from syncd.errors import ConfigError, SyncdError
    from syncd.sync.setup_check import check_online
    from syncd.vendors.factory import build_connectors

    try:
        crm, hub = build_connectors(settings)
    except ConfigError as exc:
        print(f"config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        for side, conn in (("crm", crm), ("hub", hub)):
            try:
                await conn.start()
            except SyncdError as exc:
                # A login refused (or a side unreachable) is the answer: one line, exit 2.
                print(f"{side}: {exc}", file=sys.stderr)
                return EXIT_USAGE
        report = await check_online(settings, crm, hub)
    finally:
        await crm.close()
        await hub.close()
    for line in report.info:
        print(line)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    return EXIT_USAGE if report.problems else EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when the daemon at the configured listen address answers /healthz with 200
    (the container's HEALTHCHECK), 1 otherwise; one line either way."""
    import urllib.error
    import urllib.request

    client = AdminClient(load_or_exit(args.config))
    try:
        with urllib.request.urlopen(client.base + "/healthz", timeout=4) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"syncd: unhealthy: {client.base}/healthz: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"syncd: {'healthy' if ok else 'unhealthy'} ({client.base}/healthz)")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    """Print the daemon's status."""
    body = admin_call(args, "GET", "/api/v1/status")
    if args.format == "json":
        print(json.dumps(body, indent=2))
        return EXIT_OK
    print(f"syncd {body['version']}  up {body['uptime_seconds']:.0f}s  store {body['store']}")
    print(f"config digest {body['config_digest']}")
    for direction, counts in sorted(body.get("queue", {}).items()):
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"queue {direction}: {parts}")
    for direction, view in sorted(body.get("directions", {}).items()):
        state = "PAUSED by an operator" if view.get("paused") else "running"
        err = view.get("error")
        if err:
            state += f"; stopped by an integration error, {err['category']}: {err['message']}"
        print(f"direction {direction}: {state}")
    for job in body.get("jobs", []):
        print(f"job {job['id']}: next {job['next_run']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="syncd", description="hub <-> Salesforce sync daemon")
    p.add_argument("--version", action="version", version=f"syncd {__version__}")
    p.add_argument(
        "--timeout",
        type=seconds_above_zero,
        default=ANSWER_SECONDS,
        metavar="SECONDS",
        help=f"how long admin commands wait for the daemon's answer (default {ANSWER_SECONDS:g})",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--config", help=f"config file (default $SYNCD_CONFIG, else {DEFAULT_CONFIG_PATH})"
        )
        sp.set_defaults(func=fn)
        return sp

    add("run", cmd_run, "run the daemon in the foreground")
    sp = add("check-config", cmd_check_config, "validate the configuration")
    sp.add_argument(
        "--online", action="store_true", help="also connect to both sides and check the mapping"
    )
    add("healthcheck", cmd_healthcheck, "exit 0 if the daemon answers /healthz (containers)")
    sp = add("status", cmd_status, "show the running daemon's status")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    for group in (sync, overview, dbsync, sandbox, store):
        group.register(sub, add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``syncd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader gone away is met here, not at exit
        return code
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        # `syncd ... | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's last flush does not complain either, and end quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main"]
