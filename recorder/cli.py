"""``studio-recorder``: the command line, a thin skin over the recorder's Python API.

Library errors become one line on stderr here and nowhere else: exit 2 for
configuration and usage errors, 1 for everything else that went wrong.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Final

import click
import trio
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import __version__, migrate, storemeta
from .clishell import (
    USAGE_EXIT,
    OneLineGroup,
    config_option,
    db_option,
    error_handler,
    fail,
    only_one,
    warn,
)
from .config import Settings, config_path_from, load_config
from .dberrors import db_error_line
from .demo import render_summary, run_demo
from .errors import ConfigError, RecorderError, StoreError
from .heap import freeze_startup_heap
from .logs import LogFormat, setup_logging
from .presence import Presence, ask_health, describe_presence, store_presence
from .runtime import run_recorder
from .signing import DEFAULT_KEY_NAME, SigningError, check_key_name, write_new_key
from .simulator import run_simulator
from .state import RecorderState
from .status import render_status, store_status
from .store import open_engine, safe_url
from .systemd import DEFAULT_CONFIG as DEFAULT_UNIT_CONFIG
from .systemd import DEFAULT_SECRET as DEFAULT_UNIT_SECRET
from .systemd import DEFAULT_SIGNING_KEY as DEFAULT_UNIT_SIGNING_KEY
from .systemd import DEFAULT_USER as DEFAULT_UNIT_USER
from .systemd import Notifier, executable, hidden_paths, render_unit

PROG = "studio-recorder"


handle_errors = error_handler(
    [
        (ConfigError, USAGE_EXIT, str),
        (RecorderError, 1, str),
        (SQLAlchemyError, 1, lambda exc: f"database error: {db_error_line(exc)}"),
    ]
)


def settings_from(config_path: str | None) -> Settings:
    """The configuration; its warnings (e.g. a secret named by a world-readable file) go to
    stderr, one line each."""
    settings = load_config(config_path_from(config_path, os.environ))
    for message in settings.warnings:
        warn(message)
    return settings


@contextmanager
def engine_from(
    config_path: str | None, db_url: str | None, *, must_exist: bool
) -> Iterator[Engine]:
    """The store named by ``--db`` or by the config's [store] url, disposed of afterwards."""
    only_one(("--db", db_url), ("--config", config_path))
    url = db_url or settings_from(config_path).store.url
    engine = open_engine(url, must_exist=must_exist)
    try:
        yield engine
    finally:
        engine.dispose()


#: Where other packages of the distribution add commands to ``studio-recorder`` (``prune``
#: lives with the archive's verification, in ``queries``, which this package never imports).
COMMANDS_ENTRY_POINT: Final = "studio_recorder.commands"


def _contributed() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=COMMANDS_ENTRY_POINT)}


class RecorderGroup(OneLineGroup):
    """The ``studio-recorder`` group: its own commands, and those of :data:`COMMANDS_ENTRY_POINT`
    (loaded only when named, so the recorder's own commands never import them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_contributed()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in (contributed := _contributed()):
            loaded = contributed[cmd_name].load()
            if not isinstance(loaded, click.Command):
                raise TypeError(f"entry point {cmd_name!r} is not a click command: {loaded!r}")
            command = loaded
        return command


@click.group(cls=RecorderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Record Clear Street Studio's Activity channel to a tamper-evident store."""


@cli.group()
def db() -> None:
    """Create, inspect and check the store's schema (alembic migrations)."""


@db.command("upgrade")
@config_option
@db_option
@click.option(
    "--repair",
    is_flag=True,
    help="Also put back append-only triggers that are missing or altered (and say which).",
)
@handle_errors
def db_upgrade(config_path: str | None, db_url: str | None, repair: bool) -> None:
    """Create or migrate the store to the newest schema (safe to run again).

    With --config, also records the configuration's trading-day time zone in the store the
    first time (and refuses a configuration whose zone is not the one recorded).
    """
    only_one(("--db", db_url), ("--config", config_path))
    settings = None if db_url else settings_from(config_path)
    url = db_url if settings is None else settings.store.url
    with engine_from(None, url, must_exist=False) as engine:
        before, after = migrate.upgrade(engine)
        if settings is not None:
            zone = settings.recorder.trading_day_timezone
            if storemeta.claim_zone(engine, zone, str(settings.path or "the configuration")):
                click.echo(f"{safe_url(engine.url)}: trading-day time zone {zone} recorded")
        repaired = migrate.repair(engine) if repair else []
        wrong = [] if repair else migrate.append_only_problems(engine)
    where = safe_url(engine.url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded from {before or 'empty'} to revision {after}")
    if repaired:
        click.echo(f"{where}: put back {', '.join(map(str, repaired))}")
    elif repair:
        click.echo(f"{where}: append-only triggers intact, nothing to repair")
    if wrong:
        raise StoreError(migrate.append_only_broken(wrong))


@db.command("current")
@config_option
@db_option
@handle_errors
def db_current(config_path: str | None, db_url: str | None) -> None:
    """Print the store's schema revision (and the newest one this version knows)."""
    with engine_from(config_path, db_url, must_exist=True) as engine:
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
    with engine_from(config_path, db_url, must_exist=True) as engine:
        revision = migrate.check(engine)
    click.echo(f"{safe_url(engine.url)}: schema at revision {revision} matches the models")


def log_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--log-format",
        type=click.Choice(["auto", "text", "json"]),
        default="auto",
        show_default=True,
        help="Log lines as text or JSON objects; auto: text on a terminal, JSON otherwise.",
    )(func)
    return click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
        help="Lowest level logged.",
    )(func)


@cli.command("run")
@config_option
@log_options
@handle_errors
def run_command(config_path: str | None, log_level: str, log_format: LogFormat) -> None:
    """Record every configured account until SIGTERM or SIGINT (then exit 0).

    Reads the configuration, checks the store's schema, and records each account's
    Activity channel over its own supervised connection. On SIGTERM/SIGINT it stops
    reading, closes every connection, commits every frame already read, and exits 0.
    """
    settings = settings_from(config_path)
    settings.require_credentials()
    setup_logging(log_level, log_format)
    engine = open_engine(settings.store.url, must_exist=True)  # never create it empty
    notifier = Notifier()
    freeze_startup_heap()  # a long-running process: collections skip what start-up left
    try:
        trio.run(
            functools.partial(
                run_recorder, settings, engine=engine, handle_signals=True, notifier=notifier
            )
        )
    finally:
        notifier.close()


@cli.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@handle_errors
def status_command(config_path: str | None, as_json: bool) -> None:
    """Each configured account's recording state today, read from the store.

    Last frame, today's last sequence and frame count, the latest session's state,
    sessions and reconnects today, the last close reason. Works while a recorder
    runs (it only reads). Exit 1 when the store's append-only triggers are missing or
    altered (``append_only`` in JSON).
    """
    settings = settings_from(config_path)
    engine = open_engine(settings.store.url, must_exist=True)
    try:
        migrate.require_schema(engine)
        accounts = settings.studio.accounts
        presence = store_presence(engine, accounts)
        rows = store_status(engine, accounts, settings.recorder.tz, time.time_ns(), presence)
        wrong = migrate.append_only_problems(engine)
    finally:
        engine.dispose()
    running = [p for p in presence.values() if p.running]
    health = ask_health(settings.metrics.address) if running else None
    recorder = (running or list(presence.values()) or [Presence(None, "no accounts")])[0]
    if as_json:
        append_only = {"ok": not wrong, "problems": [str(p) for p in wrong]}
        document = {
            "recorder": recorder.as_dict(),
            "health": health,
            "accounts": [r.as_dict() for r in rows],
            "append_only": append_only,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(render_status(rows))
        click.echo(describe_presence(recorder))
        if health is not None:
            click.echo(f"health: {health.get('status')}")
            for reason in health.get("reasons", []):
                click.echo(f"  {reason}")
    if wrong:
        raise StoreError(migrate.append_only_broken(wrong))


def _accounts(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    accounts = tuple(a.strip() for a in value.split(",") if a.strip())
    if not accounts or len(set(accounts)) != len(accounts):
        raise click.BadParameter("give distinct, comma-separated account ids")
    return accounts


@cli.command("sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="WebSocket port (0: any free port).",
)
@click.option(
    "--token-port",
    type=click.IntRange(0, 65535),
    default=8766,
    show_default=True,
    help="Token endpoint port (0: any free port).",
)
@click.option(
    "--accounts",
    default="100000,100001",
    show_default=True,
    callback=_accounts,
    help="Comma-separated account ids to simulate.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Sequenced frames per second per account.",
)
def sim_command(
    host: str, port: int, token_port: int, accounts: tuple[str, ...], rate: float
) -> None:
    """Serve a local Studio look-alike (WebSocket + token endpoint) until interrupted.

    Speaks the Activity channel protocol: token endpoint, subscribe and ack, day
    replay then replay-complete, live orders/fills/positions, heartbeats, the 30 s
    subscribe timeout and auth expiry. Prints its URLs and credentials; point a
    config's [studio] url and token_url at them (plain ws:// and http:// are
    accepted for loopback hosts only).
    """

    async def serve_until_signalled() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_simulator, host, port, accounts, rate, token_port)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(serve_until_signalled)
    except* OSError as group:
        exc = group.exceptions[0]
        fail(f"cannot listen on {host}: {getattr(exc, 'strerror', None) or exc}", 1)


@cli.command("demo")
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="How long to record.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("studio-demo"),
    show_default=True,
    help="Where the demo's SQLite store and config go (created if needed).",
)
@handle_errors
def demo_command(seconds: float, directory: Path) -> None:
    """Record the built-in simulator for a few seconds, then summarise the store.

    Starts the simulator and the recorder together on an embedded SQLite store in
    DIR, drops one connection halfway to show a reconnect and the day replay, stops
    cleanly and prints what was recorded. Afterwards DIR/recorder.toml names the
    store for `studio-recorder status` and `studio-query`.
    """
    tty = sys.stdout.isatty()
    setup_logging("ERROR", "text")  # the summary tells the story; keep the display clean

    def progress(elapsed: float, total: float, state: RecorderState) -> None:
        if not tty:
            return
        parts = [
            f"{a}: {s.frames} frames{'' if s.subscribed else ' (reconnecting)'}"
            for a, s in state.accounts.items()
        ]
        line = f"recording {elapsed:4.1f}/{total:g} s  " + "  ".join(parts)
        click.echo("\r" + line.ljust(100), nl=False)

    click.echo(f"demo: recording the simulator for {seconds:g} s into {directory}/")
    summary = trio.run(functools.partial(run_demo, directory, seconds, on_progress=progress))
    if tty:
        click.echo()
    click.echo(render_summary(summary))
    click.echo(f"store: {summary.database}   config: {directory / 'recorder.toml'}")
    config = directory / "recorder.toml"
    click.echo(f"next: studio-recorder status --config {config}")
    click.echo(f"      studio-query verify --config {config}   (checks the signatures too)")
    if not all(a.chain_ok for a in summary.accounts):
        fail("a hash chain does not verify", 1)
    if not all(a.attested for a in summary.accounts):
        fail("an account is not attested through its last row", 1)


def _key_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_key_name(value)
    except SigningError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("keygen")
@click.option(
    "--out",
    "path",
    required=True,
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the private key goes (created 0600); the verifier key goes to PATH.pub.",
)
@click.option(
    "--name",
    default=DEFAULT_KEY_NAME,
    show_default=True,
    callback=_key_name,
    help="The key's name, shown in every signature (no spaces, no '+').",
)
@handle_errors
def keygen_command(path: Path, name: str) -> None:
    """Create the Ed25519 key pair that signs checkpoints; print the verifier key.

    Writes the private key to PATH (mode 0600) and the verifier (public) key to
    PATH.pub (mode 0644); never overwrites either. The recorder signs with the
    private key: name it in the configuration as [signing] key_file (under systemd,
    hand it over with `systemd-unit --signing-key-file PATH` and set key_file =
    "studio-signing-key"). Anyone checking a store or an export needs only the
    verifier key: list it (or PATH.pub) in [signing] public_keys, or pass it to
    `studio-query verify --public-key`.
    """
    click.echo(write_new_key(path, name))


@cli.command("systemd-unit")
@click.option(
    "--user",
    metavar="USER",
    default=DEFAULT_UNIT_USER,
    show_default=True,
    help="The system user the service runs as (create it once with useradd --system).",
)
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_UNIT_CONFIG,
    show_default=True,
    help="Absolute path of the configuration the service reads.",
)
@click.option(
    "--secret-file",
    default=DEFAULT_UNIT_SECRET,
    show_default=True,
    help="Absolute path of the client secret, handed over with LoadCredential=.",
)
@click.option(
    "--signing-key-file",
    default=DEFAULT_UNIT_SIGNING_KEY,
    show_default=True,
    help="Absolute path of the checkpoint signing key (`keygen`), handed over with "
    "LoadCredential=.",
)
def systemd_unit_command(
    user: str, config_path: str, secret_file: str, signing_key_file: str
) -> None:
    """Print a ready systemd unit (Type=notify, watchdog, hardening) for `run`.

    Save it as /etc/systemd/system/studio-recorder.service, then
    `systemctl daemon-reload && systemctl enable --now studio-recorder`. The unit
    runs `db upgrade` before starting, hands the client secret and the checkpoint
    signing key over as systemd credentials (set client_secret_file =
    "studio-client-secret" and, in [signing], key_file = "studio-signing-key" in the
    config), and keeps a SQLite store in /var/lib/studio-recorder.
    """
    for name, value in (
        ("--config", config_path),
        ("--secret-file", secret_file),
        ("--signing-key-file", signing_key_file),
    ):
        if not value.startswith("/"):
            fail(f"{name} must be an absolute path (got {value!r})", 2)
    exe = executable()
    paths = {"--config": config_path, "--secret-file": secret_file,
             "--signing-key-file": signing_key_file, "the program": exe}  # fmt: skip
    for warning in hidden_paths(paths):
        warn(warning)
    unit = render_unit(
        user=user, config=config_path, secret_file=secret_file, signing_key_file=signing_key_file,
        exe=exe,
    )  # fmt: skip
    click.echo(unit, nl=False)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name=PROG)
