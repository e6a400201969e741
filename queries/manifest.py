"""The manifest of an exported trading day: every file with its size and digest, and chain heads.

``DIR/manifest/trading_day=YYYY-MM-DD.json`` lets an auditor check an archived
day without the database: each file's row count, byte size and SHA-256, the
day's ``events`` id range, and per account the chain hash the day starts from
(``chain_anchor``) and the first/last chain hashes, so the day's chain can be
recomputed from the files alone (see ``recorder.chain.verify_chain``).

The document is deterministic: keys in a fixed order, accounts and files
sorted, no wall-clock time, ASCII-only JSON. Exporting the same stored day twice
gives the same bytes. Reading goes through the same model (:meth:`Manifest.from_json`),
which checks the format, its version (every version of :data:`queries.layout.LAYOUTS`:
:attr:`Manifest.layout` says where that version's files lie), the day and the shape of
every entry; values are kept as written (a verifier holds the files against them).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Final

from .layout import CURRENT, LAYOUTS, TABLES, Layout

FORMAT: Final = "studio-recorder-export"
#: The version written; every version of :data:`queries.layout.LAYOUTS` is read.
FORMAT_VERSION: Final = CURRENT.version


class ManifestError(ValueError):
    """A manifest that is not this format, or not shaped as it should be (one line)."""


def _int_or_none(value: object, what: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ManifestError(f"manifest {what} is not an integer: {value!r}")


def _str_or_none(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ManifestError(f"manifest {what} is not a string: {value!r}")


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

    @classmethod
    def from_document(cls, entry: object) -> FileEntry:
        """A file entry as read from a manifest; ManifestError when incomplete or mistyped."""
        keys = ("path", "table", "account_id", "rows", "bytes", "sha256")
        if not isinstance(entry, dict) or not all(key in entry for key in keys):
            raise ManifestError(f"manifest file entry is incomplete: {entry!r}")
        if entry["table"] not in TABLES:
            raise ManifestError(f"manifest file entry has unknown table {entry['table']!r}")
        texts = [_str_or_none(entry[k], f"file {k}") for k in ("path", "account_id", "sha256")]
        numbers = [_int_or_none(entry[k], f"file {k}") for k in ("rows", "bytes")]
        if None in texts or None in numbers:
            raise ManifestError(f"manifest file entry is incomplete: {entry!r}")
        path, account_id, sha256 = (str(t) for t in texts)
        rows, size = (int(n or 0) for n in numbers)
        return cls(path, str(entry["table"]), account_id, rows, size, sha256)


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
    #: The signed checkpoint notes whose last ``events`` row is one of the day's rows.
    checkpoints: tuple[str, ...] = ()
    #: The ``connection_log`` rows of the file whose predecessor in the account's journal
    #: chain is not the row before them in the file (its first row always), with that
    #: predecessor's hash: what the journal's chain is recomputed from. None in a manifest
    #: written before it was recorded (the journal's chain is then not checked).
    log_chain_resume: tuple[tuple[int, str], ...] | None = None

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
            "checkpoints": list(self.checkpoints),
            "log_chain_resume": None
            if self.log_chain_resume is None
            else [{"id": i, "previous_hash": h} for i, h in self.log_chain_resume],
        }

    @classmethod
    def from_document(cls, facts: object, account: str) -> AccountEntry:
        """An account entry as read from a manifest; ManifestError when mistyped."""
        if not isinstance(facts, dict):
            raise ManifestError(f"manifest entry of account {account!r} is not an object")
        resume = _resume_points(facts.get("chain_resume") or (), "chain_resume", account)
        log_points = facts.get("log_chain_resume")
        log_resume = (
            None if log_points is None else _resume_points(log_points, "log_chain_resume", account)
        )
        notes = facts.get("checkpoints") or []
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ManifestError(f"manifest checkpoints of {account!r} are not a list of notes")
        return cls(
            checkpoints=tuple(notes),
            events=_int_or_none(facts.get("events"), "events") or 0,
            connection_log=_int_or_none(facts.get("connection_log"), "connection_log") or 0,
            first_id=_int_or_none(facts.get("first_id"), "first_id"),
            last_id=_int_or_none(facts.get("last_id"), "last_id"),
            chain_anchor=_str_or_none(facts.get("chain_anchor"), "chain_anchor"),
            first_chain_hash=_str_or_none(facts.get("first_chain_hash"), "first_chain_hash"),
            last_chain_hash=_str_or_none(facts.get("last_chain_hash"), "last_chain_hash"),
            chain_resume=tuple(resume),
            log_chain_resume=None if log_resume is None else tuple(log_resume),
        )


def _resume_points(points: object, name: str, account: str) -> list[tuple[int, str]]:
    """``[{"id", "previous_hash"}, …]`` of a manifest as pairs; ManifestError when mistyped."""
    if not isinstance(points, list | tuple):
        raise ManifestError(f"manifest {name} of {account!r} is not a list")
    found = []
    for point in points:
        if not isinstance(point, dict):
            raise ManifestError(f"manifest {name} of {account!r} holds {point!r}")
        row_id = _int_or_none(point.get("id"), f"{name} id")
        previous = _str_or_none(point.get("previous_hash"), f"{name} previous_hash")
        if row_id is None or previous is None:
            raise ManifestError(f"manifest {name} of {account!r} holds {point!r}")
        found.append((row_id, previous))
    return found


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything an exported day holds; :meth:`to_json` is its file's exact content."""

    trading_day: dt.date
    timezone: str
    schema_version: str | None
    tool_version: str
    #: The store's id, which its signed checkpoints name (None: a store without one).
    store_id: str | None = None
    accounts: dict[str, AccountEntry] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)
    #: The ``id_range`` a manifest read from a file states; None: derived from ``accounts``.
    stated_id_range: tuple[int | None, int | None] | None = None
    #: The format version of the day's files (a manifest read from a file: as it states).
    format_version: int = FORMAT_VERSION

    @property
    def layout(self) -> Layout:
        """Where the day's files lie and how their columns hold the store's."""
        return LAYOUTS[self.format_version]

    @property
    def id_range(self) -> tuple[int | None, int | None]:
        """Smallest and largest exported ``events`` id (None, None for a day without events)."""
        if self.stated_id_range is not None:
            return self.stated_id_range
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
            "format_version": self.format_version,
            "trading_day": self.trading_day.isoformat(),
            "timezone": self.timezone,
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "store_id": self.store_id,
            "id_range": {"first": first, "last": last},
            "accounts": {a: self.accounts[a].document() for a in sorted(self.accounts)},
            "files": [f.document() for f in sorted(self.files, key=lambda f: f.path)],
        }

    def to_json(self) -> str:
        """The manifest file's text: indented, ASCII-only, ending with a newline."""
        return json.dumps(self.document(), indent=2, ensure_ascii=True) + "\n"

    @classmethod
    def from_json(cls, text: str, day: dt.date) -> Manifest:
        """The manifest of ``day`` from its file's text.

        Raises ManifestError (one line) for text that is not JSON, another format or
        version, another day, or entries that are missing or of the wrong type.
        """
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"unreadable manifest: {exc}") from None
        if not isinstance(document, dict):
            raise ManifestError("manifest is not a JSON object")
        if document.get("format") != FORMAT:
            raise ManifestError(f"not a {FORMAT} manifest (format {document.get('format')!r})")
        version = document.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in LAYOUTS:
            known = ", ".join(map(str, LAYOUTS))
            raise ManifestError(
                f"unsupported format_version {version!r} (this version reads {known}): "
                "read it with a newer studio-recorder"
            )
        if document.get("trading_day") != day.isoformat():
            raise ManifestError(
                f"manifest is for trading_day {document.get('trading_day')!r}, not {day}"
            )
        timezone = document.get("timezone")
        if not isinstance(timezone, str):
            raise ManifestError("manifest has no timezone")
        accounts = document.get("accounts")
        if not isinstance(accounts, dict):
            raise ManifestError("manifest has no accounts object")
        files = document.get("files")
        if not isinstance(files, list):
            raise ManifestError("manifest has no files list")
        stated = document.get("id_range")
        id_range: tuple[int | None, int | None] = (None, None)
        if isinstance(stated, dict):
            id_range = (
                _int_or_none(stated.get("first"), "id_range first"),
                _int_or_none(stated.get("last"), "id_range last"),
            )
        return cls(
            trading_day=day,
            timezone=timezone,
            schema_version=_str_or_none(document.get("schema_version"), "schema_version"),
            tool_version=str(document.get("tool_version")),
            store_id=_str_or_none(document.get("store_id"), "store_id"),
            accounts={
                str(a): AccountEntry.from_document(facts, str(a)) for a, facts in accounts.items()
            },
            files=[FileEntry.from_document(entry) for entry in files],
            stated_id_range=id_range,
            format_version=version,
        )
