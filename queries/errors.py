"""Exceptions of the queries package (flat; the CLI turns them into one line)."""

from __future__ import annotations


class QueryError(Exception):
    """Bad input (date, account, path, SQL) or a store/export that cannot be read."""
