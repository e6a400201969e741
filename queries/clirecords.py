"""``studio-query dump`` and ``trace``: the commands about the record's own frames, a thin
skin over :func:`queries.dump.dump` and :func:`queries.trace.trace` (registered on the
``studio-query`` group by :mod:`queries.cli`)."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

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
from .dump import FORMATS, Progress, dump
from .errors import UsageError
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
    with _progress(len(days)) as progress:
        done = dump(source, days, out, fmt=fmt, accounts=accounts, progress=progress)
    span = days[0].isoformat() if len(days) == 1 else f"{days[0]} to {days[-1]}"
    logs = f" and {done.log_rows:,} connection_log rows" if fmt == "jsonl" else ""
    click.echo(f"dumped {span}: {done.frames:,} frames{logs} → {done.path}")


@contextmanager
def _progress(days: int) -> Iterator[Progress | None]:
    """A progress bar over the days on stderr when it is a terminal (and there are several)."""
    if days < 2 or not sys.stderr.isatty():
        yield None
        return
    with ExitStack() as stack:
        bar: Any = stack.enter_context(
            click.progressbar(length=days, label="dumping", file=sys.stderr, show_pos=True)
        )

        def update(done: int, _total: int, _frames: int) -> None:
            bar.update(done - bar.pos)

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
