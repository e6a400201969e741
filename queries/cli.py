"""``studio-query``: exports and analytics over the recorder's store.

A thin skin over the ``queries`` Python API: options are parsed here, library
errors become one line on stderr here (exit 2 for usage/configuration errors,
1 for everything else), and nothing else happens here.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import duckdb

from recorder import __version__
from recorder.config import Settings, config_path_from, load_config
from recorder.errors import ConfigError

from .audit import COLUMNS as audit_columns
from .audit import audit, render_audit
from .duck import DEFAULT_TIMEZONE, Workspace, open_export, open_store
from .errors import QueryError
from .export import Progress, export_day
from .gaps import COLUMNS as gaps_columns
from .gaps import DEFAULT_LIVENESS_TIMEOUT_S, gaps, has_sequence_gaps, render_gaps
from .layout import manifest_path
from .reconcile import reconcile, render_reconcile
from .render import to_json
from .source import parse_day
from .sqlcmd import render_csv, render_json, render_table, run_sql
from .verify import render_verify, verify_export, verify_store

P = ParamSpec("P")
R = TypeVar("R")
PROG = "studio-query"


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into one line and an exit code; let bugs raise."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except QueryError as exc:
            fail(str(exc), 1)
        except (MemoryError, duckdb.OutOfMemoryException):
            fail("out of memory: narrow the query with --account (or --day for sql)", 1)

    return wrapper


def load_settings(config_path: str | None) -> Settings:
    """The recorder configuration (``--config`` or ``$STUDIO_RECORDER_CONFIG``).

    The client secret is not read (queries never need it) and its permission warnings
    are left to ``studio-recorder``, which uses it: scheduled query jobs stay quiet."""
    return load_config(config_path_from(config_path, os.environ))


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH`` / ``--db URL``: which store to read."""
    func = click.option(
        "--db", "db_url", metavar="URL", help="SQLAlchemy URL of the store (instead of --config)."
    )(func)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=str),
        help="Recorder configuration (TOML); its [store] url is read. "
        "Default: $STUDIO_RECORDER_CONFIG.",
    )(func)


def store_url(config_path: str | None, db_url: str | None) -> str:
    """The store URL from ``--db`` or the configuration's ``[store] url``."""
    if db_url and config_path:
        raise ConfigError("give either --db or --config, not both")
    if db_url:
        return db_url
    return load_settings(config_path).store.url


def day_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--day YYYY-MM-DD`` (required), parsed into a date."""
    return click.option(
        "--day",
        "day",
        required=True,
        metavar="YYYY-MM-DD",
        callback=_parse_day,
        help="Trading day (in the recorder's trading-day time zone).",
    )(func)


def optional_day_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--day YYYY-MM-DD`` (optional: every day when absent)."""
    return click.option(
        "--day",
        "day",
        metavar="YYYY-MM-DD",
        callback=_parse_day,
        help="Only this trading day. Default: every day.",
    )(func)


def _parse_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return parse_day(value)
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from None


def account_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--account ID`` (repeatable): restrict to these accounts."""
    return click.option(
        "--account",
        "accounts",
        multiple=True,
        metavar="ID",
        help="Only this account (repeatable). Default: every account with data.",
    )(func)


# -- analytics over the store or an export ----------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the analytics read from, and the recorder settings they need."""

    url: str | None
    export_dir: str | None
    timezone: str
    liveness_timeout_s: float
    configured: tuple[str, ...]


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH | --db URL | --from-export DIR`` and ``--timezone``."""
    func = click.option(
        "--timezone",
        metavar="TZ",
        help=f"Trading-day time zone with --db (default {DEFAULT_TIMEZONE}; "
        "--config uses [recorder] trading_day_timezone, an export its manifest's).",
    )(func)
    func = click.option(
        "--from-export",
        "export_dir",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=str),
        help="Read an export directory (studio-query export) instead of the store.",
    )(func)
    return store_options(func)


def resolve_source(
    config_path: str | None, db_url: str | None, export_dir: str | None, timezone: str | None
) -> Source:
    """The source named by the options (the configuration is read only with --config/env)."""
    if export_dir:
        if db_url or config_path:
            raise ConfigError("give one of --config, --db or --from-export")
        if timezone:
            raise ConfigError("--timezone does not apply to --from-export: the manifest says")
        return Source(None, export_dir, DEFAULT_TIMEZONE, DEFAULT_LIVENESS_TIMEOUT_S, ())
    if db_url and config_path:
        raise ConfigError("give either --db or --config, not both")
    if db_url:
        return Source(db_url, None, timezone or DEFAULT_TIMEZONE, DEFAULT_LIVENESS_TIMEOUT_S, ())
    settings = load_settings(config_path)
    return Source(
        settings.store.url,
        None,
        timezone or settings.recorder.trading_day_timezone,
        settings.recorder.liveness_timeout_s,
        settings.studio.accounts,
    )


def open_workspace(
    source: Source,
    day: dt.date | None,
    accounts: tuple[str, ...],
    *,
    payload: bool = True,
    notices: bool = True,
    columns: tuple[str, ...] | None = None,
) -> Workspace:
    if source.export_dir is not None:
        return open_export(
            source.export_dir, day=day, accounts=accounts, payload=payload, notices=notices,
            columns=columns,
        )  # fmt: skip
    assert source.url is not None
    return open_store(
        source.url,
        day=day,
        accounts=accounts,
        configured=source.configured,
        timezone=source.timezone,
        payload=payload,
        notices=notices,
        columns=columns,
    )


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for machines).")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Export trading days and audit the recorder's store."""


@cli.command("export")
@store_options
@day_option
@click.option(
    "--out",
    "out",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Export directory (created 0700 if missing); the day's previous export is replaced.",
)
@account_option
@click.option(
    "--timezone",
    metavar="ZONE",
    help="Trading-day time zone, with --db (default America/New_York); "
    "with --config its [recorder] trading_day_timezone is used.",
)
@handle_errors
def export_command(
    config_path: str | None,
    db_url: str | None,
    day: dt.date,
    out: Path,
    accounts: tuple[str, ...],
    timezone: str | None,
) -> None:
    """Export one trading day to Hive-partitioned Parquet files and a manifest.

    Writes DIR/events/trading_day=DAY/account_id=ID/part-0.parquet,
    DIR/connection_log/… and DIR/manifest/trading_day=DAY.json, atomically.
    """
    url, zone = store_and_timezone(config_path, db_url, timezone)
    started = time.monotonic()
    with _progress_bar(day) as progress:
        manifest = export_day(
            url, day, out, accounts=list(accounts) or None, timezone=zone, progress=progress
        )
    elapsed = time.monotonic() - started
    if not manifest.accounts:
        click.echo(
            f"no data for {day.isoformat()}: wrote an empty manifest {out / manifest_path(day)}"
        )
        return
    click.echo(
        f"exported {day.isoformat()}: {_plural(len(manifest.accounts), 'account')}, "
        f"{manifest.rows('events'):,} events, "
        f"{manifest.rows('connection_log'):,} connection_log rows → {out} "
        f"({_size(manifest.total_bytes)}) in {elapsed:.1f} s"
    )


def store_and_timezone(
    config_path: str | None, db_url: str | None, timezone: str | None
) -> tuple[str, str]:
    """The store URL and trading-day time zone, from ``--db``/``--timezone`` or the config."""
    if db_url:
        if config_path:
            raise ConfigError("give either --db or --config, not both")
        return db_url, timezone or DEFAULT_TIMEZONE
    if timezone:
        raise ConfigError("--timezone goes with --db; with --config the config's zone is used")
    settings = load_settings(config_path)
    return settings.store.url, settings.recorder.trading_day_timezone


@contextmanager
def _progress_bar(day: dt.date) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal, from the first rows written; else None."""
    if not sys.stderr.isatty():
        yield None
        return
    with ExitStack() as stack:
        bars: list[Any] = []

        def update(written: int, total: int) -> None:
            if not bars:
                label = f"exporting {day.isoformat()}"
                bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
                bars.append(stack.enter_context(bar))
            bars[0].length = total
            bars[0].update(written - bars[0].pos)

        yield update


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _size(size: int) -> str:
    """``size`` bytes for people: ``812 B``, ``3.1 MB``."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


@cli.command("gaps")
@source_options
@day_option
@account_option
@click.option(
    "--silence-s",
    type=click.FloatRange(min=0, min_open=True),
    help="Report silences longer than this (default: 2 x the liveness timeout).",
)
@click.option("--fail-on-gaps", is_flag=True, help="Exit 1 when any sequence gap exists.")
@json_option
@handle_errors
def gaps_command(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date,
    accounts: tuple[str, ...],
    silence_s: float | None,
    fail_on_gaps: bool,
    as_json: bool,
) -> None:
    """Sequence gaps, coverage gaps and silences of a trading day, per account."""
    source = resolve_source(config_path, db_url, export_dir, timezone)
    with open_workspace(
        source, day, accounts, payload=False, notices=False, columns=gaps_columns
    ) as ws:
        report = gaps(ws, silence_s=silence_s, liveness_timeout_s=source.liveness_timeout_s)
    click.echo(to_json(report) if as_json else render_gaps(report))
    if fail_on_gaps and has_sequence_gaps(report):
        sys.exit(1)


@cli.command("audit")
@source_options
@day_option
@account_option
@json_option
@handle_errors
def audit_command(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date,
    accounts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Frames by type, replays, sessions, error notices, latency and chain of a day."""
    source = resolve_source(config_path, db_url, export_dir, timezone)
    with ThreadPoolExecutor(max_workers=1) as background:
        chains = None
        if source.url is not None:
            # Hashing dominates: start it (in worker processes) before loading the day.
            pending = background.submit(
                verify_store, source.url, day=day, accounts=accounts or None,
                configured=source.configured,
            )  # fmt: skip
            chains = pending.result
        with open_workspace(source, day, accounts, payload=False, columns=audit_columns) as ws:
            report = audit(ws, liveness_timeout_s=source.liveness_timeout_s, chains=chains)
    click.echo(to_json(report) if as_json else render_audit(report))


@cli.command("reconcile")
@source_options
@day_option
@account_option
@click.option(
    "--positions",
    "positions_file",
    metavar="FILE.csv",
    help="The broker's end-of-day positions (account_id,symbol,quantity): list differences.",
)
@click.option("--fail-on-breaks", is_flag=True, help="Exit 1 when any account has a break.")
@json_option
@handle_errors
def reconcile_command(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date,
    accounts: tuple[str, ...],
    positions_file: str | None,
    fail_on_breaks: bool,
    as_json: bool,
) -> None:
    """Bought, sold, VWAP and positions per symbol; orders; breaks."""
    source = resolve_source(config_path, db_url, export_dir, timezone)
    with open_workspace(source, day, accounts) as ws:
        report = reconcile(ws, positions_file=positions_file)
    click.echo(to_json(report) if as_json else render_reconcile(report))
    if fail_on_breaks and any(account["breaks"] for account in report["accounts"]):
        sys.exit(1)


@cli.command("verify")
@store_options
@click.option(
    "--from-export",
    "export_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    help="Verify an export directory (files against the manifest, and chains).",
)
@optional_day_option
@account_option
@json_option
@handle_errors
def verify_command(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    day: dt.date | None,
    accounts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Recompute hash chains; exit 1 naming the account and first bad row when broken."""
    source = resolve_source(config_path, db_url, export_dir, None)
    if source.export_dir is not None:
        report = verify_export(source.export_dir, day=day, accounts=accounts or None)
    else:
        assert source.url is not None
        report = verify_store(source.url, day=day, accounts=accounts or None)
    click.echo(to_json(report.as_dict()) if as_json else render_verify(report))
    if not report.ok:
        sys.exit(1)


@cli.command("sql")
@source_options
@optional_day_option
@account_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")
@click.argument("query", metavar='"SELECT ..."')
@handle_errors
def sql_command(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    accounts: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    query: str,
) -> None:
    """Ad-hoc DuckDB SQL over the views events, activity, orders, fills, positions,
    connection_log (of --day, or of every day: then the whole store is read)."""
    if as_json and as_csv:
        raise ConfigError("give --json or --csv, not both")
    source = resolve_source(config_path, db_url, export_dir, timezone)
    with open_workspace(source, day, accounts) as ws:
        result = run_sql(ws, query)
    if as_json:
        click.echo(render_json(result))
    elif as_csv:
        click.echo(render_csv(result), nl=False)
    else:
        click.echo(render_table(result))


def main() -> None:
    """Console-script entry point: usage errors, too, are one line on stderr."""
    try:
        code = cli.main(prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
