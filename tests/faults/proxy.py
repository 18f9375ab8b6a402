"""A small asyncio TCP fault proxy for the fault campaign (loopback only).

It sits between the daemon and a server (a simulator or the shared MariaDB) and can, on
command: pass traffic, *stall* it (hold every byte in both directions, keep connections
open), *reset* live connections (RST), or be *down* (reset live connections and every new
one at once). The upstream server itself is never touched.

For stalls it records, per connection, when the first held client byte arrived and when the
client gave up (closed), so a test can check that no call outlived its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StallEpisode:
    """A connection whose client bytes were held: since when, and when the client closed."""

    held_since: float
    closed_at: float | None = None


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    episode: StallEpisode | None = None
    held: list[bytes] = field(default_factory=list)
    held_down: list[bytes] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN: what a dropped middlebox looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport: Any = writer.transport
    transport.abort()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 with its own event loop thread; modes: pass, stall, down."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.stalls: list[StallEpisode] = []
        self.connections = 0
        self.resets = 0
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server = self._call(self._start())
        self.port: int = self._server.sockets[0].getsockname()[1]

    # -- control (from the test's thread) ----------------------------------------------
    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def set_mode(self, mode: str) -> None:
        """pass | stall | down; going down resets every live connection; leaving a stall
        releases the held bytes of connections that are still open."""
        assert mode in ("pass", "stall", "down"), mode

        async def apply() -> None:
            old, self.mode = self.mode, mode
            if mode == "down":
                self._reset_all()
            elif old == "stall" and mode == "pass":
                for c in list(self._conns):
                    for chunk in c.held:
                        c.upstream.write(chunk)
                    for chunk in c.held_down:
                        c.client.write(chunk)
                    c.held.clear()
                    c.held_down.clear()
                    c.episode = None

        self._call(apply())

    def reset_all(self) -> int:
        """RST every live connection now; how many."""

        async def apply() -> int:
            return self._reset_all()

        return int(self._call(apply()))

    def close(self) -> None:
        """Stop listening, drop every connection, stop the loop."""

        async def stop() -> None:
            self._server.close()
            self._reset_all()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

        with contextlib.suppress(Exception):
            self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the proxy ---------------------------------------------------------------------
    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def _reset_all(self) -> int:
        n = 0
        for c in list(self._conns):
            _abort(c.client)
            _abort(c.upstream)
            self._conns.discard(c)
            n += 1
        self.resets += n
        return n

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "down":
            self.resets += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        await asyncio.gather(
            self._pump(conn, reader, up_writer, from_client=True),
            self._pump(conn, up_reader, writer, from_client=False),
            return_exceptions=True,
        )
        self._conns.discard(conn)
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode == "stall":
                    if from_client:
                        if conn.episode is None:
                            conn.episode = StallEpisode(time.time())
                            self.stalls.append(conn.episode)
                        conn.held.append(data)
                    else:
                        conn.held_down.append(data)
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if from_client and conn.episode is not None and conn.episode.closed_at is None:
                conn.episode.closed_at = time.time()
            if from_client:
                # The client is gone: tear the pair down so the other pump ends too.
                _abort(conn.upstream)
            else:
                with contextlib.suppress(Exception):
                    writer.close()
