"""Is a recorder running on this store? Asked by ``status``, which only reads the store.

A recorder holds locks while it runs, and the kernel or the server drops them when it dies
(``kill -9`` included): on SQLite an exclusive ``flock`` on ``<database>.lock`` (the file
names its pid), on PostgreSQL one advisory lock per account it records. Looking at the lock
never takes it away from a recorder: SQLite is probed with a shared, non-blocking ``flock``
released at once, PostgreSQL through ``pg_locks``.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from typing import Any, Final

import httpx
from sqlalchemy import Connection, Engine, text

from .ownership import lock_file_path, ownership_key
from .store import sqlite_path


@dataclass(frozen=True)
class Presence:
    """Whether a recorder holds the store's lock: True, False, or None when unknown."""

    running: bool | None
    how: str  # what was looked at, for people
    pid: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"running": self.running, "how": self.how, "pid": self.pid}


def sqlite_presence(database: os.PathLike[str] | str) -> Presence:
    """Whether a recorder holds the ``flock`` of the SQLite store ``database``."""
    path = lock_file_path(database)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return Presence(False, f"no lock file {path}")
    except OSError as exc:
        return Presence(None, f"cannot open {path}: {exc.strerror}")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = int(holder) if holder.isdigit() else None
            return Presence(True, f"{path} is locked", pid)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return Presence(False, f"{path} is not locked")
    finally:
        os.close(fd)


_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND ((classid::bigint << 32) | objid::bigint) "
    "= hashtextextended(current_schema() || '/' || :key, 0)"
)


def postgres_presence(connection: Connection, account_id: str) -> Presence:
    """Whether a recorder holds ``account_id``'s ownership lock on this PostgreSQL store."""
    held = connection.execute(_HELD, {"key": ownership_key(account_id)}).scalar_one()
    state = "held" if held else "not held"
    return Presence(bool(held), f"ownership lock of account {account_id} {state}")


#: How long ``status`` waits for a running recorder's ``/healthz``.
HEALTH_TIMEOUT_S: Final = 2.0


def ask_health(address: tuple[str, int] | None) -> dict[str, Any] | None:
    """The running recorder's ``/healthz`` document ([metrics] listen), None when none answers."""
    if address is None:
        return None
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    netloc = f"[{host}]" if ":" in host else host
    try:
        response = httpx.get(f"http://{netloc}:{port}/healthz", timeout=HEALTH_TIMEOUT_S)
        document = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def describe_presence(presence: Presence) -> str:
    """One line for people under the status table."""
    if presence.running:
        pid = f" (pid {presence.pid})" if presence.pid else ""
        return f"recorder: running{pid}: {presence.how}"
    if presence.running is None:
        return f"recorder: unknown whether running: {presence.how}"
    return f"recorder: not running: {presence.how}"


def store_presence(engine: Engine, accounts: tuple[str, ...]) -> dict[str, Presence]:
    """Per account, whether a recorder is recording it now."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return {account: postgres_presence(connection, account) for account in accounts}
    path = sqlite_path(engine.url)
    presence = sqlite_presence(path) if path is not None else Presence(None, "in-memory store")
    return dict.fromkeys(accounts, presence)
