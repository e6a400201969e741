"""Running under systemd: the notification protocol, what the recorder tells it, its unit.

* ``sd_notify`` (:class:`Notifier`): a dozen lines of protocol do not justify a
  dependency. Each notification is one datagram of ``KEY=VALUE`` lines sent to the
  socket systemd names in ``$NOTIFY_SOCKET`` (a path, or an abstract name when it
  starts with ``@``). Without that variable (not run by systemd with
  ``Type=notify``) every call is a no-op. ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``)
  say whether and how often the watchdog expects ``WATCHDOG=1``.
* What the recorder says (:func:`notify_systemd`): ``READY=1`` once the store is
  open and every account has had its first subscribe attempt; ``STATUS=`` a
  one-line summary every few seconds; ``WATCHDOG=1`` at half the watchdog
  interval, but only while the writer is not hung (so a hung writer gets the
  service restarted); ``STOPPING=1`` when shutdown begins.
* The unit (:func:`render_unit`): shipped as package data, filled in for this
  installation.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Final

import trio

from .health import writer_hung
from .state import RecorderState

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
STATUS_EVERY_S: Final = 5.0
DEFAULT_CONFIG: Final = "/etc/studio-recorder/recorder.toml"
DEFAULT_SECRET: Final = "/etc/studio-recorder/client-secret"
DEFAULT_SIGNING_KEY: Final = "/etc/studio-recorder/signing-key"
#: The system user the service (and the evening job) runs as; created once with ``useradd``.
DEFAULT_USER: Final = "studio-recorder"
#: Where an installation keeps the README (the wheel's shared data): the unit's Documentation=.
README_DATA_PATH: Final = "share/doc/studio-recorder/README.md"
#: Paths the unit hides from the service (PrivateTmp=yes, ProtectHome=yes).
HIDDEN_PREFIXES: Final = ("/tmp/", "/var/tmp/", "/home/", "/root/", "/run/user/")  # noqa: S108


# --- sd_notify: the protocol ----------------------------------------------------------------


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


# --- what the recorder tells systemd --------------------------------------------------------


def status_line(state: RecorderState, frames_per_s: float) -> str:
    subscribed = sum(1 for a in state.accounts.values() if a.subscribed)
    line = f"{subscribed}/{len(state.accounts)} accounts subscribed, {frames_per_s:.0f} frames/s"
    line += f", {state.writer.rows_written} rows written"
    if state.writer.failing:
        line += f", store failing: {state.writer.failing}"
    return line


async def notify_systemd(
    state: RecorderState, notifier: Notifier, ready: trio.Event, stopping: trio.Event
) -> None:
    """Run until cancelled: READY, then STATUS and WATCHDOG pings; STOPPING on shutdown."""
    await ready.wait()
    notifier.notify(READY="1", STATUS=status_line(state, 0.0))
    interval = STATUS_EVERY_S
    if notifier.watchdog_s is not None:
        interval = min(interval, notifier.watchdog_s / 2)
    last_frames = sum(a.frames for a in state.accounts.values())
    last_at = trio.current_time()
    next_status = last_at + STATUS_EVERY_S
    async with trio.open_nursery() as nursery:

        async def announce_stop() -> None:
            await stopping.wait()
            notifier.notify(STOPPING="1", STATUS="stopping: committing what was read")

        nursery.start_soon(announce_stop)
        while not stopping.is_set():
            await trio.sleep(interval)
            now = trio.current_time()
            if notifier.watchdog_s is not None and writer_hung(state, time.monotonic()) is None:
                notifier.notify(WATCHDOG="1")
            if now >= next_status:
                frames = sum(a.frames for a in state.accounts.values())
                rate = (frames - last_frames) / max(now - last_at, 1e-9)
                notifier.notify(STATUS=status_line(state, rate))
                last_frames, last_at, next_status = frames, now, now + STATUS_EVERY_S


# --- the unit file --------------------------------------------------------------------------


def executable() -> str:
    """Absolute path of the ``studio-recorder`` script of this installation."""
    beside = Path(sys.executable).parent / "studio-recorder"
    if beside.is_file():
        return str(beside)
    found = shutil.which("studio-recorder")
    return str(Path(found).resolve()) if found else str(beside)


def documentation() -> str:
    """``file://`` URL of this installation's README (its manual), for ``Documentation=``."""
    installed = Path(sys.prefix) / README_DATA_PATH
    source = Path(__file__).resolve().parents[1] / "README.md"  # an editable install
    return (installed if installed.is_file() or not source.is_file() else source).as_uri()


def hidden_paths(paths: Mapping[str, str]) -> list[str]:
    """One warning per path the unit's sandbox hides from the service (PrivateTmp, ProtectHome)."""
    return [
        f"{what} {path} is under {prefix.rstrip('/')}, which the unit hides from the service "
        "(PrivateTmp=yes, ProtectHome=yes): install and keep files elsewhere, e.g. /opt, /etc"
        for what, path in paths.items()
        for prefix in HIDDEN_PREFIXES
        if path.startswith(prefix)
    ]


def render_unit(
    *,
    user: str = DEFAULT_USER,
    config: str = DEFAULT_CONFIG,
    secret_file: str = DEFAULT_SECRET,
    signing_key_file: str = DEFAULT_SIGNING_KEY,
    exe: str | None = None,
) -> str:
    """The unit file text; the service runs as the system user ``user``."""
    template = files("recorder").joinpath("data/studio-recorder.service.in").read_text()
    return (
        template.replace("@USER@", user)
        .replace("@DOCUMENTATION@", documentation())
        .replace("@EXE@", exe or executable())
        .replace("@CONFIG@", config)
        .replace("@SECRET_PATH@", secret_file)
        .replace("@SIGNING_KEY_PATH@", signing_key_file)
    )
