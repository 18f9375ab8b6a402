"""Run `syncd run` as a real subprocess: config in a temp dir, a fake NOTIFY_SOCKET, log capture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NotifyListener:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET; collects messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode().splitlines())

    def wait_for(self, message: str, count: int = 1, timeout: float = 20.0) -> None:
        """Block until `message` has been received `count` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.messages.count(message) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{message!r} x{count} not received; got {self.messages}")

    def close(self) -> None:
        """Stop listening."""
        self._stop = True
        self.sock.close()


@dataclass
class DaemonProcess:
    """A running `syncd run` subprocess and what it needs to be driven."""

    config: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    notify: NotifyListener | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP request; (status, body, headers); never raises on HTTP errors."""
        req = urllib.request.Request(self.base + path, data=body, method=method)
        tok = self.token if token is None else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Request with a JSON body; (status, decoded JSON)."""
        raw = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if raw is not None else {}
        status, data, _ = self.request(method, path, raw, headers=hdrs, **kw)
        return status, json.loads(data) if data else None

    def wait_ready(self, timeout: float = 30.0, path: str = "/readyz") -> None:
        """Block until `path` answers 200 (fails early if the process died)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                status, body, _ = self.request("GET", path, timeout=2)
                if status == 200:
                    return
                last = body
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{path} not ready in {timeout}s: {last!r}\n{self.logs()}")

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def logs(self) -> str:
        """Everything the daemon wrote to stderr/stdout so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines, decoded."""
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def start_daemon(
    tmp: Path,
    config_text: str,
    *,
    port: int | None = None,
    token: str = "admin-token-for-tests",
    notify: bool = False,
    env: dict[str, str] | None = None,
    name: str = "syncd",
) -> DaemonProcess:
    """Write `config_text` ({port}, {state}, {token} filled in) and start `syncd run` on it."""
    port = port or free_port()
    state = tmp / f"{name}-state"
    state.mkdir(exist_ok=True)
    config = tmp / f"{name}.toml"
    config.write_text(
        config_text.replace("{port}", str(port))
        .replace("{state}", str(state))
        .replace("{token}", token)
    )
    log_path = tmp / f"{name}.log"
    listener = NotifyListener(tmp / f"{name}-notify.sock") if notify else None
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    full_env.update(env or {})
    if listener is not None:
        full_env["NOTIFY_SOCKET"] = str(listener.path)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    return DaemonProcess(config, port, token, proc, log_path, listener, env or {})


BASE_CONFIG = """
[daemon]
listen = "127.0.0.1:{port}"
state_dir = "{state}"
admin_token = "{token}"
drain_timeout = 10
log_level = "info"
"""
