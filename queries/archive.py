"""``studio-query archive``: complete trading days kept where they can stay for six years.

The nightly job: every complete trading day the store holds, up to ``through`` (default:
yesterday in the trading-day zone), that the archive does not hold is exported into it —
the export's own layout and manifest, with the day's signed checkpoint notes in the
manifest — then read back and verified there (files against the manifest, chains, and
signatures where keys are configured) before it counts as archived. A day already
archived is left alone, but held against the store: when the store's rows of that day
(per account: count, first and last id, last chain hash) are not what the archived
manifest says, it is reported loudly and never overwritten. Running it twice archives
nothing the second time.

The archive is a local directory (a mounted WORM volume, say) or S3-compatible object storage
(:mod:`queries.objectstore`): there every object is written with the configured Object Lock
(boto3), the manifest last, and the day is read back from the bucket into a scratch directory
to be verified (pyarrow's S3 filesystem, as every command that reads the archive does).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from recorder.errors import ConfigError
from recorder.objectstore import ObjectArchive

from .datasource import DataSource
from .errors import QueryError, UsageError
from .export import export_day
from .exportcheck import verify_export
from .layout import manifest_path
from .manifest import Manifest
from .objectstore import ArchiveReader, archive_target, archived_manifest, fetch_day
from .render import table
from .source import StoreReader
from .verify import VerifyReport

ARCHIVED: Final = "archived"
ALREADY: Final = "already archived"
DIFFERS: Final = "DIFFERS from the store"
FAILED: Final = "FAILED verification"
#: What needs a person (exit 1).
ALARMS: Final = (DIFFERS, FAILED)

#: ``progress(days done, days in all)``.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ArchivedDay:
    """One day's outcome."""

    trading_day: dt.date
    accounts: int
    rows: int
    status: str
    detail: str = ""


def yesterday(tz: ZoneInfo, now_ns: int | None = None) -> dt.date:
    """The last complete trading day: yesterday in the trading-day zone."""
    now = dt.datetime.fromtimestamp((now_ns or time.time_ns()) / 1e9, tz)
    return now.date() - dt.timedelta(days=1)


def archive(
    source: DataSource, through: dt.date | None = None, *, progress: Progress | None = None
) -> list[ArchivedDay]:
    """Archive every complete day of ``source``'s store up to ``through`` (see the module).
    ConfigError without ``[archive] url``; UsageError for a day not yet complete;
    QueryError for an archive that cannot be reached or written."""
    settings = source.archive
    if settings.url is None:
        raise ConfigError("no [archive] url in the configuration: where should days go?")
    if source.url is None:
        raise UsageError("archive reads the store: give --config")
    tz = ZoneInfo(source.timezone)
    last_complete = yesterday(tz)
    through = last_complete if through is None else through
    if through > last_complete:
        raise UsageError(
            f"--through {through}: a day is complete only after it ends "
            f"(the last complete day is {last_complete})"
        )
    target = archive_target(settings)
    with StoreReader(source.url) as reader:
        days = [day for day in reader.days() if day <= through]
    done: list[ArchivedDay] = []
    for n, day in enumerate(days, start=1):
        done.append(_one(source, target, day))
        if progress is not None:
            progress(n, len(days))
    return done


def _one(source: DataSource, target: Path | ObjectArchive, day: dt.date) -> ArchivedDay:
    assert source.url is not None
    if (held := archived_manifest(target, day)) is not None:  # against the store, read back
        _, archived = held
        differ = differences(source.url, day, archived)
        with archived_day(target, day) as back:
            checked = None if back is None else verify_export(back, day=day, trust=source.trust)
        problems = [] if checked is None else failures(checked)
        status = DIFFERS if differ else FAILED if problems else ALREADY
        return ArchivedDay(day, len(archived.accounts), archived.rows("events"), status,
                           "; ".join((differ or problems)[:3]))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="studio-archive-") as scratch:
        if isinstance(target, Path):
            manifest = export_day(source.url, day, target, timezone=source.timezone)
        else:
            staged = Path(scratch, "staged")
            manifest = export_day(source.url, day, staged, timezone=source.timezone)
            for name in [*(entry.path for entry in manifest.files), str(manifest_path(day))]:
                target.put(name, (staged / name).read_bytes())  # the manifest last
    with archived_day(target, day) as back:
        if back is None:
            raise QueryError(f"archive {_where(target)}: {day} is not there after writing it")
        problems = failures(verify_export(back, day=day, trust=source.trust))
    status = FAILED if problems else ARCHIVED
    return ArchivedDay(day, len(manifest.accounts), manifest.rows("events"), status,
                       "; ".join(problems[:3]))  # fmt: skip


def _where(target: Path | ObjectArchive) -> str:
    return str(target) if isinstance(target, Path) else target.url


@contextmanager
def archived_day(target: Path | ObjectArchive, day: dt.date) -> Iterator[Path | None]:
    """The archive's copy of ``day`` as an export directory, read back now (from object
    storage into a scratch directory, removed afterwards); None when the archive lacks it."""
    if isinstance(target, Path):
        yield target if (target / manifest_path(day)).is_file() else None
        return
    with tempfile.TemporaryDirectory(prefix="studio-archive-") as scratch:
        held = fetch_day(ArchiveReader(target.settings), day, Path(scratch))
        yield Path(scratch) if held else None


def failures(report: VerifyReport) -> list[str]:
    """What a verification of an archived day found, each naming its file where it has one."""
    found = [*(p for c in report.accounts for p in c.problems), *report.problems]
    return [f"{p.path}: {p.what}" if p.path else p.what for p in found]


def differences(url: str, day: dt.date, archived: Manifest) -> list[str]:
    """What the store says of ``day`` that the archived manifest does not, per account."""
    found: list[str] = []
    with StoreReader(url) as reader:
        ranges = reader.id_ranges(day=day)
        for account in sorted(set(ranges) | set(archived.accounts)):
            entry = archived.accounts.get(account)
            if account not in ranges:
                found.append(f"{account}: archived, but the store holds no frame of it that day")
                continue
            first, last, rows = ranges[account]
            if entry is None:
                found.append(f"{account}: {rows} frames in the store, none archived")
                continue
            head = reader.chain_anchor(account, last + 1)
            stored = (rows, first, last, head)
            kept = (entry.events, entry.first_id, entry.last_id, entry.last_chain_hash)
            if stored != kept:
                found.append(
                    f"{account}: store {rows} frames, ids {first}-{last}, head {head[:12]}; "
                    f"archive {entry.events} frames, ids {entry.first_id}-{entry.last_id}, "
                    f"head {(entry.last_chain_hash or '')[:12]}"
                )
    return found


def render_archive(days: list[ArchivedDay]) -> str:
    """The outcome as text: a line per day, then the alarms in full."""
    if not days:
        return "nothing to archive: the store holds no complete day up to then"
    lines = [table(["day", "accounts", "rows", "status"],
                   [(d.trading_day, d.accounts, d.rows, d.status) for d in days])]  # fmt: skip
    lines += [f"{d.trading_day}: {d.status}: {d.detail}" for d in days if d.status in ALARMS]
    return "\n".join(lines)


def as_json(days: list[ArchivedDay]) -> list[dict[str, Any]]:
    return [asdict(d) for d in days]
