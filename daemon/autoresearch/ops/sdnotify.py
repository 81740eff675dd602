"""systemd's notify protocol (READY, STATUS, WATCHDOG, STOPPING) without a library.

``Notifier.from_environment()`` is a no-op outside systemd (no NOTIFY_SOCKET). The watchdog
interval comes from WATCHDOG_USEC; the loop pings at most every half of it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Notifier:
    address: str | None = None
    watchdog_usec: int | None = None
    sent: list[str] = field(default_factory=list)
    _last_ping: float = 0.0

    @classmethod
    def from_environment(cls) -> Notifier:
        addr = os.environ.get("NOTIFY_SOCKET") or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = int(usec) if usec and usec.isdigit() and (pid is None or pid == str(os.getpid())) else None
        return cls(address=addr, watchdog_usec=watchdog)

    @property
    def watchdog_interval_s(self) -> float | None:
        return None if not self.watchdog_usec else self.watchdog_usec / 1e6 / 2

    def send(self, message: str) -> None:
        self.sent.append(message)
        if not self.address:
            return
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract socket namespace
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(addr)
                sock.sendall(message.encode())
            except OSError:
                pass  # a notify failure must never stop the research

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def watchdog(self, force: bool = False) -> None:
        """Ping the watchdog, rate-limited to half its interval."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        now = time.monotonic()
        if force or now - self._last_ping >= interval / 2:
            self._last_ping = now
            self.send("WATCHDOG=1")
