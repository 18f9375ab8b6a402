"""The admin API's client side: exit codes, loading the config, calling the daemon.

Exit codes: 0 ok, 1 failed (or no answer in time: the daemon is still working), 2 usage or
invalid configuration, 3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from syncd.config import ConfigInvalid, Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
ANSWER_SECONDS = 30.0  # default of `syncd --timeout`


def seconds(raw: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more (exit 2 otherwise)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {raw!r}")
    return value


def seconds_above_zero(raw: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    value = seconds(raw)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {raw!r}")
    return value


def still_working(method: str, path: str, seconds: float) -> str:
    """What to say when the daemon took the request but has not answered yet: it is busy
    (a long dbsync test, a pull), not gone; say where to watch and how to wait longer."""
    watch = "syncd dbsync list" if path.startswith("/api/v1/dbsyncs") else "syncd status"
    return (
        f"syncd: {method} {path}: no answer within {seconds:g} s; the daemon is still working "
        f"on it (see `{watch}`, or wait longer with `syncd --timeout SECONDS ...`)"
    )


def load_or_exit(path: str | None) -> Settings:
    """The settings at `path`, or exit 2 printing each problem."""
    try:
        return load_settings(path)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


class AdminClient:
    """A small client of the daemon's admin API, using the config's listen address and token."""

    def __init__(
        self, settings: Settings, url: str | None = None, timeout: float = ANSWER_SECONDS
    ) -> None:
        host = settings.daemon.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        self.base = (url or f"http://{host}:{settings.daemon.port}").rstrip("/")
        token = settings.daemon.admin_token
        self.token = token.get_secret_value() if token else ""
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; (status, decoded JSON or text). Exits 3 if the daemon is unreachable,
        1 if it took the request but did not answer within the timeout."""
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except TimeoutError:
            # Connected and sent, then silence: a timeout while connecting comes wrapped in
            # URLError below and means unreachable.
            print(still_working(method, path, self.timeout), file=sys.stderr)
            raise SystemExit(EXIT_FAILED) from None
        except (urllib.error.URLError, OSError) as exc:
            print(f"syncd: daemon unreachable at {self.base}: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_UNREACHABLE) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


def client_for(args: argparse.Namespace) -> AdminClient:
    """The admin client the command line asks for: its config, --url and --timeout."""
    return AdminClient(
        load_or_exit(args.config),
        getattr(args, "url", None),
        getattr(args, "timeout", None) or ANSWER_SECONDS,
    )


def admin_call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """Call the admin API; exit 1 with the server's message on a non-2xx answer."""
    client = client_for(args)
    status, payload = client.call(method, path, body)
    if status == 401:
        print("syncd: the daemon refused the admin token (daemon.admin_token)", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    if not 200 <= status < 300:
        msg = payload.get("error") if isinstance(payload, dict) else payload
        print(f"syncd: {method} {path} failed ({status}): {msg}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    return payload


def exit_if_taken(host: str, port: int) -> None:
    """Exit 2 with one line when the listen address cannot be bound (another process has
    the port), before anything starts: the daemon would otherwise fail half-started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            print(
                f"syncd: cannot listen on {host}:{port} (daemon.listen): {exc.strerror}",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_USAGE) from None
