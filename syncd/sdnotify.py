"""systemd notification protocol: one datagram per state change to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

from syncd.config import SystemdEnv


class SystemdNotifier:
    """Sends READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1 …; a no-op outside systemd."""

    def __init__(self, env: SystemdEnv) -> None:
        self._address: str | None = env.notify_socket
        if self._address and self._address.startswith("@"):
            # Abstract-namespace sockets are spelled with a leading NUL byte.
            self._address = "\0" + self._address[1:]
        usec = env.watchdog_usec
        pid_ok = env.watchdog_pid is None or env.watchdog_pid == os.getpid()
        self.watchdog_interval: float | None = usec / 2e6 if usec and pid_ok else None

    @property
    def enabled(self) -> bool:
        """Whether a notification socket was given."""
        return self._address is not None

    def notify(self, *states: str) -> bool:
        """Send `states` (e.g. ``"READY=1"``) in one datagram; False if it could not be sent."""
        if self._address is None:
            return False
        payload = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError:
            return False
        return True
