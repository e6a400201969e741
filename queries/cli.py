"""``studio-query``: exports and analytics over the recorder's store.

A thin skin over the ``queries`` Python API: options are parsed here, library
errors become one line on stderr here (exit 2 for usage/configuration errors,
1 for everything else), and nothing else happens here.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from recorder import __version__
from recorder.clishell import OneLineGroup, config_option, db_option
from recorder.errors import ConfigError
from recorder.interrupts import completed

from .audit import audit_source, audit_totals, render_audit
from .clioptions import (
    account_option,
    day_option,
    day_range,
    day_range_options,
    handle_errors,
    json_option,
    positions_option,
    public_key_option,
    resolve_source,
    source_options,
    store_options,
    trusting,
)
from .clirecords import archive_command, dump_command, trace_command
from .evening import default_out, run_evening, write_evening
from .export import Progress, export_day
from .gaps import COLUMNS as GAPS_COLUMNS
from .gaps import coverage_failures, gaps, gaps_totals, has_sequence_gaps, render_gaps
from .layout import manifest_path
from .reconcile import reconcile, reconcile_totals, render_reconcile
from .render import to_json
from .sqlcmd import render_csv, render_json, render_table, run_sql
from .verify import VerifyReport, render_verify, verify_totals

PROG = "studio-query"


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Export trading days and audit the recorder's store."""


cli.add_command(archive_command)
cli.add_command(dump_command)
cli.add_command(trace_command)


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
@handle_errors
def export_command(
    *,
    config_path: str | None,
    db_url: str | None,
    timezone: str | None,
    day: dt.date,
    out: Path,
    accounts: tuple[str, ...],
) -> None:
    """Export one trading day to Parquet files (one per account) and a manifest.

    Writes DIR/events/trading_day=DAY/ACCOUNT.parquet, DIR/connection_log/… and
    DIR/manifest/trading_day=DAY.json, atomically.
    """
    source = resolve_source(config_path, db_url, timezone=timezone)
    assert source.url is not None
    started = time.monotonic()
    with _progress_bar(day) as progress:
        manifest = export_day(
            source.url,
            day,
            out,
            accounts=list(accounts) or None,
            timezone=source.timezone,
            progress=progress,
            publishing=completed,  # an interrupt before this changed nothing; after it, none
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
@day_range_options
@account_option
@click.option(
    "--silence-s",
    type=click.FloatRange(min=0, min_open=True),
    help="Report silences longer than this (default: 2 x the liveness timeout).",
)
@click.option("--fail-on-gaps", is_flag=True, help="Exit 1 when any sequence gap exists.")
@click.option(
    "--fail-on-coverage",
    is_flag=True,
    help="Exit 1 when an account left more of the day's required hours ([coverage]) "
    "unrecorded than max_uncovered_s.",
)
@json_option
@handle_errors
def gaps_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    silence_s: float | None,
    fail_on_gaps: bool,
    fail_on_coverage: bool,
    as_json: bool,
) -> None:
    """Sequence gaps, coverage gaps and silences of a trading day (or each day of a range),
    per account, and how much of the day's required hours ([coverage]) was not recorded."""
    days = day_range(day, first, last)
    source = resolve_source(config_path, db_url, export_dir, timezone)

    def one(day: dt.date) -> dict[str, Any]:
        hours = source.hours(day)
        with source.open(day, accounts, payload=False, notices=False, columns=GAPS_COLUMNS) as ws:
            return gaps(
                ws, silence_s=silence_s, liveness_timeout_s=source.liveness_timeout_s, hours=hours
            )

    reports = [one(day) for day in days]
    _print_days(reports, render_gaps, gaps_totals, as_json)
    if any(
        (fail_on_gaps and has_sequence_gaps(r)) or (fail_on_coverage and coverage_failures(r))
        for r in reports
    ):
        sys.exit(1)


R = TypeVar("R")


def _print_days(
    reports: list[R],
    render: Callable[[R], str],
    totals: Callable[[list[R]], str],
    as_json: bool,
    document: Callable[[R], Any] = lambda report: report,
) -> None:
    """Each day's report printed as the single-day command prints it: one day alone as
    ever, several as a JSON list of those ``document``s, or as text one after the other
    followed by the totals."""
    if len(reports) == 1:
        click.echo(to_json(document(reports[0])) if as_json else render(reports[0]))
    elif as_json:
        click.echo(to_json([document(report) for report in reports]))
    else:
        click.echo("\n\n".join([*map(render, reports), totals(reports)]))


@cli.command("audit")
@source_options
@day_range_options
@account_option
@public_key_option
@json_option
@handle_errors
def audit_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    public_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Frames by type, replays, sessions, error notices, latency, chain and attestation of a
    day or each day of a range (with a public key, or [signing] public_keys from --config)."""
    days = day_range(day, first, last)
    source = resolve_source(config_path, db_url, export_dir, timezone)
    source = trusting(source, public_keys, None)
    reports = [audit_source(source, day, accounts) for day in days]
    _print_days(reports, render_audit, audit_totals, as_json)


@cli.command("reconcile")
@source_options
@day_range_options
@account_option
@positions_option
@click.option("--fail-on-breaks", is_flag=True, help="Exit 1 when any account has a break.")
@json_option
@handle_errors
def reconcile_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    positions_file: str | None,
    fail_on_breaks: bool,
    as_json: bool,
) -> None:
    """Bought, sold, VWAP and positions per symbol; orders; breaks (of a day, or of each day
    of a range against the same positions file)."""
    days = day_range(day, first, last)
    source = resolve_source(config_path, db_url, export_dir, timezone)

    def one(day: dt.date) -> dict[str, Any]:
        with source.open(day, accounts) as ws:
            return reconcile(ws, positions_file=positions_file)

    reports = [one(day) for day in days]
    _print_days(reports, render_reconcile, reconcile_totals, as_json)
    if fail_on_breaks and any(a["breaks"] for r in reports for a in r["accounts"]):
        sys.exit(1)


@cli.command("verify")
@config_option
@db_option
@click.option(
    "--from-export",
    "export_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    help="Verify an export directory (files against the manifest, and chains).",
)
@day_range_options
@account_option
@public_key_option
@click.option(
    "--checkpoints",
    "checkpoints_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    help="Copies of the signed notes kept outside the database ([signing] checkpoint_dir): "
    "each must be in the store, none ahead of it.",
)
@json_option
@handle_errors
def verify_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    public_keys: tuple[str, ...],
    checkpoints_dir: str | None,
    as_json: bool,
) -> None:
    """Recompute hash chains and check signed checkpoints; exit 1 naming the account and
    what is wrong (a changed, deleted or re-signed row, a rolled-back store).

    Without a public key only the chains are recomputed: that catches a careless edit,
    not a rewrite by whoever controls the database.
    """
    whole = day is None and first is None and last is None  # every day, as one chain
    source = trusting(resolve_source(config_path, db_url, export_dir), public_keys, checkpoints_dir)
    reports = [
        source.verify(d, accounts) for d in ([None] if whole else day_range(day, first, last))
    ]
    _print_days(reports, render_verify, verify_totals, as_json, VerifyReport.as_dict)
    if not all(report.ok for report in reports):
        sys.exit(1)


@cli.command("evening")
@source_options
@day_option
@account_option
@positions_option
@public_key_option
@click.option(
    "--out",
    "out",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the files go (default ./evening-DAY); a previous evening there is replaced.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the outcome as JSON (day, clean, findings, files) instead of the summary.",
)
@handle_errors
def evening_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date,
    accounts: tuple[str, ...],
    positions_file: str | None,
    public_keys: tuple[str, ...],
    out: Path | None,
    as_json: bool,
) -> None:
    """Verify, gaps, audit and reconcile of one day, the day loaded once.

    Writes verify.json, gaps.json, audit.json, reconcile.json (each what the single
    command prints with --json) and summary.txt to DIR, atomically, and prints the
    summary. Exit 1 when anything needs a look: a broken chain (or an unattested one
    where keys are configured), a sequence gap, an unclean session end, a break.
    """
    source = trusting(resolve_source(config_path, db_url, export_dir, timezone), public_keys, None)
    result = run_evening(source, day, accounts, positions_file=positions_file)
    written = write_evening(result, out or default_out(day))
    if as_json:
        files = {name: str(path) for name, path in written.items()}
        outcome = {"trading_day": day, "clean": result.clean,
                   "findings": list(result.findings), "files": files}  # fmt: skip
        click.echo(to_json(outcome))
    else:
        click.echo(result.summary())
        click.echo(f"written to {next(iter(written.values())).parent}")
    if not result.clean:
        sys.exit(1)


@cli.command("sql")
@source_options
@day_range_options
@account_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")
@click.argument("query", metavar='"SELECT ..."')
@handle_errors
def sql_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    query: str,
) -> None:
    """Ad-hoc DuckDB SQL over the views events, activity, orders, fills, positions,
    connection_log (of --day, of the days --from to --to, or of every day: then the whole
    store is read)."""
    if as_json and as_csv:
        raise ConfigError("give --json or --csv, not both")
    source = resolve_source(config_path, db_url, export_dir, timezone)
    if first is None and last is None:
        opened = source.open(day, accounts)
    else:
        opened = source.open_days(day_range(day, first, last), accounts)
    with opened as ws:
        result = run_sql(ws, query)
    if as_json:
        click.echo(render_json(result))
    elif as_csv:
        click.echo(render_csv(result), nl=False)
    else:
        click.echo(render_table(result))


def main() -> None:
    """Console-script entry point: usage errors, too, are one line on stderr."""
    cli.main(prog_name=PROG)
