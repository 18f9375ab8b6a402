"""The CLI's words when the daemon is slow, gone, or its reader is: a real `syncd` process
against real sockets on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

STATUS = {
    "version": "test",
    "uptime_seconds": 1.0,
    "store": "sqlite",
    "config_digest": "x",
    "queue": {},
    "jobs": [{"id": f"job-{i}", "next_run": "soon " + "x" * 200} for i in range(2000)],
}


def syncd(*argv: str, config: Path, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", *argv, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f'[daemon]\nadmin_token = "t0ken-for-tests"\nstate_dir = "{tmp_path}"\n')
    return path


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts and reads the request, then never answers (a busy daemon)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()
    for conn in held:
        conn.close()


@pytest.fixture
def talkative() -> Iterator[str]:
    """An admin API whose status answer is far bigger than a pipe's buffer."""
    body = json.dumps(STATUS).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_daemon_that_has_not_answered_yet_is_still_working_not_unreachable(
    config: Path, silent: str
) -> None:
    proc = syncd("--timeout", "1", "dbsync", "test", "customers", "--url", silent, config=config)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "still working" in text and "syncd dbsync list" in text, text
    assert "unreachable" not in text and "Traceback" not in text, text


def test_a_daemon_that_is_not_there_is_unreachable(config: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = syncd("status", "--url", f"http://127.0.0.1:{port}", config=config)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert b"daemon unreachable" in err


def test_a_reader_that_goes_away_ends_the_cli_quietly(config: Path, talkative: str) -> None:
    # `syncd status --format json | head -1`: the reader closes after one line.
    proc = syncd("status", "--format", "table", "--url", talkative, config=config)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=30)
    assert first.startswith(b"syncd test"), first
    assert err == b"", err.decode()
    assert proc.returncode == 0
