"""Reading an export directory (``studio-query export``'s layout) back as store-shaped Arrow.

The layout is a contract (README, "How data is laid out" and the export section):
``events/trading_day=D/account_id=ID/part-0.parquet`` and the same under
``connection_log/``, Hive partitions whose values live only in the path, plus one
``manifest/trading_day=D.json`` per exported day listing every file with its row
count, size and SHA-256 and every account's chain anchor and heads.

Readers here only read the files a manifest lists (a stray file is never analysed;
``verify`` reports it) and hand back batches in the store's schema
(:data:`queries.source.EVENTS_SCHEMA` / :data:`~queries.source.CONNECTION_LOG_SCHEMA`),
so the analytics cannot tell an export from the store. What can go wrong: a missing
directory or manifest, a manifest that is not this format, a path in a manifest that
escapes the directory — each a :class:`QueryError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from recorder.errors import first_line

from .errors import QueryError
from .source import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA

FORMAT: Final = "studio-recorder-export"
FORMAT_VERSION: Final = 1
TABLES: Final = ("events", "connection_log")

#: The Hive partition schema of both tables (account ids are strings, never numbers).
PARTITION_SCHEMA: Final = pa.schema([("trading_day", pa.date32()), ("account_id", pa.string())])

_MANIFEST_RE = re.compile(r"^trading_day=(\d{4}-\d{2}-\d{2})\.json$")

# How each store column is rebuilt from an exported file's columns.
_EVENT_COLUMNS: Final = {
    "received_at_ns": ("received_at", pa.int64()),
    "server_ts_ms": ("server_ts", pa.int64()),
}
_LOG_COLUMNS: Final = {"at_ns": ("at", pa.int64())}


class ExportDir:
    """One export directory: its manifests and the files they list."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        if not self.root.is_dir():
            raise QueryError(f"export directory not found: {self.root}")
        if not (self.root / "manifest").is_dir():
            raise QueryError(f"not an export directory (no manifest/ inside): {self.root}")
        self._manifests: dict[dt.date, dict[str, Any]] = {}

    def days(self) -> list[dt.date]:
        """The exported trading days (one manifest each), sorted."""
        found = []
        for path in (self.root / "manifest").iterdir():
            match = _MANIFEST_RE.match(path.name)
            if match:
                try:
                    found.append(dt.date.fromisoformat(match.group(1)))
                except ValueError:
                    continue
        return sorted(found)

    def manifest_path(self, day: dt.date) -> Path:
        return self.root / "manifest" / f"trading_day={day.isoformat()}.json"

    def manifest(self, day: dt.date) -> dict[str, Any]:
        """The manifest of ``day``, checked for format and shape (cached)."""
        if day in self._manifests:
            return self._manifests[day]
        path = self.manifest_path(day)
        if not path.is_file():
            raise QueryError(f"no export of {day} in {self.root} ({path.name} is missing)")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise QueryError(f"{path}: unreadable manifest: {exc}") from None
        problem = _manifest_problem(document, day)
        if problem:
            raise QueryError(f"{path}: {problem}")
        manifest: dict[str, Any] = document
        self._manifests[day] = manifest
        return manifest

    def timezone(self, days: Sequence[dt.date]) -> str | None:
        """The trading-day time zone the days were exported with (one for all of them)."""
        zones = {str(self.manifest(day)["timezone"]) for day in days}
        if len(zones) > 1:
            raise QueryError(f"{self.root}: days exported with different time zones: {zones}")
        return zones.pop() if zones else None

    def accounts(self, days: Sequence[dt.date]) -> set[str]:
        """Accounts named by the manifests of ``days`` (with events or log rows)."""
        names: set[str] = set()
        for day in days:
            manifest = self.manifest(day)
            names.update(manifest["accounts"])
            names.update(str(f["account_id"]) for f in manifest["files"])
        return names

    def file(self, relative: str) -> Path:
        """The file a manifest names, refusing any path that could leave the directory."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts or "\\" in relative or not pure.parts:
            raise QueryError(f"{self.root}: manifest names a path outside the export: {relative!r}")
        return self.root.joinpath(*pure.parts)

    def files(
        self, table: str, days: Sequence[dt.date], accounts: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        """Manifest entries of ``table`` for ``days`` and ``accounts`` (all when None)."""
        wanted = None if accounts is None else set(accounts)
        return [
            entry
            for day in days
            for entry in self.manifest(day)["files"]
            if entry["table"] == table and (wanted is None or entry["account_id"] in wanted)
        ]

    def batches(
        self,
        table: str,
        days: Sequence[dt.date],
        accounts: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        msg_types: Sequence[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Rows of ``table`` as store-shaped batches (files listed by the manifests only).

        ``msg_types`` (events only) keeps frames of those types.
        """
        schema = EVENTS_SCHEMA if table == "events" else CONNECTION_LOG_SCHEMA
        entries = self.files(table, days, accounts)
        names = list(columns) if columns else schema.names
        for entry in entries:
            path = self.file(str(entry["path"]))
            if not path.is_file():
                raise QueryError(f"{self.root}: file listed in the manifest is missing: {path}")
            yield from read_file(path, self.root / table, table, names, msg_types)


def read_file(
    path: Path,
    base: Path,
    table: str,
    names: Sequence[str],
    msg_types: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """One exported file as batches in the store's schema (``names`` columns, in order).

    The partition columns come from the path (Hive partition schema, URL-decoded);
    timestamps become the store's integer epoch columns.
    """
    schema = EVENTS_SCHEMA if table == "events" else CONNECTION_LOG_SCHEMA
    renames = _EVENT_COLUMNS if table == "events" else _LOG_COLUMNS
    try:
        dataset = ds.dataset(
            [str(path)],
            format="parquet",
            partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=str(base),
        )
        projection = {}
        for name in names:
            source, target = renames.get(name, (name, schema.field(name).type))
            projection[name] = ds.field(source).cast(target)
        where = (
            None
            if msg_types is None
            else ds.field("msg_type").isin(pa.array(list(msg_types), pa.string()))
        )
        scanner = dataset.scanner(columns=projection, filter=where)
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield _conform(batch, pa.schema([schema.field(n) for n in names]))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError) as exc:
        raise QueryError(f"cannot read {path}: {first_line(exc)}") from None


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays = [
        column if column.type == field.type else pc.cast(column, field.type)
        for field, column in zip(schema, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _manifest_problem(document: object, day: dt.date) -> str | None:
    if not isinstance(document, dict):
        return "manifest is not a JSON object"
    if document.get("format") != FORMAT:
        return f"not a {FORMAT} manifest (format {document.get('format')!r})"
    if document.get("format_version") != FORMAT_VERSION:
        return f"unsupported format_version {document.get('format_version')!r}"
    if document.get("trading_day") != day.isoformat():
        return f"manifest is for trading_day {document.get('trading_day')!r}, not {day}"
    if not isinstance(document.get("timezone"), str):
        return "manifest has no timezone"
    if not isinstance(document.get("accounts"), dict):
        return "manifest has no accounts object"
    files = document.get("files")
    if not isinstance(files, list):
        return "manifest has no files list"
    for entry in files:
        if not isinstance(entry, dict) or not all(
            key in entry for key in ("path", "table", "account_id", "rows", "bytes", "sha256")
        ):
            return f"manifest file entry is incomplete: {entry!r}"
        if entry["table"] not in TABLES:
            return f"manifest file entry has unknown table {entry['table']!r}"
    return None
