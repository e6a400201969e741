"""The archive on S3-compatible object storage (AWS S3, Ceph RGW, SeaweedFS, MinIO), through
boto3: objects written with the configured Object Lock (WORM: in ``COMPLIANCE`` mode nobody,
the account's root included, can delete or overwrite them before their retain-until date),
read back whole. Credentials come from the standard AWS environment variables or files
(boto3's own chain), never from the configuration. Errors become one-line QueryErrors.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.config import ArchiveSettings
from recorder.errors import ConfigError, first_line

from .errors import QueryError
from .exportdir import ExportDir
from .layout import manifest_path


class ObjectArchive:
    """``s3://bucket/prefix`` of an ``[archive]``: put, get and test keys under the prefix."""

    def __init__(self, settings: ArchiveSettings) -> None:
        import boto3  # only archives on S3 pay for importing it
        from botocore.config import Config

        url = str(settings.url)
        if not url.startswith("s3://"):
            raise ConfigError(f"[archive] url {url!r} is not s3://bucket/prefix")
        self.url = url
        self.bucket, _, prefix = url[len("s3://") :].partition("/")
        self.prefix = prefix.strip("/")
        self.settings = settings
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def key(self, relative: str | Path) -> str:
        """The object key of a path relative to the archive's root."""
        return "/".join(part for part in (self.prefix, str(relative)) if part)

    def exists(self, relative: str | Path) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self.key(relative))
        except _Missing:
            return False
        return True

    def get(self, relative: str | Path) -> bytes:
        answer = self._call("get_object", Bucket=self.bucket, Key=self.key(relative))
        body: bytes = answer["Body"].read()
        return body

    def put(self, relative: str | Path, data: bytes, now: dt.datetime | None = None) -> None:
        """Write one object, locked as ``[archive]`` says (retain-until: now + retention)."""
        lock: dict[str, Any] = {}
        if self.settings.object_lock_mode:
            until = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(
                days=self.settings.retention_days
            )
            lock = {"ObjectLockMode": self.settings.object_lock_mode,
                    "ObjectLockRetainUntilDate": until}  # fmt: skip
        self._call("put_object", Bucket=self.bucket, Key=self.key(relative), Body=data, **lock)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise _Missing from None
            raise QueryError(
                f"archive {self.url}: {operation} refused: {first_line(exc)}"
            ) from None
        except BotoCoreError as exc:
            raise QueryError(f"archive {self.url}: {first_line(exc)}") from None


class _Missing(Exception):
    """The object does not exist."""


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
