"""Command line: ``syncd run``, ``check-config`` and the admin-API client commands.

Exit codes: 0 ok, 1 failed, 2 usage or invalid configuration, 3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from syncd import __version__
from syncd.config import (
    DEFAULT_CONFIG_PATH,
    ConfigInvalid,
    Settings,
    config_path,
    load_settings,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _load_or_exit(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    from syncd.daemon import Daemon
    from syncd.logging import configure_logging
    from syncd.wiring import component_factories, route_installers

    settings = _load_or_exit(args.config)
    d = settings.daemon
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
    settings = _load_or_exit(args.config)
    print(f"{config_path(args.config)}: ok (digest {settings.digest()})")
    if not args.online:
        return EXIT_OK
    return asyncio.run(_check_online(settings))


async def _check_online(settings: Settings) -> int:
    from syncd.connectors.factory import build_connectors
    from syncd.engine.setup_check import check_online
    from syncd.errors import ConfigError

    try:
        crm, hub = build_connectors(settings)
    except ConfigError as exc:
        print(f"config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        await crm.start()
        await hub.start()
        report = await check_online(settings, crm, hub)
    finally:
        await crm.close()
        await hub.close()
    for line in report.info:
        print(line)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    return EXIT_USAGE if report.problems else EXIT_OK


class AdminClient:
    """A small client of the daemon's admin API, using the config's listen address and token."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        host = settings.daemon.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        self.base = (url or f"http://{host}:{settings.daemon.port}").rstrip("/")
        token = settings.daemon.admin_token
        self.token = token.get_secret_value() if token else ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; (status, decoded JSON or text). Raises SystemExit(3) if unreachable."""
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            print(f"syncd: daemon unreachable at {self.base}: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_UNREACHABLE) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


def admin_call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """Call the admin API; exit 1 with the server's message on a non-2xx answer."""
    client = AdminClient(_load_or_exit(args.config), getattr(args, "url", None))
    status, payload = client.call(method, path, body)
    if status == 401:
        print("syncd: the daemon refused the admin token (daemon.admin_token)", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    if not 200 <= status < 300:
        msg = payload.get("error") if isinstance(payload, dict) else payload
        print(f"syncd: {method} {path} failed ({status}): {msg}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    return payload


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
    for job in body.get("jobs", []):
        print(f"job {job['id']}: next {job['next_run']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="syncd", description="hub <-> Salesforce sync daemon")
    p.add_argument("--version", action="version", version=f"syncd {__version__}")
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
    sp = add("status", cmd_status, "show the running daemon's status")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--url", help="admin API base URL (default from daemon.listen)")
    from syncd.wiring import extend_cli

    extend_cli(sub, add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``syncd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["AdminClient", "admin_call", "main"]
