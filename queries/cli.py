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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from recorder.config import config_path_from, load_config
from recorder.errors import ConfigError

from . import __version__
from .errors import QueryError
from .export import DEFAULT_TIMEZONE, Progress, export_day
from .layout import manifest_path
from .source import parse_day

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

    return wrapper


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
    return load_config(config_path_from(config_path, os.environ)).store.url


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
    settings = load_config(config_path_from(config_path, os.environ))
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


def main() -> None:
    """Console-script entry point: usage errors too become one line (exit 2)."""
    try:
        cli.main(prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.exit(130)
