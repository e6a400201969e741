"""Reading an export directory (``studio-query export``'s layout) back as store-shaped Arrow.

The layout is a contract (:mod:`queries.layout`, README "Layout"):
``events/trading_day=D/ACCOUNT.parquet`` and the same under ``connection_log/``, plus one
``manifest/trading_day=D.json`` per exported day (:class:`queries.manifest.Manifest`)
listing every file with its row count, size and SHA-256 and every account's chain
anchor and heads. Each manifest names its format version, and each day is read as its
version lays it out (:data:`queries.layout.LAYOUTS`): version 1 exports keep reading.

Readers here only read the files a manifest lists (a stray file is never analysed;
``verify`` reports it) and hand back batches in the store's schema
(:mod:`queries.contract`), so the analytics cannot tell an export from the store. What
can go wrong: a missing directory or manifest, a manifest that is not this format, a
path in a manifest that escapes the directory — each a :class:`QueryError` naming the
file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from recorder.errors import first_line

from .contract import SCHEMAS, conform, project
from .errors import QueryError
from .layout import MANIFEST_DIR, manifest_path
from .manifest import FileEntry, Manifest, ManifestError

#: The account column as read for the check that a file holds its own account's rows only.
_OWNER: Final = "__account_of_row"
_MANIFEST_RE: Final = re.compile(r"^trading_day=(\d{4}-\d{2}-\d{2})\.json$")


def manifest_day(name: str) -> dt.date | None:
    """The day a manifest's file name (``trading_day=YYYY-MM-DD.json``) names, else None."""
    match = _MANIFEST_RE.match(name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


class ExportDir:
    """One export directory: its manifests and the files they list."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        if not self.root.is_dir():
            raise QueryError(f"export directory not found: {self.root}")
        if not (self.root / MANIFEST_DIR).is_dir():
            raise QueryError(f"not an export directory (no {MANIFEST_DIR}/ inside): {self.root}")
        self._manifests: dict[dt.date, Manifest] = {}

    def days(self) -> list[dt.date]:
        """The exported trading days (one manifest each), sorted."""
        days = (manifest_day(path.name) for path in (self.root / MANIFEST_DIR).iterdir())
        return sorted(day for day in days if day is not None)

    def manifest_path(self, day: dt.date) -> Path:
        return self.root / manifest_path(day)

    def manifest(self, day: dt.date) -> Manifest:
        """The manifest of ``day``, checked for format and shape (cached)."""
        if day in self._manifests:
            return self._manifests[day]
        path = self.manifest_path(day)
        if not path.is_file():
            raise QueryError(f"no export of {day} in {self.root} ({path.name} is missing)")
        try:
            manifest = Manifest.from_json(path.read_text(encoding="utf-8"), day)
        except (OSError, UnicodeDecodeError) as exc:
            raise QueryError(f"{path}: unreadable manifest: {exc}") from None
        except ManifestError as exc:
            raise QueryError(f"{path}: {exc}") from None
        self._manifests[day] = manifest
        return manifest

    def timezone(self, days: Sequence[dt.date]) -> str | None:
        """The trading-day time zone the days were exported with (one for all of them)."""
        zones = {self.manifest(day).timezone for day in days}
        if len(zones) > 1:
            raise QueryError(f"{self.root}: days exported with different time zones: {zones}")
        return zones.pop() if zones else None

    def accounts(self, days: Sequence[dt.date]) -> set[str]:
        """Accounts named by the manifests of ``days`` (with events or log rows)."""
        names: set[str] = set()
        for day in days:
            manifest = self.manifest(day)
            names.update(manifest.accounts)
            names.update(f.account_id for f in manifest.files)
        return names

    def check_accounts(
        self, accounts: Iterable[str], days: Sequence[dt.date], configured: Iterable[str] = ()
    ) -> set[str]:
        """The accounts the manifests of ``days`` and ``configured`` know; QueryError naming
        the first of ``accounts`` that is not one of them."""
        known = self.accounts(days) | set(configured)
        for account in accounts:
            if account not in known:
                raise QueryError(f"unknown account {account!r}: not in the export {self.root}")
        return known

    def file(self, relative: str) -> Path:
        """The file a manifest names, refusing any path that could leave the directory."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts or "\\" in relative or not pure.parts:
            raise QueryError(f"{self.root}: manifest names a path outside the export: {relative!r}")
        return self.root.joinpath(*pure.parts)

    def files(
        self, table: str, days: Sequence[dt.date], accounts: Sequence[str] | None
    ) -> list[FileEntry]:
        """Manifest entries of ``table`` for ``days`` and ``accounts`` (all when None)."""
        wanted = None if accounts is None else set(accounts)
        return [
            entry
            for day in days
            for entry in self.manifest(day).files
            if entry.table == table and (wanted is None or entry.account_id in wanted)
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
        names = list(columns) if columns else SCHEMAS[table].names
        for day in days:
            for entry in self.files(table, [day], accounts):
                yield from self.read(day, entry, names, msg_types)

    def read(
        self,
        day: dt.date,
        entry: FileEntry,
        names: Sequence[str],
        msg_types: Sequence[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """One file of ``day``'s manifest as batches in the store's schema (``names``
        columns, in order), read as its format version lays it out; ``msg_types`` (events
        only) keeps frames of those types.

        The partition columns come from the path (Hive, URL-decoded); version 1's
        timestamps become the store's epoch integers; version 2 files hold the store's
        columns themselves (their derived timestamps are not read). QueryError naming
        the file when it is missing or unreadable.
        """
        path = self.file(entry.path)
        if not path.is_file():
            raise QueryError(f"{self.root}: file listed in the manifest is missing: {path}")
        layout = self.manifest(day).layout
        wanted = project(SCHEMAS[entry.table], list(names))
        try:
            dataset = ds.dataset(
                [str(path)],
                format="parquet",
                partitioning=layout.partitioning(),
                partition_base_dir=str(self.root / entry.table),
            )
            projection = {f.name: ds.field(layout.source(f.name)).cast(f.type) for f in wanted}
            # The account the manifest files it under must be the rows' own (a version 2 file
            # holds it; renaming files and manifest entries must not move rows to another).
            projection[_OWNER] = ds.field(layout.source("account_id")).cast(pa.string())
            where = (
                None
                if msg_types is None
                else ds.field("msg_type").isin(pa.array(list(msg_types), pa.string()))
            )
            for batch in dataset.scanner(columns=projection, filter=where).to_batches():
                if not batch.num_rows:
                    continue
                owners = batch.column(_OWNER)
                if not pc.all(pc.equal(owners, entry.account_id)).as_py():
                    raise QueryError(
                        f"{path}: holds rows of another account than {entry.account_id!r}, "
                        "the one the manifest files it under"
                    )
                yield conform(batch.drop_columns([_OWNER]), wanted)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError) as exc:
            raise QueryError(f"cannot read {path}: {first_line(exc)}") from None
