"""S3-compatible object storage (AWS S3, Ceph RGW, SeaweedFS, MinIO) through boto3, for the
archive and for the copies of signed checkpoint notes: objects written with the configured
Object Lock (WORM: in ``COMPLIANCE`` mode nobody, the account's root included, can delete or
overwrite them before their retain-until date), read back whole. Credentials come from the
standard AWS environment variables or files (boto3's own chain), never from the
configuration; an empty ``endpoint_url`` is boto3's default (AWS, or ``AWS_ENDPOINT_URL``).
Errors are one-line :class:`ObjectStoreError`.

The query side reads an archived day's files through pyarrow's S3 filesystem instead
(:mod:`queries.objectstore`), from the same ``[archive]`` settings, the same
:class:`S3Location` and the same limits (:data:`CONNECT_TIMEOUT_S`, :data:`READ_TIMEOUT_S`,
:data:`MAX_ATTEMPTS`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .config import ArchiveSettings
from .errors import ConfigError, RecorderError, first_line

CONNECT_TIMEOUT_S: Final = 5
READ_TIMEOUT_S: Final = 30
#: Tries of one request (the first and two retries), in either library's standard mode.
MAX_ATTEMPTS: Final = 3


class ObjectStoreError(RecorderError):
    """The object store refused a request or could not be reached."""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``: the bucket, and the prefix every key of the archive starts with."""

    url: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """ConfigError unless ``url`` is ``s3://bucket[/prefix]``."""
        if not url.startswith("s3://"):
            raise ConfigError(f"[archive] url {url!r} is not s3://bucket/prefix")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return cls(url, bucket, prefix.strip("/"))

    def key(self, relative: str | Path) -> str:
        """The object key of a path relative to the archive's root."""
        return "/".join(part for part in (self.prefix, str(relative)) if part)


#: Where the AWS SDKs look for an endpoint when none is configured (the service's own first).
ENDPOINT_VARIABLES: Final = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def endpoint_of(settings: ArchiveSettings) -> str | None:
    """The endpoint both the writer (boto3) and the reader (pyarrow) talk to: ``endpoint_url``,
    else the AWS SDKs' environment variables (pyarrow ignores them on its own), else None
    (AWS itself)."""
    if settings.endpoint_url:
        return settings.endpoint_url
    return next((os.environ[n] for n in ENDPOINT_VARIABLES if os.environ.get(n)), None)


class ObjectArchive:
    """``s3://bucket/prefix`` of an ``[archive]``: put, get and test keys under the prefix."""

    def __init__(self, settings: ArchiveSettings) -> None:
        import boto3  # only archives on S3 pay for importing it
        from botocore.config import Config

        self.location = location = S3Location.parse(str(settings.url))
        self.url, self.bucket, self.prefix = location.url, location.bucket, location.prefix
        self.settings = settings
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_of(settings),
            region_name=settings.region or None,
            # Bounded: the writer copies checkpoint notes between commits, so an endpoint that
            # does not answer must cost it seconds, not boto3's default minutes.
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            ),
        )

    def key(self, relative: str | Path) -> str:
        """The object key of a path relative to the archive's root."""
        return self.location.key(relative)

    def exists(self, relative: str | Path) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self.key(relative))
        except _Missing:
            return False
        return True

    def keys(self, relative: str | Path) -> list[str]:
        """The keys under ``relative`` (relative to the archive's root), sorted."""
        prefix = self.key(relative).rstrip("/") + "/"
        found: list[str] = []
        cut = len(self.prefix) + 1 if self.prefix else 0
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Bucket=self.bucket, Prefix=prefix, **token)
            found += [item["Key"][cut:] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(found)
            token = {"ContinuationToken": page["NextContinuationToken"]}

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
            raise ObjectStoreError(
                f"archive {self.url}: {operation} refused: {first_line(exc)}"
            ) from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"archive {self.url}: {first_line(exc)}") from None


class _Missing(Exception):
    """The object does not exist."""
