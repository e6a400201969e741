"""Where analytics read a day from: a store, or an export directory, with what they need
to know about it (time zone, liveness timeout, the configuration's accounts).

The command line builds one :class:`DataSource` from its options; Python callers build
it directly. Everything after that is the same for both kinds of source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from recorder.config import (
    DEFAULT_LIVENESS_TIMEOUT_S,
    ArchiveSettings,
    CoverageSettings,
    Settings,
)
from recorder.tradingday import DEFAULT_TIMEZONE

from .attested import NO_TRUST, Trust
from .duck import Workspace, open_export, open_store, zone
from .exportcheck import verify_export
from .exportdir import ExportDir
from .hours import TradingHours, trading_hours
from .objectstore import archived_copy
from .prunedcheck import hold_pruned_against_archive
from .source import StoreReader
from .storecheck import verify_store
from .verify import VerifyReport


@dataclass(frozen=True)
class DataSource:
    """A store (``url``) or an export directory (``export_dir``): exactly one of them.

    ``timezone`` is the store's trading-day zone (an export's manifests name their own);
    ``liveness_timeout_s`` the recorder's, from which gaps and audit judge silences and
    running sessions; ``configured`` the accounts the configuration records (reported
    even on a day without a frame of theirs).
    """

    url: str | None = None
    export_dir: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S
    configured: tuple[str, ...] = ()
    #: The public keys (and copies of notes) signed checkpoints are checked against.
    trust: Trust = NO_TRUST
    #: The hours of a trading day that must be recorded ([coverage]).
    coverage: CoverageSettings = field(default_factory=CoverageSettings)
    #: Where complete days are kept ([archive]).
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.export_dir is None):
            raise ValueError("a DataSource is a store url or an export_dir, exactly one")

    @classmethod
    def from_settings(cls, settings: Settings) -> DataSource:
        """The store a recorder configuration names, with its zone, timeout and accounts."""
        signing = settings.signing
        keys = tuple(key.text for key in signing.public_keys)
        if signing.checkpoint_url is not None:  # copies on object storage, as [archive] reaches
            trust = Trust(keys, signing.checkpoint_url,
                          replace(settings.archive, url=signing.checkpoint_url))  # fmt: skip
        else:
            copies = signing.checkpoint_dir
            trust = Trust(keys, None if copies is None else str(copies))
        return cls(
            url=settings.store.url,
            timezone=settings.recorder.trading_day_timezone,
            liveness_timeout_s=settings.recorder.liveness_timeout_s,
            configured=settings.studio.accounts,
            trust=trust,
            coverage=settings.coverage,
            archive=settings.archive,
        )

    def open(
        self,
        day: dt.date | None,
        accounts: Sequence[str] = (),
        *,
        payload: bool = True,
        notices: bool = True,
        columns: Sequence[str] | None = None,
        tap: Callable[[pa.RecordBatch], object] | None = None,
    ) -> Workspace:
        """A DuckDB workspace over ``day`` (every day when None); see :func:`open_store`
        (``tap`` sees a store's rows as they are read; an export's are not tapped)."""
        if self.export_dir is not None:
            return open_export(
                self.export_dir, day=day, accounts=accounts, payload=payload, notices=notices,
                columns=columns,
            )  # fmt: skip
        assert self.url is not None
        archived = self.archived(day)
        if archived is not None:
            directory, done = archived
            try:
                ws = open_export(
                    directory, day=day, accounts=accounts, payload=payload, notices=notices,
                    columns=columns, configured=self.configured,
                )  # fmt: skip
            except BaseException:
                done()
                raise
            ws.cleanup.append(done)
            return ws
        return open_store(
            self.url, day=day, accounts=accounts, configured=self.configured,
            timezone=self.timezone, payload=payload, notices=notices, columns=columns, tap=tap,
        )  # fmt: skip

    def open_days(self, days: Sequence[dt.date], accounts: Sequence[str] = ()) -> Workspace:
        """One workspace over several days (``sql --from/--to``) of the store or the export
        (a store's day that it no longer holds read from the archive's copy)."""
        if self.export_dir is not None:
            return open_export(self.export_dir, day=None, accounts=accounts, days=days)
        assert self.url is not None
        copies: dict[dt.date, tuple[Path, Callable[[], None]]] = {}
        try:
            for day in days:  # inside the try: a failed fetch removes the ones before it
                if (copy := self.archived(day)) is not None:
                    copies[day] = copy
            ws = open_store(self.url, day=None, accounts=accounts, configured=self.configured,
                            timezone=self.timezone, days=days,
                            archived={day: copy[0] for day, copy in copies.items()})  # fmt: skip
        except BaseException:
            for _, done in copies.values():
                done()
            raise
        ws.cleanup += [done for _, done in copies.values()]
        return ws

    def archived(self, day: dt.date | None) -> tuple[Path, Callable[[], None]] | None:
        """The archive's copy of ``day`` when the store holds no frame of it (pruned, or a
        store that never held it) and ``[archive]`` does; else None (the store answers)."""
        if day is None or self.archive.url is None or self.url is None:
            return None
        with StoreReader(self.url) as reader:
            if reader.events_extent(day) is not None:
                return None
        return archived_copy(self.archive, day)

    def hours(self, day: dt.date) -> TradingHours:
        """The hours of ``day`` that must be recorded (none on a day without a session), in
        the store's zone (an export's: its manifests')."""
        if self.export_dir is not None:
            tz = ExportDir(self.export_dir).timezone([day]) or self.timezone
        else:
            tz = self.timezone
        return trading_hours(day, zone(tz), self.coverage)

    def verify(
        self,
        day: dt.date | None = None,
        accounts: Sequence[str] = (),
        workers: int | None = None,
        *,
        loaded: Iterable[pa.RecordBatch] | None = None,
    ) -> VerifyReport:
        """The hash chains of ``day`` (every day when None) for ``accounts`` (all when empty);
        ``loaded``: the day's rows of a store, as they are read (see :func:`verify_store`)."""
        if self.export_dir is not None:
            return verify_export(
                self.export_dir, day=day, accounts=accounts or None, trust=self.trust
            )
        assert self.url is not None
        archived = self.archived(day)
        if archived is not None:
            directory, done = archived
            try:
                return verify_export(directory, day=day, accounts=accounts or None,
                                     trust=self.trust)  # fmt: skip
            finally:
                done()
        report = verify_store(
            self.url, day=day, accounts=accounts or None, configured=self.configured,
            workers=workers, trust=self.trust, loaded=loaded,
        )  # fmt: skip
        hold_pruned_against_archive(self.archive, report)
        return report
