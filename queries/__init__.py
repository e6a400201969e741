"""studio-recorder queries: exports and DuckDB analytics over the recorder's store.

Reads the store only through its schema (tables ``events`` and ``connection_log``);
never imports the recorder's runtime.
"""

from __future__ import annotations

__version__ = "0.1.0"  # before the imports below: the export writes it into manifests

from .errors import QueryError
from .export import export_day
from .layout import (
    CONNECTION_LOG_FILE_SCHEMA,
    EVENTS_FILE_SCHEMA,
    PARTITION_SCHEMA,
    open_dataset,
)
from .manifest import AccountEntry, FileEntry, Manifest
from .source import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA, StoreReader, parse_day

__all__ = [
    "CONNECTION_LOG_FILE_SCHEMA",
    "CONNECTION_LOG_SCHEMA",
    "EVENTS_FILE_SCHEMA",
    "EVENTS_SCHEMA",
    "PARTITION_SCHEMA",
    "AccountEntry",
    "FileEntry",
    "Manifest",
    "QueryError",
    "StoreReader",
    "__version__",
    "export_day",
    "open_dataset",
    "parse_day",
]
