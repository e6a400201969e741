"""The manifest of an exported trading day: every file with its size and digest, and chain heads.

``DIR/manifest/trading_day=YYYY-MM-DD.json`` lets an auditor check an archived
day without the database: each file's row count, byte size and SHA-256, the
day's ``events`` id range, and per account the chain hash the day starts from
(``chain_anchor``) and the first/last chain hashes, so the day's chain can be
recomputed from the files alone (see ``recorder.chain.verify_chain``).

The document is deterministic: keys in a fixed order, accounts and files
sorted, no wall-clock time, ASCII-only JSON. Exporting the same stored day twice
gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Final

FORMAT: Final = "studio-recorder-export"
FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One written Parquet file; ``path`` is relative to the export directory, ``/`` separated."""

    path: str
    table: str
    account_id: str
    rows: int
    bytes: int
    sha256: str

    def document(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "table": self.table,
            "account_id": self.account_id,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """One account's share of the day.

    The id and hash fields are None when the account has no ``events`` row that
    day (only ``connection_log`` rows: e.g. a session that never got subscribed).

    ``chain_resume`` lists the exported rows whose predecessor in the account's
    chain is not in the file: a frame of another trading day was stored between
    them (a late frame from before midnight, say). For each, ``previous_hash`` is
    the chain hash to continue from, as ``chain_anchor`` is for the first row.
    Usually empty.
    """

    events: int
    connection_log: int
    first_id: int | None = None
    last_id: int | None = None
    chain_anchor: str | None = None
    first_chain_hash: str | None = None
    last_chain_hash: str | None = None
    chain_resume: tuple[tuple[int, str], ...] = ()

    def document(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "connection_log": self.connection_log,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "chain_anchor": self.chain_anchor,
            "first_chain_hash": self.first_chain_hash,
            "last_chain_hash": self.last_chain_hash,
            "chain_resume": [{"id": i, "previous_hash": h} for i, h in self.chain_resume],
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything an exported day holds; :meth:`to_json` is its file's exact content."""

    trading_day: dt.date
    timezone: str
    schema_version: str | None
    tool_version: str
    accounts: dict[str, AccountEntry] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)

    @property
    def id_range(self) -> tuple[int | None, int | None]:
        """Smallest and largest exported ``events`` id (None, None for a day without events)."""
        firsts = [a.first_id for a in self.accounts.values() if a.first_id is not None]
        lasts = [a.last_id for a in self.accounts.values() if a.last_id is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def rows(self, table: str) -> int:
        """Rows of ``table`` over all files."""
        return sum(f.rows for f in self.files if f.table == table)

    def document(self) -> dict[str, Any]:
        first, last = self.id_range
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "trading_day": self.trading_day.isoformat(),
            "timezone": self.timezone,
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "id_range": {"first": first, "last": last},
            "accounts": {a: self.accounts[a].document() for a in sorted(self.accounts)},
            "files": [f.document() for f in sorted(self.files, key=lambda f: f.path)],
        }

    def to_json(self) -> str:
        """The manifest file's text: indented, ASCII-only, ending with a newline."""
        return json.dumps(self.document(), indent=2, ensure_ascii=True) + "\n"
