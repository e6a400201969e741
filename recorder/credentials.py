"""Secrets the recorder holds (the client secret; see recorder.signing for the signing key),
and the warnings for files that could give them away.

A :class:`Secret` never shows itself in ``repr``/``str``, logs or tracebacks; it is read
from its file only when credentials are needed. The permission warnings are for things
allowed but unwise: a secret file, or a configuration naming one, that group or others
can read (not for systemd credentials, which only the service can read).
"""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import ConfigError


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


def _group_or_other_mode(path: Path) -> int | None:
    """``path``'s permission bits when group or others may read it, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o044 else None


def permission_warnings(
    path: Path, secret_file: Path | None, key_file: Path | None, credentials_dir: str | None
) -> tuple[str, ...]:
    """Warnings for a secret or key file others can read. A configuration file others can
    read is no warning: it cannot hold a secret (the secret has no key in it), only the
    name of the file that does.

    None for a systemd credential (under ``$CREDENTIALS_DIRECTORY``): only the service
    can read it there, and the configuration must stay readable by the service's
    (dynamic) user.
    """

    def own_file(file: Path | None) -> bool:
        return file is not None and not (credentials_dir and file.is_relative_to(credentials_dir))

    del path  # kept in the signature: the configuration is not what needs protecting
    warnings = []
    for file, key in (
        (secret_file, "[studio] client_secret_file"),
        (key_file, "[signing] key_file"),
    ):
        if file is not None and own_file(file) and (mode := _group_or_other_mode(file)) is not None:
            warnings.append(
                f"{file} ({key}) is readable by group/others (mode {mode:04o}): "
                f"restrict it with chmod 600"
            )
    return tuple(warnings)
