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
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from recorder.config import config_path_from, load_config
from recorder.errors import ConfigError

from . import __version__
from .errors import QueryError
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


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name=PROG)
    except KeyboardInterrupt:
        sys.exit(130)
