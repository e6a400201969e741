"""The archive's days as export directories: a local archive's own directory, or a day on
S3-compatible object storage fetched into a scratch directory.

Reading goes through pyarrow's S3 filesystem (:class:`ArchiveReader`); writing, which needs
Object Lock headers, through boto3 (:class:`recorder.objectstore.ObjectArchive`). Both are
built from the same ``[archive]`` settings, :class:`~recorder.objectstore.S3Location` and
limits; both take credentials from the standard AWS environment variables or files (each
library's default chain), never from the configuration, and no message quotes them.

A day is fetched as its manifest lists it: the manifest first, then every file it names, a
few at a time (:data:`FETCH_WORKERS`), each streamed to disk in chunks, so that a day costs
the time of its largest files rather than the sum of every request's latency, and memory
stays bounded whatever the size of the files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from recorder.config import ArchiveSettings
from recorder.errors import first_line
from recorder.objectstore import (
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    READ_TIMEOUT_S,
    ObjectArchive,
    ObjectStoreError,
    S3Location,
    endpoint_of,
)

from .errors import QueryError
from .exportdir import ExportDir, manifest_day
from .layout import MANIFEST_DIR, manifest_path
from .manifest import Manifest, ManifestError

#: Files of a day fetched at once (one connection each).
FETCH_WORKERS: Final = 8
#: Bytes read per request while streaming an object to disk (at most this much per worker
#: is held in memory).
CHUNK_BYTES: Final = 8 * 2**20


class ArchiveReader:
    """Objects of an ``s3://bucket/prefix`` archive, read through pyarrow's S3 filesystem
    (thread-safe: one reader serves every worker of a fetch)."""

    def __init__(self, settings: ArchiveSettings) -> None:
        from pyarrow import fs

        self.location = S3Location.parse(str(settings.url))
        self.url = self.location.url
        try:
            self._fs: Any = fs.S3FileSystem(
                endpoint_override=endpoint_of(settings),
                region=settings.region or None,
                connect_timeout=CONNECT_TIMEOUT_S,
                request_timeout=READ_TIMEOUT_S,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
            )
        except (OSError, ValueError) as exc:
            raise ObjectStoreError(f"archive {self.url}: {first_line(exc)}") from None

    def download(self, relative: str, into: Path, stop: threading.Event | None = None) -> bool:
        """Stream the object at ``relative`` (to the archive's root) into the file ``into``;
        False when there is no such object. ObjectStoreError when the store refuses or
        cannot be reached; stops early (leaving a partial file) once ``stop`` is set."""
        path = f"{self.location.bucket}/{self.location.key(relative)}"
        try:
            source = self._fs.open_input_stream(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error(relative, exc) from None
        into.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = into.open("wb")
        except OSError as exc:
            source.close()
            raise QueryError(f"cannot write {into}: {first_line(exc)}") from None
        with source, out:
            while stop is None or not stop.is_set():
                try:
                    chunk = source.read(CHUNK_BYTES)
                except OSError as exc:
                    raise self._error(relative, exc) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise QueryError(f"cannot write {into}: {first_line(exc)}") from None
        return True

    def _error(self, relative: str, exc: OSError) -> ObjectStoreError:
        return ObjectStoreError(f"archive {self.url}: reading {relative}: {first_line(exc)}")


def fetch_day(
    reader: ArchiveReader, day: dt.date, into: Path, workers: int = FETCH_WORKERS
) -> bool:
    """Copy ``day`` (its manifest and every file it lists) from the bucket into the directory
    ``into``, laid out as an export; False when the archive does not hold the day.

    Only the paths the manifest lists are fetched; QueryError for one that would leave
    ``into`` or that the bucket does not hold."""
    relative = manifest_path(day)
    if not reader.download(relative, into / relative):
        return False
    export = ExportDir(into)
    listed = dict.fromkeys(entry.path for entry in export.manifest(day).files)
    wanted = [(name, export.file(name)) for name in listed]  # each path once
    if not wanted:
        return True
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=min(workers, len(wanted))) as pool:
        fetches = [pool.submit(reader.download, name, path, stop) for name, path in wanted]
        try:
            found = [fetch.result() for fetch in fetches]
        except BaseException:  # the first failure (or Ctrl-C) ends the others soon
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise
    missing = [name for (name, _), there in zip(wanted, found, strict=True) if not there]
    if missing:
        raise QueryError(f"archive {reader.url}: {day}: the manifest lists {missing[0]}, "
                         "which the bucket does not hold")  # fmt: skip
    sizes = {entry.path: entry.bytes for entry in export.manifest(day).files}
    for name, path in wanted:  # a short read is never taken for the file (verify checks more)
        if path.stat().st_size != sizes[name]:
            raise QueryError(f"archive {reader.url}: {name}: {path.stat().st_size} bytes "
                             f"fetched, the manifest says {sizes[name]}")  # fmt: skip
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
        if not fetch_day(ArchiveReader(settings), day, scratch):
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


def archive_target(settings: ArchiveSettings) -> Path | ObjectArchive:
    """Where ``[archive] url`` points: a local directory, or object storage."""
    assert settings.url is not None
    return ObjectArchive(settings) if settings.is_s3 else Path(settings.url)


def archived_manifest(target: Path | ObjectArchive, day: dt.date) -> tuple[str, Manifest] | None:
    """The SHA-256 and content of the archive's manifest of ``day`` (read alone: what it says
    is enough), None when the archive lacks one; QueryError for one that is not a manifest."""
    relative = manifest_path(day)
    if isinstance(target, Path):
        path = target / relative
        data = path.read_bytes() if path.is_file() else None
    else:
        data = target.get(relative) if target.exists(relative) else None
    if data is None:
        return None
    try:
        return hashlib.sha256(data).hexdigest(), Manifest.from_json(data.decode("utf-8"), day)
    except (UnicodeDecodeError, ManifestError) as exc:
        raise QueryError(f"archive {target}: {relative}: {exc}") from None
