"""studio-recorder queries: exports and DuckDB analytics over the recorder's store.

Reads the store only through its schema (tables ``events`` and ``connection_log``);
never imports the recorder's runtime.
"""

from __future__ import annotations

from .errors import QueryError
from .source import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA, StoreReader, parse_day

__version__ = "0.1.0"

__all__ = [
    "CONNECTION_LOG_SCHEMA",
    "EVENTS_SCHEMA",
    "QueryError",
    "StoreReader",
    "__version__",
    "parse_day",
]
