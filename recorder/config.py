"""Configuration: a TOML file validated into typed, frozen settings.

The file is named by ``--config PATH`` or the environment variable
``STUDIO_RECORDER_CONFIG``. Every problem becomes one :class:`ConfigError` line
naming the file and the key. The client secret never comes from the TOML: only
from ``STUDIO_CLIENT_SECRET`` or the file named by ``client_secret_file``
(relative names are looked up in ``$CREDENTIALS_DIRECTORY`` when systemd sets it).
The secret file is read only when credentials are needed
(:meth:`Settings.require_credentials`, i.e. by ``studio-recorder run``), so
commands that only read the store work without access to it. The same holds for
the checkpoint signing key, ``[signing] key_file`` (:meth:`Settings.require_signer`);
the verifier keys of ``[signing] public_keys`` are public and checked at load. Things
that are allowed but unwise (a config file readable by others that names a secret
file, a secret or key file readable by others) become :attr:`Settings.warnings`, which
the command lines print.

Each table is a :class:`msgspec.Struct` (types, bounds, unknown keys); what types cannot
say (URL schemes, time zones, files) is checked after; both speak in the same words.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .configtypes import Invalid, Table, finite, in_our_words
from .credentials import Secret, permission_warnings, read_secret_file
from .errors import ConfigError
from .signing import Signer, SigningError, Verifier, load_signer, parse_verifier
from .store import sqlite_path
from .tradingday import DEFAULT_TIMEZONE, UnknownZone, zone

CONFIG_ENV: Final = "STUDIO_RECORDER_CONFIG"
CLIENT_ID_ENV: Final = "STUDIO_CLIENT_ID"
CLIENT_SECRET_ENV: Final = "STUDIO_CLIENT_SECRET"
CREDENTIALS_DIR_ENV: Final = "CREDENTIALS_DIRECTORY"

ENVIRONMENT_URLS: Final = {
    "production": "wss://api.clearstreet.io/studio/v2/ws",
    "sandbox": "wss://sandbox-api.clearstreet.io/studio/v2/ws",
}
DEFAULT_TOKEN_URL: Final = "https://auth.clearstreet.io/oauth/token"
DEFAULT_AUDIENCE: Final = "https://api.clearstreet.io"
DEFAULT_STORE_URL: Final = "sqlite:///studio-events.db"
DEFAULT_METRICS_LISTEN: Final = "127.0.0.1:9464"
#: No frame at all (heartbeats included) for this long: the session is dead, reconnect.
DEFAULT_LIVENESS_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class StudioSettings:
    url: str
    token_url: str
    audience: str
    client_id: str | None
    client_secret: Secret | None = field(repr=False)  # from the environment only
    accounts: tuple[str, ...]
    ca_file: Path | None = None
    #: Where the secret is read from when needed (resolved; not read at load time).
    client_secret_file: Path | None = None


@dataclass(frozen=True)
class StoreSettings:
    url: str = DEFAULT_STORE_URL


WriterMode = Literal["process", "thread"]


@dataclass(frozen=True)
class RecorderSettings:
    trading_day_timezone: str = DEFAULT_TIMEZONE
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S
    subscribe_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    batch_max_rows: int = 1000
    batch_max_delay_ms: float = 20.0
    queue_max_frames: int = 100_000
    #: ``process``: the writer runs in a process of its own (its own interpreter, so a
    #: second core); ``thread``: in a worker thread of the recorder's process (one core;
    #: what in-process tests, which drive time with a fake clock, need).
    writer: WriterMode = "process"

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.trading_day_timezone)


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = DEFAULT_METRICS_LISTEN

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on, or None when metrics are disabled."""
        return _split_listen(self.listen) if self.listen else None


@dataclass(frozen=True)
class SigningSettings:
    """``[signing]``: the key checkpoints are signed with, how often, where copies go, and
    the verifier keys that stores and exports are checked against."""

    #: The private key (resolved; read only by :meth:`Settings.require_signer`).
    key_file: Path | None = None
    checkpoint_interval_s: float = 60.0
    checkpoint_dir: Path | None = None
    public_keys: tuple[Verifier, ...] = ()
    #: ``checkpoint_dir = "s3://bucket/prefix"``: the copies go to object storage (reached
    #: and locked as ``[archive]`` says) instead of a directory.
    checkpoint_url: str | None = None


@dataclass(frozen=True)
class CoverageSettings:
    """``[coverage]``: the hours of each trading day of ``calendar`` that must be recorded
    (``hours``, ``HH:MM-HH:MM`` in the trading-day zone) and how many seconds of them may go
    unrecorded per account (see :mod:`queries.hours`)."""

    calendar: str = "XNYS"
    hours: str = "04:00-20:00"
    max_uncovered_s: float = 60.0


@dataclass(frozen=True)
class ArchiveSettings:
    """``[archive]``: where complete trading days are kept for six years (``studio-query
    archive``): ``url`` a local directory or ``s3://bucket/prefix`` (with ``endpoint_url``,
    ``region``, ``object_lock_mode`` and ``retention_days`` for S3; credentials come from the
    standard AWS environment variables or files, never from this file)."""

    url: str | None = None
    endpoint_url: str = ""
    region: str = ""
    object_lock_mode: str = "COMPLIANCE"
    retention_days: int = 2192  # six years and a leap day or two

    @property
    def is_s3(self) -> bool:
        return bool(self.url) and str(self.url).startswith("s3://")


#: The Object Lock modes S3 knows ("" writes objects without a lock).
OBJECT_LOCK_MODES: Final = ("COMPLIANCE", "GOVERNANCE", "")


def parse_hours(text: str) -> tuple[dt.time, dt.time]:
    """``"04:00-20:00"`` → (04:00, 20:00); ValueError unless two HH:MM times, in order."""
    try:
        first, last = (dt.time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"hours must be HH:MM-HH:MM (got {text!r})") from None
    if not first < last:
        raise ValueError(f"hours must end after they start (got {text!r})")
    return first, last


@dataclass(frozen=True)
class Settings:
    studio: StudioSettings
    store: StoreSettings
    recorder: RecorderSettings
    metrics: MetricsSettings
    signing: SigningSettings = field(default_factory=SigningSettings)
    coverage: CoverageSettings = field(default_factory=CoverageSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    path: Path | None = None
    #: One line each: allowed but unwise settings, for the command line to print.
    warnings: tuple[str, ...] = ()

    def require_credentials(self) -> tuple[str, Secret]:
        """``(client_id, client_secret)``, or ConfigError naming what is missing.

        Reads ``[studio] client_secret_file`` now (unless ``STUDIO_CLIENT_SECRET``
        is set): a missing, unreadable or empty file is a ConfigError naming the
        key and the file.
        """
        where = self.path or "<config>"
        if not self.studio.client_id:
            raise ConfigError(f"{where}: [studio] client_id is not set (or set {CLIENT_ID_ENV})")
        if self.studio.client_secret is not None:
            return self.studio.client_id, self.studio.client_secret
        if self.studio.client_secret_file is None:
            raise ConfigError(
                f"{where}: no client secret: set {CLIENT_SECRET_ENV} or [studio] client_secret_file"
            )
        return self.studio.client_id, read_secret_file(self.studio.client_secret_file, where)

    def require_signer(self) -> Signer | None:
        """The checkpoint signing key of ``[signing] key_file``, read now; None without one.

        A missing, unreadable or malformed key file is a ConfigError naming the key and
        the file (never the file's content).
        """
        key_file = self.signing.key_file
        if key_file is None:
            return None
        try:
            return load_signer(key_file)
        except SigningError as exc:
            hint = "" if key_file.exists() else " (create one with `studio-recorder keygen`)"
            raise ConfigError(
                f"{self.path or '<config>'}: [signing] key_file: {exc}{hint}"
            ) from None


class _Studio(Table):
    """None: not in the file (``url`` then comes from ``environment``)."""

    accounts: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)] | None = None
    url: str | None = None
    environment: str | None = None
    token_url: str = DEFAULT_TOKEN_URL
    audience: str = DEFAULT_AUDIENCE
    client_id: str | None = None
    client_secret_file: str | None = None  # the secret itself has no key: never in the TOML
    ca_file: str | None = None


class _Store(Table):
    url: str | None = None  # None: DEFAULT_STORE_URL (in the working directory)


class _Recorder(Table):
    """RecorderSettings's fields; the defaults are its own."""

    trading_day_timezone: str = RecorderSettings.trading_day_timezone
    liveness_timeout_s: Annotated[float, finite(0.1)] = RecorderSettings.liveness_timeout_s
    subscribe_timeout_s: Annotated[float, finite(0.1)] = RecorderSettings.subscribe_timeout_s
    backoff_initial_s: Annotated[float, finite(0.01)] = RecorderSettings.backoff_initial_s
    backoff_max_s: Annotated[float, finite(0.01)] = RecorderSettings.backoff_max_s
    batch_max_rows: Annotated[int, msgspec.Meta(ge=1)] = RecorderSettings.batch_max_rows
    batch_max_delay_ms: Annotated[float, finite(0)] = RecorderSettings.batch_max_delay_ms
    queue_max_frames: Annotated[int, msgspec.Meta(ge=1)] = RecorderSettings.queue_max_frames
    writer: WriterMode = RecorderSettings.writer


class _Metrics(Table):
    listen: str = DEFAULT_METRICS_LISTEN


class _Signing(Table):
    """SigningSettings's fields; the defaults are its own."""

    key_file: str | None = None  # the key itself has no key: never in the TOML
    checkpoint_interval_s: Annotated[float, finite(1)] = SigningSettings.checkpoint_interval_s
    checkpoint_dir: str | None = None
    public_keys: tuple[str, ...] = ()


class _Coverage(Table):
    """CoverageSettings's fields; the defaults are its own."""

    calendar: str = CoverageSettings.calendar
    hours: str = CoverageSettings.hours
    max_uncovered_s: Annotated[float, finite(0)] = CoverageSettings.max_uncovered_s


class _Archive(Table):
    """ArchiveSettings's fields; the defaults are its own."""

    url: str | None = None
    endpoint_url: str = ArchiveSettings.endpoint_url
    region: str = ArchiveSettings.region
    object_lock_mode: str = ArchiveSettings.object_lock_mode
    retention_days: Annotated[int, msgspec.Meta(ge=1)] = ArchiveSettings.retention_days


class _Document(Table):
    """The whole file. Types are strict: a float is not an integer, a boolean not a number."""

    studio: _Studio = msgspec.field(default_factory=_Studio)
    store: _Store = msgspec.field(default_factory=_Store)
    recorder: _Recorder = msgspec.field(default_factory=_Recorder)
    metrics: _Metrics = msgspec.field(default_factory=_Metrics)
    signing: _Signing = msgspec.field(default_factory=_Signing)
    coverage: _Coverage = msgspec.field(default_factory=_Coverage)
    archive: _Archive = msgspec.field(default_factory=_Archive)


def config_path_from(option: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The config file named by ``--config`` or ``$STUDIO_RECORDER_CONFIG``."""
    if option:
        return Path(option)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    raise ConfigError(f"no configuration: pass --config PATH or set {CONFIG_ENV}")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the TOML file at ``path``; secrets are read from ``env``/files.

    Raises ConfigError (one line naming the file and key) for a missing or
    unreadable file, bad TOML, unknown keys, wrong types or impossible values.
    """
    env = os.environ if env is None else env
    path = Path(path)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(document, env, path)


def parse_config(document: Mapping[str, Any], env: Mapping[str, str], path: Path) -> Settings:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    try:
        config = msgspec.convert(document, _Document)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {in_our_words(str(exc), document)}") from None
    try:
        studio = _studio(config.studio, env, path.parent)
        store, recorder = _store(config.store, path.parent.absolute()), _recorder(config.recorder)
        metrics = _metrics(config.metrics)
        signing = _signing(config.signing, env, path.parent)
        coverage = _coverage(config.coverage)
        archive = _archive(config.archive, path.parent.absolute())
    except Invalid as exc:
        raise ConfigError(f"{path}: {exc}") from None
    credentials_dir = env.get(CREDENTIALS_DIR_ENV)
    warnings = permission_warnings(
        path, studio.client_secret_file, signing.key_file, credentials_dir
    )
    return Settings(
        studio=studio,
        store=store,
        recorder=recorder,
        metrics=metrics,
        signing=signing,
        coverage=coverage,
        archive=archive,
        path=path,
        warnings=warnings,
    )


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(key: str, url: str, secure: str, plain: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == secure and parts.hostname:
        return url
    if parts.scheme == plain and parts.hostname:
        if is_loopback_host(parts.hostname):
            return url
        raise Invalid(
            f"[studio] {key} uses {plain}:// for a non-loopback host; use {secure}:// ({url})"
        )
    raise Invalid(f"[studio] {key} must be a {secure}:// URL (got {url!r})")


def _studio(studio: _Studio, env: Mapping[str, str], directory: Path) -> StudioSettings:
    """Relative file names are looked up in ``directory``, the config file's."""
    url, environment = studio.url, studio.environment
    if url is not None and environment is not None:
        raise Invalid("[studio] environment cannot be combined with [studio] url")
    if url is None:
        environment = environment or "production"
        if environment not in ENVIRONMENT_URLS:
            names = " or ".join(repr(name) for name in ENVIRONMENT_URLS)
            raise Invalid(f"[studio] environment must be {names} (got {environment!r})")
        url = ENVIRONMENT_URLS[environment]
    url = _checked_url("url", url, "wss", "ws")
    token_url = _checked_url("token_url", studio.token_url or DEFAULT_TOKEN_URL, "https", "http")

    accounts = studio.accounts
    if accounts is None:
        raise Invalid("[studio] accounts is missing: list the account ids to record")
    for account in accounts:
        if not account or account != account.strip():
            raise Invalid(f"[studio] accounts entries must be non-empty strings (got {account!r})")
    if len(set(accounts)) != len(accounts):
        raise Invalid("[studio] accounts lists an account twice")

    # An absolute name stays as it is; the secret file is not read here (require_credentials).
    ca_file = directory / studio.ca_file if studio.ca_file else None
    if ca_file and not ca_file.is_file():
        raise Invalid(f"[studio] ca_file does not name a readable file ({ca_file})")
    return StudioSettings(
        url=url,
        token_url=token_url,
        audience=studio.audience or DEFAULT_AUDIENCE,
        client_id=env.get(CLIENT_ID_ENV) or studio.client_id or None,
        client_secret=Secret(env[CLIENT_SECRET_ENV]) if env.get(CLIENT_SECRET_ENV) else None,
        accounts=accounts,
        ca_file=ca_file,
        client_secret_file=_credential_file(studio.client_secret_file, env, directory),
    )


def _credential_file(name: str | None, env: Mapping[str, str], directory: Path) -> Path | None:
    """Where a secret file named in the config is: a relative ``name`` in
    ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) when set, else in
    ``directory`` (the config file's). Not read here."""
    return Path(env.get(CREDENTIALS_DIR_ENV) or directory) / name if name else None


def _signing(signing: _Signing, env: Mapping[str, str], directory: Path) -> SigningSettings:
    """Paths resolved (the key file like the client secret file); verifier keys parsed."""
    public_keys = []
    for number, entry in enumerate(signing.public_keys, 1):
        try:
            public_keys.append(parse_verifier(entry, relative_to=directory))
        except SigningError as exc:
            raise Invalid(f"[signing] public_keys entry {number}: {exc}") from None
    checkpoint_dir, checkpoint_url = signing.checkpoint_dir, None
    if checkpoint_dir and checkpoint_dir.startswith("s3://"):
        if not checkpoint_dir[len("s3://") :].split("/")[0]:
            raise Invalid(f"[signing] checkpoint_dir {checkpoint_dir!r} names no bucket")
        checkpoint_dir, checkpoint_url = None, signing.checkpoint_dir
    return SigningSettings(
        key_file=_credential_file(signing.key_file, env, directory),
        checkpoint_interval_s=signing.checkpoint_interval_s,
        checkpoint_dir=directory / checkpoint_dir if checkpoint_dir else None,
        public_keys=tuple(public_keys),
        checkpoint_url=checkpoint_url,
    )


def _coverage(coverage: _Coverage) -> CoverageSettings:
    """The hours checked here; the calendar's name when it is used (its library is large)."""
    try:
        parse_hours(coverage.hours)
    except ValueError as exc:
        raise Invalid(f"[coverage] {exc}") from None
    if not coverage.calendar.strip():
        raise Invalid("[coverage] calendar must name an exchange calendar, e.g. XNYS")
    return CoverageSettings(coverage.calendar, coverage.hours, coverage.max_uncovered_s)


def _archive(archive: _Archive, directory: Path) -> ArchiveSettings:
    """A relative directory is the config file's; an S3 URL must name a bucket."""
    url = archive.url
    if archive.object_lock_mode not in OBJECT_LOCK_MODES:
        raise Invalid(
            f'[archive] object_lock_mode must be COMPLIANCE, GOVERNANCE or "" '
            f"(got {archive.object_lock_mode!r})"
        )
    if url is not None:
        if not url.strip():
            raise Invalid("[archive] url must name a directory or s3://bucket/prefix")
        if url.startswith("s3://"):
            if not url[len("s3://") :].split("/")[0]:
                raise Invalid(f"[archive] url {url!r} names no bucket")
        elif "://" in url:
            raise Invalid(f"[archive] url {url!r}: a local directory or s3://bucket/prefix")
        elif not Path(url).is_absolute():
            url = str(directory / url)
    return ArchiveSettings(url, archive.endpoint_url, archive.region, archive.object_lock_mode,
                           archive.retention_days)  # fmt: skip


def _store(store: _Store, directory: Path) -> StoreSettings:
    """A SQLite file named by a relative path in ``[store] url`` is looked up in
    ``directory`` (the config file's), like the other files the configuration names; without
    ``[store] url`` the store is ``studio-events.db`` in the working directory (the
    service's state directory)."""
    url = store.url or DEFAULT_STORE_URL
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise Invalid("[store] url is not a SQLAlchemy database URL") from None
    path = sqlite_path(parsed)
    if store.url is not None and path is not None and not path.is_absolute():
        url = parsed.set(database=str(directory / path)).render_as_string(hide_password=False)
    return StoreSettings(url=url)


def _recorder(recorder: _Recorder) -> RecorderSettings:
    name = recorder.trading_day_timezone
    try:
        zone(name)
    except UnknownZone:
        raise Invalid(
            f"[recorder] trading_day_timezone is not an IANA time zone (got {name!r})"
        ) from None
    if recorder.backoff_max_s < recorder.backoff_initial_s:
        raise Invalid("[recorder] backoff_max_s must not be below backoff_initial_s")
    return RecorderSettings(**msgspec.structs.asdict(recorder))


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(listen)
    return host.strip("[]"), int(port)


def _metrics(metrics: _Metrics) -> MetricsSettings:
    listen = metrics.listen
    if listen:
        try:
            _split_listen(listen)
        except ValueError:
            raise Invalid(
                f"[metrics] listen must be HOST:PORT or empty to disable (got {listen!r})"
            ) from None
    return MetricsSettings(listen=listen)
