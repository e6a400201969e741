"""``studio-recorder prune``: deleting from the store the trading days the archive keeps.

Every day the store holds before ``before`` must be in the archive and verify there, read
back now (files against the manifest, chains, signatures where keys are configured), and
the archived manifest must say of each account exactly what the store holds (count, first
and last id, chain hash at the last row). One day that does not is a refusal naming the day
and the reason, and nothing is deleted. Then :mod:`recorder.prune` writes a ``prunes`` row
per account and day (with the archived manifest's SHA-256) and deletes the rows it covers,
in one transaction that checks again that the store still holds exactly what was verified.

A day whose frames interleave with a later day's that stays (see
:func:`recorder.prune.prunable`) is kept this time and reported; ``dry_run`` reports what
would go without deleting anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from recorder.errors import ConfigError
from recorder.migrate import require_schema
from recorder.prune import DayRows, Verified, apply, day_rows, prunable
from recorder.store import open_engine

from .archive import archived_day, differences, failures
from .datasource import DataSource
from .errors import QueryError, UsageError
from .exportcheck import verify_export
from .objectstore import archive_target, archived_manifest
from .render import table

PRUNED: Final = "pruned"
WOULD_PRUNE: Final = "would be pruned"
KEPT: Final = "kept"

#: ``progress(days checked, days in all)``.
Progress = Callable[[int, int], None]


class PruneRefused(QueryError):
    """A day to prune is missing from the archive or does not verify there: nothing deleted."""


@dataclass(frozen=True)
class PrunedDay:
    """One day's outcome."""

    trading_day: dt.date
    accounts: int
    rows: int
    status: str
    detail: str = ""


def prune(
    source: DataSource,
    before: dt.date,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[PrunedDay]:
    """Prune the days of ``source``'s store before ``before`` (see the module).

    ConfigError without ``[archive] url``; PruneRefused (nothing deleted) for a day the
    archive lacks or that does not verify there; QueryError for an archive that cannot be
    read; :class:`recorder.prune.PruneError` when the store changed meanwhile.
    """
    if source.archive.url is None:
        raise ConfigError("no [archive] url in the configuration: prune deletes only archived days")
    if source.url is None:
        raise UsageError("prune deletes from the store: give --config")
    engine = open_engine(source.url)
    try:
        require_schema(engine)
        with engine.connect() as conn:
            rows = day_rows(conn, before)
        days = sorted({r.trading_day for r in rows})
        verified: list[Verified] = []
        for n, day in enumerate(days, start=1):
            verified += _verified(source, day, [r for r in rows if r.trading_day == day])
            if progress is not None:
                progress(n, len(days))
        with engine.connect() as conn:
            going, kept = prunable(conn, before, days)
        if not dry_run:
            apply(engine, [v for v in verified if v.rows.trading_day in going])
    finally:
        engine.dispose()
    held = {k.trading_day: k.reason for k in kept}
    status = WOULD_PRUNE if dry_run else PRUNED
    return [
        PrunedDay(
            day,
            len({r.account_id for r in rows if r.trading_day == day}),
            sum(r.row_count for r in rows if r.trading_day == day),
            KEPT if day in held else status,
            held.get(day, ""),
        )
        for day in days
    ]


def _verified(source: DataSource, day: dt.date, rows: Sequence[DayRows]) -> list[Verified]:
    """The day's rows as the archive holds and verifies them now; PruneRefused otherwise."""
    settings = source.archive
    assert settings.url is not None
    assert source.url is not None
    target = archive_target(settings)
    with archived_day(target, day) as back:
        if back is None:
            raise PruneRefused(f"{day}: not in the archive {settings.url}: run `studio-query "
                               "archive` first; nothing was deleted")  # fmt: skip
        problems = failures(verify_export(back, day=day, trust=source.trust))
        if problems:
            raise PruneRefused(f"{day}: the archived copy does not verify: {problems[0]}; "
                               "nothing was deleted")  # fmt: skip
        read_back = archived_manifest(back, day)  # the very bytes just verified
        assert read_back is not None
        digest, manifest = read_back
    differ = differences(source.url, day, manifest)
    if differ:
        raise PruneRefused(f"{day}: the archived copy differs from the store: {differ[0]}; "
                           "nothing was deleted")  # fmt: skip
    return [
        Verified(r, manifest.accounts[r.account_id].last_chain_hash or "", digest) for r in rows
    ]


def render_prune(days: list[PrunedDay]) -> str:
    """The outcome as text: a line per day, then why a day was kept."""
    if not days:
        return "nothing to prune: the store holds no day before then"
    lines = [table(["day", "accounts", "rows", "status"],
                   [(d.trading_day, d.accounts, d.rows, d.status) for d in days])]  # fmt: skip
    lines += [f"{d.trading_day}: {d.status}: {d.detail}" for d in days if d.status == KEPT]
    return "\n".join(lines)


def as_json(days: list[PrunedDay]) -> list[dict[str, Any]]:
    return [asdict(d) for d in days]
