"""studio-recorder queries: exports and DuckDB analytics over the recorder's store.

Reads the store only through its schema (tables ``events`` and ``connection_log``);
never imports the recorder's runtime.

Analytics of a trading day: open a :class:`Workspace` over the store
(:func:`open_store`) or an export directory (:func:`open_export`), then ask
:func:`gaps`, :func:`audit`, :func:`reconcile` or :func:`run_sql`; reports are
JSON-ready dicts (decimals as ``Decimal``; :func:`to_json` renders them exactly).
:func:`verify_store` / :func:`verify_export` recompute the hash chains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recorder import __version__
from recorder.lazy import lazy_attributes

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load on first use
    from .attested import Trust
    from .audit import audit, audit_source, render_audit
    from .contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA
    from .datasource import DataSource
    from .duck import Workspace, open_export, open_store
    from .errors import QueryError
    from .export import export_day
    from .exportcheck import verify_export
    from .exportdir import ExportDir
    from .gaps import gaps, has_sequence_gaps, render_gaps
    from .layout import (
        CONNECTION_LOG_FILE_SCHEMA,
        EVENTS_FILE_SCHEMA,
        PARTITION_SCHEMA,
        open_dataset,
    )
    from .manifest import AccountEntry, FileEntry, Manifest
    from .positionsfile import read_positions
    from .reconcile import reconcile, render_reconcile
    from .render import iso_ns, to_json
    from .source import StoreReader, parse_day
    from .sqlcmd import render_csv, render_json, render_table, run_sql
    from .storecheck import verify_store
    from .verify import ChainCheck, Problem, VerifyReport, render_verify
    from .views import VIEWS

#: Public name → the module defining it, loaded on first use (PEP 562): ``import queries``
#: stays cheap for the console script, which imports only what its command needs.
_LAZY = {
    "Trust": "attested",
    "audit": "audit",
    "audit_source": "audit",
    "render_audit": "audit",
    "CONNECTION_LOG_SCHEMA": "contract",
    "EVENTS_SCHEMA": "contract",
    "DataSource": "datasource",
    "Workspace": "duck",
    "open_export": "duck",
    "open_store": "duck",
    "QueryError": "errors",
    "export_day": "export",
    "verify_export": "exportcheck",
    "ExportDir": "exportdir",
    "gaps": "gaps",
    "has_sequence_gaps": "gaps",
    "render_gaps": "gaps",
    "CONNECTION_LOG_FILE_SCHEMA": "layout",
    "EVENTS_FILE_SCHEMA": "layout",
    "PARTITION_SCHEMA": "layout",
    "open_dataset": "layout",
    "AccountEntry": "manifest",
    "FileEntry": "manifest",
    "Manifest": "manifest",
    "read_positions": "positionsfile",
    "reconcile": "reconcile",
    "render_reconcile": "reconcile",
    "iso_ns": "render",
    "to_json": "render",
    "StoreReader": "source",
    "parse_day": "source",
    "render_csv": "sqlcmd",
    "render_json": "sqlcmd",
    "render_table": "sqlcmd",
    "run_sql": "sqlcmd",
    "verify_store": "storecheck",
    "ChainCheck": "verify",
    "Problem": "verify",
    "VerifyReport": "verify",
    "render_verify": "verify",
    "VIEWS": "views",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "CONNECTION_LOG_FILE_SCHEMA",
    "CONNECTION_LOG_SCHEMA",
    "EVENTS_FILE_SCHEMA",
    "EVENTS_SCHEMA",
    "PARTITION_SCHEMA",
    "VIEWS",
    "AccountEntry",
    "ChainCheck",
    "DataSource",
    "ExportDir",
    "FileEntry",
    "Manifest",
    "Problem",
    "QueryError",
    "StoreReader",
    "Trust",
    "VerifyReport",
    "Workspace",
    "__version__",
    "audit",
    "audit_source",
    "export_day",
    "gaps",
    "has_sequence_gaps",
    "iso_ns",
    "open_dataset",
    "open_export",
    "open_store",
    "parse_day",
    "read_positions",
    "reconcile",
    "render_audit",
    "render_csv",
    "render_gaps",
    "render_json",
    "render_reconcile",
    "render_table",
    "render_verify",
    "run_sql",
    "to_json",
    "verify_export",
    "verify_store",
]
