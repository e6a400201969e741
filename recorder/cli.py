"""``studio-recorder``: the command line, a thin skin over the recorder's Python API.

Library errors become one line on stderr here and nowhere else: exit 2 for
configuration and usage errors, 1 for everything else that went wrong.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import __version__, migrate
from .config import Settings, config_path_from, load_config
from .errors import ConfigError, RecorderError
from .store import open_engine, safe_url

P = ParamSpec("P")
R = TypeVar("R")
PROG = "studio-recorder"


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def db_error_line(exc: SQLAlchemyError) -> str:
    """One line for a database error: the driver's first line, never the SQL or its parameters."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into one line and an exit code; let bugs raise."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except RecorderError as exc:
            fail(str(exc), 1)
        except SQLAlchemyError as exc:
            fail(f"database error: {db_error_line(exc)}", 1)

    return wrapper


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=str),
        help="Configuration file (TOML). Default: $STUDIO_RECORDER_CONFIG.",
    )(func)


def db_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="SQLAlchemy database URL, instead of [store] url from --config.",
    )(func)


def settings_from(config_path: str | None) -> Settings:
    return load_config(config_path_from(config_path, os.environ))


def engine_from(config_path: str | None, db_url: str | None, *, must_exist: bool) -> Engine:
    """The store named by ``--db`` or by the config's [store] url."""
    if db_url and config_path:
        raise ConfigError("give either --db or --config, not both")
    url = db_url or settings_from(config_path).store.url
    return open_engine(url, must_exist=must_exist)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Record Clear Street Studio's Activity channel to a tamper-evident store."""


@cli.group()
def db() -> None:
    """Create, inspect and check the store's schema (alembic migrations)."""


@db.command("upgrade")
@config_option
@db_option
@handle_errors
def db_upgrade(config_path: str | None, db_url: str | None) -> None:
    """Create or migrate the store to the newest schema (safe to run again)."""
    engine = engine_from(config_path, db_url, must_exist=False)
    before, after = migrate.upgrade(engine)
    where = safe_url(engine.url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded from {before or 'empty'} to revision {after}")


@db.command("current")
@config_option
@db_option
@handle_errors
def db_current(config_path: str | None, db_url: str | None) -> None:
    """Print the store's schema revision (and the newest one this version knows)."""
    engine = engine_from(config_path, db_url, must_exist=True)
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"behind: run `{PROG} db upgrade`"
    click.echo(f"{current or 'empty (no schema)'} (head {head}; {state})")


@db.command("check")
@config_option
@db_option
@handle_errors
def db_check(config_path: str | None, db_url: str | None) -> None:
    """Exit 0 when the store is at the newest revision and matches the models, else 1."""
    engine = engine_from(config_path, db_url, must_exist=True)
    revision = migrate.check(engine)
    click.echo(f"{safe_url(engine.url)}: schema at revision {revision} matches the models")


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name=PROG)
    except KeyboardInterrupt:
        sys.exit(130)
