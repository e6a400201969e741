"""Configuration: a TOML file validated into typed, frozen settings.

The file is named by ``--config PATH`` or the environment variable
``STUDIO_RECORDER_CONFIG``. Every problem becomes one :class:`ConfigError` line
naming the file and the key. The client secret never comes from the TOML: only
from ``STUDIO_CLIENT_SECRET`` or the file named by ``client_secret_file``
(relative names are looked up in ``$CREDENTIALS_DIRECTORY`` when systemd sets it).
The secret file is read only when credentials are needed
(:meth:`Settings.require_credentials`, i.e. by ``studio-recorder run``), so
commands that only read the store work without access to it. Things that are
allowed but unwise (a config file readable by others that names a secret file)
become :attr:`Settings.warnings`, which the command lines print.
"""

from __future__ import annotations

import ipaddress
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError
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


class Secret:
    """A string that never shows itself in ``repr``/``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value; call only where it is sent to the upstream."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


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


@dataclass(frozen=True)
class RecorderSettings:
    trading_day_timezone: str = DEFAULT_TIMEZONE
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S
    subscribe_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    batch_max_rows: int = 1000
    batch_max_delay_ms: float = 50.0
    queue_max_frames: int = 100_000

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
class Settings:
    studio: StudioSettings
    store: StoreSettings
    recorder: RecorderSettings
    metrics: MetricsSettings
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


def read_secret_file(secret_path: Path, where: object) -> Secret:
    """The client secret in ``secret_path`` (stripped), or ConfigError naming key and file."""
    try:
        value = secret_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"{where}: [studio] client_secret_file cannot be read ({secret_path}: {problem})"
        ) from None
    if not value:
        raise ConfigError(f"{where}: [studio] client_secret_file is empty ({secret_path})")
    return Secret(value)


_SECTIONS: Final = {
    "studio": {
        "url", "environment", "token_url", "audience", "client_id",
        "client_secret_file", "accounts", "ca_file",
    },
    "store": {"url"},
    "recorder": {
        "trading_day_timezone", "liveness_timeout_s", "subscribe_timeout_s",
        "backoff_initial_s", "backoff_max_s", "batch_max_rows", "batch_max_delay_ms",
        "queue_max_frames",
    },
    "metrics": {"listen"},
}  # fmt: skip


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
    for section, value in document.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key in value:
            if key not in _SECTIONS[section]:
                raise ConfigError(f"{path}: unknown key [{section}] {key}")
    reader = _Reader(path, document)
    studio = _studio(reader, env, path)
    return Settings(
        studio=studio,
        store=_store(reader),
        recorder=_recorder(reader),
        metrics=_metrics(reader),
        path=path,
        warnings=_permission_warnings(
            path, studio.client_secret_file, env.get(CREDENTIALS_DIR_ENV)
        ),
    )


def _group_or_other_mode(path: Path) -> int | None:
    """``path``'s permission bits when group or others may read it, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o044 else None


def _permission_warnings(
    path: Path, secret_file: Path | None, credentials_dir: str | None
) -> tuple[str, ...]:
    """Warnings for a config file (or secret file) others can read when it names a secret.

    None when the secret is a systemd credential (``$CREDENTIALS_DIRECTORY``): only the
    service can read it there, and the configuration must stay readable by the service's
    (dynamic) user.
    """
    if secret_file is None:
        return ()
    if credentials_dir and secret_file.is_relative_to(credentials_dir):
        return ()
    warnings = []
    mode = _group_or_other_mode(path)
    if mode is not None:
        warnings.append(
            f"{path} is readable by group/others (mode {mode:04o}) and names a "
            f"client_secret_file: restrict it with chmod 600"
        )
    mode = _group_or_other_mode(secret_file)
    if mode is not None:
        warnings.append(
            f"{secret_file} ([studio] client_secret_file) is readable by group/others "
            f"(mode {mode:04o}): restrict it with chmod 600"
        )
    return tuple(warnings)


class _Reader:
    """Typed access to ``document[section][key]`` with errors that name the key."""

    def __init__(self, path: Path, document: Mapping[str, Any]) -> None:
        self.path = path
        self.document = document

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{section}] {key} {problem}")

    def get(self, section: str, key: str) -> Any:
        return self.document.get(section, {}).get(key)

    def string(self, section: str, key: str, default: str | None) -> str | None:
        value = self.get(section, key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(section, key, f"must be a string (got {_kind(value)})")
        return value

    def number(self, section: str, key: str, default: float, *, minimum: float) -> float:
        value = self.get(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(section, key, f"must be a number (got {_kind(value)})")
        if not math.isfinite(value):
            raise self.fail(section, key, f"must be finite (got {value})")
        if value < minimum:
            raise self.fail(section, key, f"must be at least {minimum:g} (got {value:g})")
        return float(value)

    def integer(self, section: str, key: str, default: int, *, minimum: int) -> int:
        value = self.get(section, key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(section, key, f"must be an integer (got {_kind(value)})")
        if value < minimum:
            raise self.fail(section, key, f"must be at least {minimum} (got {value})")
        return value


def _kind(value: object) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)  # fmt: skip


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


def _checked_url(reader: _Reader, key: str, url: str, secure: str, plain: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == secure and parts.hostname:
        return url
    if parts.scheme == plain and parts.hostname:
        if is_loopback_host(parts.hostname):
            return url
        raise reader.fail(
            "studio", key, f"uses {plain}:// for a non-loopback host; use {secure}:// ({url})"
        )
    raise reader.fail("studio", key, f"must be a {secure}:// URL (got {url!r})")


def _studio(reader: _Reader, env: Mapping[str, str], path: Path) -> StudioSettings:
    url = reader.string("studio", "url", None)
    environment = reader.string("studio", "environment", None)
    if url is not None and environment is not None:
        raise reader.fail("studio", "environment", "cannot be combined with [studio] url")
    if url is None:
        environment = environment or "production"
        if environment not in ENVIRONMENT_URLS:
            names = " or ".join(repr(name) for name in ENVIRONMENT_URLS)
            raise reader.fail("studio", "environment", f"must be {names} (got {environment!r})")
        url = ENVIRONMENT_URLS[environment]
    url = _checked_url(reader, "url", url, "wss", "ws")
    token_url = reader.string("studio", "token_url", DEFAULT_TOKEN_URL) or DEFAULT_TOKEN_URL
    token_url = _checked_url(reader, "token_url", token_url, "https", "http")
    audience = reader.string("studio", "audience", DEFAULT_AUDIENCE) or DEFAULT_AUDIENCE

    accounts = reader.get("studio", "accounts")
    if accounts is None:
        raise reader.fail("studio", "accounts", "is missing: list the account ids to record")
    if not isinstance(accounts, list) or not accounts:
        raise reader.fail("studio", "accounts", "must be a non-empty array of strings")
    for account in accounts:
        if not isinstance(account, str) or not account.strip() or account != account.strip():
            raise reader.fail(
                "studio", "accounts", f"entries must be non-empty strings (got {account!r})"
            )
    if len(set(accounts)) != len(accounts):
        raise reader.fail("studio", "accounts", "lists an account twice")

    client_id = env.get(CLIENT_ID_ENV) or reader.string("studio", "client_id", None)
    secret = Secret(env[CLIENT_SECRET_ENV]) if env.get(CLIENT_SECRET_ENV) else None
    secret_file = _client_secret_file(reader, env, path)
    ca_file = reader.string("studio", "ca_file", None)
    ca_path = None
    if ca_file:
        ca_path = (path.parent / ca_file) if not Path(ca_file).is_absolute() else Path(ca_file)
        if not ca_path.is_file():
            raise reader.fail("studio", "ca_file", f"does not name a readable file ({ca_path})")
    return StudioSettings(
        url=url, token_url=token_url, audience=audience, client_id=client_id or None,
        client_secret=secret, accounts=tuple(accounts), ca_file=ca_path,
        client_secret_file=secret_file,
    )  # fmt: skip


def _client_secret_file(reader: _Reader, env: Mapping[str, str], path: Path) -> Path | None:
    """Where ``[studio] client_secret_file`` points (not read here: see require_credentials)."""
    name = reader.string("studio", "client_secret_file", None)
    if not name:
        return None
    secret_path = Path(name)
    if not secret_path.is_absolute():
        base = env.get(CREDENTIALS_DIR_ENV)
        secret_path = Path(base) / name if base else path.parent / name
    return secret_path


def _store(reader: _Reader) -> StoreSettings:
    url = reader.string("store", "url", DEFAULT_STORE_URL) or DEFAULT_STORE_URL
    try:
        make_url(url)
    except ArgumentError:
        raise reader.fail("store", "url", "is not a SQLAlchemy database URL") from None
    return StoreSettings(url=url)


def _recorder(reader: _Reader) -> RecorderSettings:
    defaults = RecorderSettings()
    tz_name = reader.string("recorder", "trading_day_timezone", defaults.trading_day_timezone)
    assert tz_name is not None
    try:
        zone(tz_name)
    except UnknownZone:
        raise reader.fail(
            "recorder", "trading_day_timezone", f"is not an IANA time zone (got {tz_name!r})"
        ) from None
    settings = RecorderSettings(
        trading_day_timezone=tz_name,
        liveness_timeout_s=reader.number("recorder", "liveness_timeout_s",
                                         defaults.liveness_timeout_s, minimum=0.1),
        subscribe_timeout_s=reader.number("recorder", "subscribe_timeout_s",
                                          defaults.subscribe_timeout_s, minimum=0.1),
        backoff_initial_s=reader.number("recorder", "backoff_initial_s",
                                        defaults.backoff_initial_s, minimum=0.01),
        backoff_max_s=reader.number("recorder", "backoff_max_s",
                                    defaults.backoff_max_s, minimum=0.01),
        batch_max_rows=reader.integer("recorder", "batch_max_rows",
                                      defaults.batch_max_rows, minimum=1),
        batch_max_delay_ms=reader.number("recorder", "batch_max_delay_ms",
                                         defaults.batch_max_delay_ms, minimum=0),
        queue_max_frames=reader.integer("recorder", "queue_max_frames",
                                        defaults.queue_max_frames, minimum=1),
    )  # fmt: skip
    if settings.backoff_max_s < settings.backoff_initial_s:
        raise reader.fail("recorder", "backoff_max_s", "must not be below backoff_initial_s")
    return settings


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(listen)
    return host.strip("[]"), int(port)


def _metrics(reader: _Reader) -> MetricsSettings:
    listen = reader.string("metrics", "listen", DEFAULT_METRICS_LISTEN)
    assert listen is not None
    if listen:
        try:
            _split_listen(listen)
        except ValueError:
            raise reader.fail(
                "metrics", "listen", f"must be HOST:PORT or empty to disable (got {listen!r})"
            ) from None
    return MetricsSettings(listen=listen)
