"""The archive's days as export directories: fetched from S3-compatible object storage
(:class:`recorder.objectstore.ObjectArchive`) into a scratch directory, or a local archive's
own directory."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from recorder.config import ArchiveSettings
from recorder.objectstore import ObjectArchive

from .exportdir import ExportDir, manifest_day
from .layout import MANIFEST_DIR, manifest_path


def fetch_day(archive: ObjectArchive, day: dt.date, into: Path) -> bool:
    """Copy ``day`` (its manifest and every file it lists) from the bucket into the directory
    ``into``, laid out as an export; False when the archive does not hold the day."""
    relative = manifest_path(day)
    if not archive.exists(relative):
        return False
    (into / relative).parent.mkdir(parents=True, exist_ok=True)
    (into / relative).write_bytes(archive.get(relative))
    for entry in ExportDir(into).manifest(day).files:
        local = into / entry.path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(archive.get(entry.path))
    return True


def archived_copy(
    settings: ArchiveSettings, day: dt.date
) -> tuple[Path, Callable[[], None]] | None:
    """The archive's copy of ``day`` as an export directory, and what to call when done with
    it: a local archive is its own directory; a day on S3 is fetched into a scratch directory
    (removed by the call). None when the archive does not hold the day."""
    if settings.url is None:
        return None
    if not settings.is_s3:
        root = Path(settings.url)
        return (root, lambda: None) if (root / manifest_path(day)).is_file() else None
    scratch = Path(tempfile.mkdtemp(prefix="studio-archived-"))
    try:
        if not fetch_day(ObjectArchive(settings), day, scratch):
            shutil.rmtree(scratch, ignore_errors=True)
            return None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch, lambda: shutil.rmtree(scratch, ignore_errors=True)


def archived_days(settings: ArchiveSettings) -> list[dt.date]:
    """The days the archive holds (one manifest each), sorted; none without ``[archive]``."""
    if settings.url is None:
        return []
    if not settings.is_s3:
        root = Path(settings.url)
        return ExportDir(root).days() if (root / MANIFEST_DIR).is_dir() else []
    names = (key.rsplit("/", 1)[-1] for key in ObjectArchive(settings).keys(MANIFEST_DIR))
    return sorted(day for day in map(manifest_day, names) if day is not None)
