"""The systemd unit for running the recorder as a service (shipped as package data)."""

from __future__ import annotations

import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import Final

DEFAULT_CONFIG: Final = "/etc/studio-recorder/recorder.toml"
DEFAULT_SECRET: Final = "/etc/studio-recorder/client-secret"


def executable() -> str:
    """Absolute path of the ``studio-recorder`` script of this installation."""
    beside = Path(sys.executable).parent / "studio-recorder"
    if beside.is_file():
        return str(beside)
    found = shutil.which("studio-recorder")
    return str(Path(found).resolve()) if found else str(beside)


def render_unit(
    *,
    user: str | None = None,
    config: str = DEFAULT_CONFIG,
    secret_file: str = DEFAULT_SECRET,
    exe: str | None = None,
) -> str:
    """The unit file text. Without ``user`` the service runs as a transient DynamicUser."""
    template = files("recorder").joinpath("data/studio-recorder.service.in").read_text()
    if user:
        user_lines = f"User={user}\nGroup={user}"
    else:
        user_lines = (
            "# No --user given: a transient system user owns the service and its state.\n"
            "DynamicUser=yes"
        )
    return (
        template.replace("@USER_LINES@", user_lines)
        .replace("@EXE@", exe or executable())
        .replace("@CONFIG@", config)
        .replace("@SECRET_PATH@", secret_file)
    )
