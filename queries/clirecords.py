"""``studio-query archive``, ``dump`` and ``trace``: the commands about keeping the record and
reading its own frames, a thin skin over :func:`queries.archive.archive`,
:func:`queries.dump.dump` and :func:`queries.trace.trace` (registered on the ``studio-query``
group by :mod:`queries.cli`); and ``studio-recorder prune`` over :func:`queries.prune.prune`,
which the ``studio-recorder`` group finds through the ``studio_recorder.commands`` entry
point (the recorder package never imports this one)."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from recorder.clishell import config_option

from .archive import ALARMS, archive, render_archive
from .archive import as_json as archived_json
from .clioptions import (
    account_option,
    day_range,
    day_range_options,
    handle_errors,
    json_option,
    parse_day_option,
    resolve_source,
    source_options,
)
from .dump import FORMATS, dump
from .errors import UsageError
from .prune import as_json as pruned_json
from .prune import prune, render_prune
from .render import to_json
from .trace import render_trace, trace


@click.command("dump")
@source_options
@day_range_options
@account_option
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="jsonl: a JSON object per line (frames, then the sessions' log rows); "
              "csv: a header and a row per frame.")  # fmt: skip
@click.option("--out", "out", required=True, metavar="FILE", type=click.Path(path_type=Path),
              help="The file to write (replaced atomically; 0600).")  # fmt: skip
@handle_errors
def dump_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    day: dt.date | None,
    first: dt.date | None,
    last: dt.date | None,
    accounts: tuple[str, ...],
    fmt: str,
    out: Path,
) -> None:
    """The human-readable copy: every stored frame of the days, in store order.

    One line per frame with the store's column names (id, received_at, received_at_ns,
    account_id, session_id, sequence, replayed, msg_type, raw_kind, raw — raw exactly as
    stored); as JSON Lines also one line per connection_log row of the days' sessions.
    """
    days = day_range(day, first, last)
    source = resolve_source(config_path, db_url, export_dir, timezone)
    with _day_progress("dumping") as progress:
        done = dump(source, days, out, fmt=fmt, accounts=accounts, progress=progress)
    span = days[0].isoformat() if len(days) == 1 else f"{days[0]} to {days[-1]}"
    logs = f" and {done.log_rows:,} connection_log rows" if fmt == "jsonl" else ""
    click.echo(f"dumped {span}: {done.frames:,} frames{logs} → {done.path}")


@contextmanager
def _day_progress(label: str) -> Iterator[Callable[..., None] | None]:
    """A progress bar over days on stderr when it is a terminal (``update(done, total, …)``),
    from the first day done; else None."""
    if not sys.stderr.isatty():
        yield None
        return
    with ExitStack() as stack:
        bars: list[Any] = []

        def update(done: int, total: int, *_: object) -> None:
            if not bars:
                bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
                bars.append(stack.enter_context(bar))
            bars[0].update(done - bars[0].pos)

        yield update


@click.command("trace")
@source_options
@click.option("--order-id", "order_id", required=True, metavar="ID", help="The order to trace.")
@account_option
@click.option("--from", "first", metavar="YYYY-MM-DD", callback=parse_day_option,
              help="First trading day to search (with --to). Default: every day.")  # fmt: skip
@click.option("--to", "last", metavar="YYYY-MM-DD", callback=parse_day_option,
              help="Last trading day to search (with --from; inclusive).")  # fmt: skip
@json_option
@handle_errors
def trace_command(
    *,
    config_path: str | None,
    db_url: str | None,
    export_dir: str | None,
    timezone: str | None,
    order_id: str,
    accounts: tuple[str, ...],
    first: dt.date | None,
    last: dt.date | None,
    as_json: bool,
) -> None:
    """Every frame of one order (its order-updates and fills), in receipt order, once per
    sequence with its copies counted; and its final state."""
    if (first is None) != (last is None):
        raise UsageError("give both --from and --to (or neither: every day)")
    days = None if first is None else day_range(None, first, last)
    source = resolve_source(config_path, db_url, export_dir, timezone)
    report = trace(source, order_id, days, accounts)
    click.echo(to_json(report) if as_json else render_trace(report))


@click.command("archive")
@config_option
@click.option("--through", "through", metavar="YYYY-MM-DD", callback=parse_day_option,
              help="Last day to archive (default: yesterday in the trading-day zone).")  # fmt: skip
@json_option
@handle_errors
def archive_command(*, config_path: str | None, through: dt.date | None, as_json: bool) -> None:
    """Archive every complete trading day the store holds and [archive] does not: export it
    there, read it back and verify it; exit 1 when an archived day differs from the store
    or does not verify (it is never overwritten)."""
    source = resolve_source(config_path, None)
    with _day_progress("archiving") as progress:
        days = archive(source, through, progress=progress)
    click.echo(to_json(archived_json(days)) if as_json else render_archive(days))
    if any(day.status in ALARMS for day in days):
        sys.exit(1)


@click.command("prune")
@config_option
@click.option("--before", "before", required=True, metavar="YYYY-MM-DD",
              callback=parse_day_option,
              help="Prune the trading days before this one (it stays).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Say what would go; delete nothing.")
@json_option
@handle_errors
def prune_command(
    *, config_path: str | None, before: dt.date, dry_run: bool, as_json: bool
) -> None:
    """Delete from the store the trading days before --before that [archive] holds and that
    verify there, read back now; each is recorded in the store's `prunes` table. Refuses
    (exit 1, nothing deleted) when a day is missing from the archive or does not verify."""
    source = resolve_source(config_path, None)
    with _day_progress("checking the archive") as progress:
        days = prune(source, before, dry_run=dry_run, progress=progress)
    click.echo(to_json(pruned_json(days)) if as_json else render_prune(days))
