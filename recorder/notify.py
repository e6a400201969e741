"""systemd's notification protocol (``sd_notify``), over the ``NOTIFY_SOCKET`` datagram socket.

A dozen lines of protocol do not justify a dependency: each notification is one
datagram of ``KEY=VALUE`` lines sent to the socket systemd names in
``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with ``@``).
Without that variable (not run by systemd with ``Type=notify``) every call is a
no-op. ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) say whether and how often the
watchdog expects ``WATCHDOG=1``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"


class Notifier:
    """Sends notifications to systemd, or nothing when not run under ``Type=notify``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get(NOTIFY_SOCKET_ENV, "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY="1", STATUS="…")``); False if not sent."""
        if self._socket is None or self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:  # systemd gone or socket full: never fatal for the recorder
            log.warning("sd_notify failed: %s", exc, extra={"event": "notify-failed"})
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
