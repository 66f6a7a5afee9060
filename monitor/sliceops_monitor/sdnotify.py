"""systemd's notify protocol, written out: one datagram per message to $NOTIFY_SOCKET
(READY=1 at start, WATCHDOG=1 each cycle), so no libsystemd binding is needed."""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when started by systemd with Type=notify; otherwise does nothing."""

    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self.address = address
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        # WATCHDOG_PID names the process that must ping; a child that inherited the
        # environment must not.
        self.watchdog_usec = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, status: str = "") -> None:
        """Feed the watchdog (if systemd armed one) and publish the status line."""
        lines = []
        if self.watchdog_usec is not None:
            lines.append("WATCHDOG=1")
        if status:
            lines.append(f"STATUS={status}")
        if lines:
            self.notify("\n".join(lines))

    def reloading(self) -> None:
        self.notify("RELOADING=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
