"""Logging setup: one line per event, with the structured fields the recorder attaches.

Records carry context in ``extra`` (``account``, ``session``, ``event``, ...).
On a terminal lines are human-readable; otherwise (systemd, files) each line is
one JSON object, so journald and log shippers can index the fields. Secrets are
never passed to the logger in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final, Literal

from .instants import NS_PER_S, iso_ns

LogFormat = Literal["auto", "text", "json"]

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    return str(iso_ns(int(record.created * NS_PER_S), 3))


class TextFormatter(logging.Formatter):
    """``2026-11-23T19:00:00.123Z WARNING recorder.supervisor: message account=100000 …``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", log_format: LogFormat = "auto") -> None:
    """Send the recorder's logs to stderr in the chosen format (``auto``: text on a TTY)."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (one line per HTTP request, alembic plugins) is noise at INFO.
    for noisy in ("httpx", "httpcore", "alembic", "trio-websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def current_logging() -> tuple[str, LogFormat]:
    """The level and format :func:`setup_logging` set (what a child process is given)."""
    root = logging.getLogger()
    level = logging.getLevelName(root.level)
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return level, "json"
        if isinstance(handler.formatter, TextFormatter):
            return level, "text"
    return level, "auto"
