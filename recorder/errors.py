"""Exceptions of the recorder package: a flat, shallow tree.

Every message says what happened and, where it helps, what to do. The CLI turns
these into one line on stderr and a non-zero exit; nothing here carries a secret.
"""

from __future__ import annotations


class RecorderError(Exception):
    """Base class of every error the recorder raises on purpose."""


class ConfigError(RecorderError):
    """The configuration file, an environment variable or a flag is invalid (exit code 2)."""


class StoreError(RecorderError):
    """The store cannot be opened, migrated or written (wrong URL, unreachable, wrong revision)."""


class AuthError(RecorderError):
    """The token endpoint refused the credentials or answered something unusable."""


def first_leaf(exc: BaseException) -> BaseException:
    """The first error inside ``exc`` (itself unless it is an exception group, as trio's
    nurseries raise): the one whose line is told."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none.

    How every error from a library (a driver, pyarrow, DuckDB) is quoted in a one-line
    message: later lines hold SQL, parameters or context that are noise at best.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
