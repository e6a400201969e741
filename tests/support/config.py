"""Recorder configurations for tests: one client secret, one document builder, as a TOML file
or as parsed settings."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from recorder.config import Settings, parse_config
from recorder.simulator import SimEndpoints

#: The client secret the simulator accepts. The secrets tests scan everything the project
#: writes for it, so it is used nowhere else (no frame, no account id holds it).
SECRET: Final = "client-secret-7e3a9d1f"

#: Quick timeouts for tests on the real clock (a reconnect within seconds).
QUICK: Final[Mapping[str, float]] = {
    "liveness_timeout_s": 10,
    "subscribe_timeout_s": 5,
    "backoff_initial_s": 0.2,
    "backoff_max_s": 2,
}


def config_document(
    accounts: Sequence[str],
    store_url: str,
    *,
    endpoints: SimEndpoints | None = None,
    recorder: Mapping[str, Any] | None = None,
    metrics_listen: str | None = "",
    client_id: str | None = "sim-client",
    signing: Mapping[str, Any] | None = None,
    **studio: Any,
) -> dict[str, dict[str, Any]]:
    """The configuration as parsed TOML.

    ``endpoints`` gives ``[studio] url`` and ``token_url`` (``studio`` keys override them);
    other ``[studio]`` keys come from ``studio``; ``[recorder]`` (and ``[signing]``) is
    written only when ``recorder`` (``signing``) is given (otherwise every default applies);
    ``[metrics] listen`` is off (``""``) unless given, and left out when None.
    """
    table: dict[str, Any] = {}
    if endpoints is not None:
        table |= {"url": endpoints.ws_url, "token_url": endpoints.token_url}
    if client_id is not None:
        table["client_id"] = client_id
    table |= {**studio, "accounts": list(accounts)}
    document: dict[str, dict[str, Any]] = {"studio": table, "store": {"url": store_url}}
    if recorder is not None:
        document["recorder"] = dict(recorder)
    if metrics_listen is not None:
        document["metrics"] = {"listen": metrics_listen}
    if signing is not None:
        document["signing"] = dict(signing)
    return document


def to_toml(document: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML for a document of tables of strings, numbers, booleans and lists of strings."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        return json.dumps(item)  # a JSON string or list of strings is TOML too

    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {value(item)}\n" for key, item in table.items())
        for name, table in document.items()
    )


def write_config(path: Path, accounts: Sequence[str], store_url: str, **options: Any) -> Path:
    """Write :func:`config_document` ``(accounts, store_url, **options)`` to ``path``."""
    path.write_text(to_toml(config_document(accounts, store_url, **options)))
    return path


def settings_for(
    tmp_path: Path, accounts: Sequence[str], store_url: str, **options: Any
) -> Settings:
    """:func:`config_document` parsed as ``tmp_path/recorder.toml`` would be, with
    STUDIO_CLIENT_SECRET set to :data:`SECRET`."""
    document = config_document(accounts, store_url, **options)
    return parse_config(document, {"STUDIO_CLIENT_SECRET": SECRET}, tmp_path / "recorder.toml")
