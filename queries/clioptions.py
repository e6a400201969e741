"""The options the ``studio-query`` commands share, and the one reading of where they read.

Days, accounts and JSON output; the source (``--config`` | ``--db`` | ``--from-export``,
``--timezone``) turned into a :class:`~queries.datasource.DataSource` by
:func:`resolve_source`; the trusted keys (``--public-key``) by :func:`trusting`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import click
import duckdb
from sqlalchemy.exc import SQLAlchemyError

from recorder import storemeta
from recorder.clishell import USAGE_EXIT, config_option, db_option, error_handler, only_one
from recorder.config import config_path_from, load_config
from recorder.dberrors import db_error_line
from recorder.errors import ConfigError, RecorderError
from recorder.tradingday import DEFAULT_TIMEZONE

from .attested import Trust
from .datasource import DataSource
from .errors import QueryError, UsageError
from .source import StoreReader, parse_day

#: What a command's errors become: one line on stderr and an exit code (2 for usage).
handle_errors = error_handler(
    [
        ((ConfigError, UsageError), USAGE_EXIT, str),
        ((QueryError, RecorderError), 1, str),
        (SQLAlchemyError, 1, lambda exc: f"database error: {db_error_line(exc)}"),
        (
            (MemoryError, duckdb.OutOfMemoryException),
            1,
            lambda _exc: "out of memory: narrow the query with --account (or --day for sql)",
        ),
    ]
)


def day_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--day YYYY-MM-DD`` (required), parsed into a date."""
    return click.option(
        "--day",
        "day",
        required=True,
        metavar="YYYY-MM-DD",
        callback=parse_day_option,
        help="Trading day (in the recorder's trading-day time zone).",
    )(func)


def parse_day_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> dt.date | None:
    if value is None:
        return None
    try:
        return parse_day(value)
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from None


def day_range_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--day DAY`` or ``--from DAY --to DAY`` (inclusive), given to the command as
    ``day``, ``first`` and ``last``; :func:`day_range` turns them into the days."""
    for name, flag, text in (
        ("last", "--to", "Last trading day of a range (with --from; inclusive)."),
        ("first", "--from", "First trading day of a range (with --to)."),
        ("day", "--day", "One trading day (or give --from and --to)."),
    ):
        func = click.option(flag, name, metavar="YYYY-MM-DD", callback=parse_day_option,
                            help=text)(func)  # fmt: skip
    return func


#: The most days one command reads (about 27 years of calendar days: any retention).
MAX_RANGE_DAYS: Final = 10_000


def day_range(day: dt.date | None, first: dt.date | None, last: dt.date | None) -> list[dt.date]:
    """The days of ``--day`` or ``--from``/``--to``; UsageError naming what is wrong."""
    if day is not None and (first is not None or last is not None):
        raise UsageError("give --day or --from and --to, not both")
    if day is not None:
        return [day]
    if first is None or last is None:
        raise UsageError("give --day, or --from and --to")
    if last < first:
        raise UsageError(f"--to {last.isoformat()} is before --from {first.isoformat()}")
    count = (last - first).days + 1
    if count > MAX_RANGE_DAYS:
        raise UsageError(f"--from/--to spans {count:,} days: at most {MAX_RANGE_DAYS:,}")
    return [first + dt.timedelta(days=n) for n in range(count)]


def account_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--account ID`` (repeatable): restrict to these accounts."""
    return click.option(
        "--account",
        "accounts",
        multiple=True,
        metavar="ID",
        callback=_check_accounts,
        help="Only this account (repeatable). Default: every account with data.",
    )(func)


def _check_accounts(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    if any(not account.strip() for account in value):
        raise click.BadParameter("an account id cannot be blank")
    return value


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for machines).")(func)


# -- where a command reads from ----------------------------------------------------------------


def timezone_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--timezone ZONE``: the trading-day zone of a store named by ``--db``."""
    return click.option(
        "--timezone",
        metavar="ZONE",
        help=f"Trading-day time zone of the store given by --db (default {DEFAULT_TIMEZONE}). "
        "With --config its [recorder] trading_day_timezone is used; an export's manifest "
        "names its own.",
    )(func)


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH | --db URL`` and ``--timezone``: a store."""
    return config_option(db_option(timezone_option(func)))


def export_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--from-export",
        "export_dir",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=str),
        help="Read an export directory (studio-query export) instead of the store.",
    )(func)


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH | --db URL | --from-export DIR`` and ``--timezone``: a store or export."""
    return store_options(export_option(func))


def resolve_source(
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None = None,
    timezone: str | None = None,
) -> DataSource:
    """The one reading of the source options, for every command.

    Exactly one of ``--config`` (or ``$STUDIO_RECORDER_CONFIG``), ``--db`` and
    ``--from-export``; ``--timezone`` only with ``--db`` (a configuration and an export
    each name their zone). The configuration is read only when it is the source, and
    never its client secret (scheduled query jobs stay quiet about its permissions).
    """
    if export_dir is not None:
        only_one(("--config", config_path), ("--db", db_url), ("--from-export", export_dir))
    else:
        only_one(("--db", db_url), ("--config", config_path))
    if timezone and not db_url:
        if export_dir:
            raise ConfigError("--timezone goes with --db; an export's manifest names its zone")
        raise ConfigError("--timezone goes with --db; with --config the config's zone is used")
    if export_dir:
        return DataSource(export_dir=export_dir)
    if db_url:
        recorded = _store_zone(db_url, timezone, "--timezone")
        return DataSource(url=db_url, timezone=timezone or recorded or DEFAULT_TIMEZONE)
    settings = load_config(config_path_from(config_path, os.environ))
    _store_zone(settings.store.url, settings.recorder.trading_day_timezone, str(settings.path))
    return DataSource.from_settings(settings)


def _store_zone(url: str, given: str | None, where: str) -> str | None:
    """The trading-day zone recorded in the store at ``url`` (None when none is), or
    ConfigError when ``given`` (said by ``where``) is another."""
    with StoreReader(url) as reader:
        recorded = reader.trading_day_timezone()
    if given and recorded and given != recorded:
        raise ConfigError(storemeta.disagreement(recorded, given, where))
    return recorded


def positions_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--positions FILE.csv``: the broker's end-of-day positions to reconcile with."""
    return click.option(
        "--positions",
        "positions_file",
        metavar="FILE.csv",
        help="The broker's end-of-day positions (account_id,symbol,quantity): list differences.",
    )(func)


def public_key_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--public-key KEY`` (repeatable): verifier keys signed checkpoints are checked with."""
    return click.option(
        "--public-key",
        "public_keys",
        multiple=True,
        metavar="KEY",
        help="Trust checkpoints signed by this verifier key (the line keygen printed, or its "
        ".pub file); repeatable. With --config, [signing] public_keys are trusted too.",
    )(func)


def trusting(
    source: DataSource, public_keys: tuple[str, ...], checkpoints_dir: str | None
) -> DataSource:
    """``source`` trusting ``public_keys`` besides its configuration's, and reading copies
    of the notes in ``checkpoints_dir`` (default: the configuration's ``checkpoint_dir``)."""
    keys = (*source.trust.keys, *public_keys)
    if checkpoints_dir is not None and not keys:
        raise ConfigError("--checkpoints needs a --public-key to check the notes with")
    trust = Trust.of(keys, checkpoints_dir or source.trust.notes_dir)
    if checkpoints_dir is None:  # the configuration's copies: reached as it says
        trust = replace(trust, notes_store=source.trust.notes_store)
    return replace(source, trust=trust)
