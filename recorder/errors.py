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
