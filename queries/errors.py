"""Exceptions of the queries package (flat; the CLI turns them into one line)."""

from __future__ import annotations


class QueryError(Exception):
    """Bad input (date, account, path, SQL) or a store/export that cannot be read."""


class UsageError(QueryError):
    """A command given something it cannot take (a time zone, SQL, a key, a URL): exit 2."""
