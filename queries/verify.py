"""Tamper verification: recompute every account's hash chain, in the store or in an export.

The chain (``recorder.chain``) covers every recorded field of every ``events`` row
in ``id`` order per account, so recomputing it with
:func:`recorder.chain.verify_chain` finds any row that was changed, removed,
inserted or reordered; the report names the account, the first bad row id, the
hash expected there and the hash stored. Rows stream from the store or the files in
bounded batches, one account at a time, so memory does not grow with the store.

* Whole store: each account from the genesis hash over all its rows.
* One day (``day``): each account's stretch of its chain from the day's first row
  to its last (rows of other days in between included), from the hash of the row
  before it (:meth:`~queries.source.StoreReader.chain_anchor`).
* An export: each file's size, SHA-256 and row count against the manifest, no file
  missing or unlisted, and each account's events file chained from the manifest's
  ``chain_anchor`` to its ``last_chain_hash``.

Limits: removing an account's *last* rows from the store leaves a shorter chain that
is still valid — only an external copy of the head (an export manifest, a report
kept elsewhere) reveals it. ``connection_log`` is not chained; in an export, its
files are covered by the manifest's SHA-256 only, and the manifest itself is not
signed. Large jobs are spread over worker processes (one per CPU).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.chain import GENESIS_HASH, verify_encoded

from .canonical import canonical_array
from .contract import EVENTS_SCHEMA
from .duck import check_accounts
from .errors import QueryError
from .exportdir import ExportDir, read_file
from .layout import TABLES, day_dir, file_path
from .manifest import FileEntry, Manifest
from .render import table
from .source import StoreReader

CHANGED: Final = "row changed, removed or reordered"
#: Below this many rows in total, chains are checked in this process (no workers).
PARALLEL_MIN_ROWS: Final = 200_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong: what, and where (row id and hashes for a chain break, or a file)."""

    what: str
    row_id: int | None = None
    expected: str | None = None
    stored: str | None = None
    path: str | None = None


@dataclass
class ChainCheck:
    """The result of checking one account (for one day of an export, or of the store)."""

    account_id: str
    trading_day: dt.date | None = None
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    anchor: str = GENESIS_HASH
    first_hash: str | None = None
    head: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    """Every account's check, and problems of the export that belong to no account."""

    source: str
    trading_day: dt.date | None
    accounts: list[ChainCheck]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(check.ok for check in self.accounts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ok", "source", "trading_day", "accounts": [...], "problems"}``."""
        return {
            "ok": self.ok,
            "source": self.source,
            "trading_day": self.trading_day,
            "accounts": [{**asdict(c), "ok": c.ok} for c in self.accounts],
            "problems": [asdict(p) for p in self.problems],
        }


def check_rows(
    account_id: str,
    batches: Iterable[pa.RecordBatch],
    anchor: str,
    trading_day: dt.date | None = None,
    resume: Mapping[int, str] | None = None,
) -> ChainCheck:
    """Recompute the chain over ``batches`` (one account, id order) starting at ``anchor``."""
    check = ChainCheck(account_id, trading_day, anchor=anchor, head=anchor)

    ids: list[int] = []

    def rows() -> Iterator[tuple[bytes, str]]:
        for batch in batches:
            if not batch.num_rows:
                continue
            batch_ids = batch.column("id").to_pylist()
            hashes = batch.column("chain_hash").to_pylist()
            if check.first_id is None:
                check.first_id = batch_ids[0]
                check.first_hash = hashes[0]
            check.last_id = batch_ids[-1]
            ids.extend(batch_ids)
            yield from zip(canonical_array(batch).to_pylist(), hashes, strict=True)

    broken, check.head, check.rows = verify_encoded(rows(), ids, anchor, resume)
    if broken is not None:
        check.problems.append(Problem(CHANGED, broken.row_id, broken.expected, broken.stored))
    return check


# -- the store ------------------------------------------------------------------------------


def _store_job(
    url: str,
    account: str,
    first_id: int | None,
    last_id: int | None,
    anchor: str,
    day: dt.date | None,
) -> ChainCheck:
    with StoreReader(url) as reader:
        batches = reader.events(accounts=[account], first_id=first_id, last_id=last_id)
        return check_rows(account, batches, anchor, day)


def verify_store(
    url: str,
    *,
    day: dt.date | None = None,
    accounts: Sequence[str] | None = None,
    configured: Sequence[str] = (),
    workers: int | None = None,
) -> VerifyReport:
    """Check the chains of the store at ``url`` (every account, or ``accounts``).

    With ``day``: the stretch of each chain that the day's rows span. Raises
    QueryError for an unreadable store or an account neither the store nor
    ``configured`` (the configuration's accounts) knows. ``workers``: processes to
    spread the accounts over (default: one per CPU when there are many rows).
    """
    jobs: list[tuple[Any, ...]] = []
    sizes: list[int] = []
    with StoreReader(url) as reader:
        check_accounts(reader, accounts or (), configured)
        source = reader.display_url
        ranges = reader.id_ranges(day=day, accounts=list(accounts) if accounts else None)
        for account in sorted(set(accounts or ()) | set(ranges)):
            if account not in ranges:
                jobs.append((url, account, 0, -1, GENESIS_HASH, day))  # nothing to check
                sizes.append(0)
                continue
            first, last, count = ranges[account]
            if day is None:
                jobs.append((url, account, None, None, GENESIS_HASH, None))
            else:
                jobs.append((url, account, first, last, reader.chain_anchor(account, first), day))
            sizes.append(count)
    checks = _run(_store_job, jobs, sizes, workers)
    return VerifyReport(source, day, checks)


def _run(
    job: Any, jobs: list[tuple[Any, ...]], sizes: list[int], workers: int | None
) -> list[ChainCheck]:
    """Run ``job(*args)`` for every args tuple; in worker processes when it is worth it."""
    count = workers if workers is not None else min(os.cpu_count() or 1, len(jobs))
    if count <= 1 or (workers is None and sum(sizes) < PARALLEL_MIN_ROWS):
        return [job(*args) for args in jobs]
    # Largest first, so the slowest account does not start last.
    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = {i: pool.submit(job, *jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]


# -- an export ------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_problems(export: ExportDir, day: dt.date, entry: FileEntry) -> list[Problem]:
    rel = entry.path
    try:
        path = export.file(rel)
    except QueryError:
        return [Problem("manifest names a path outside the export directory", path=rel)]
    # The writer's own layout function: an id it encodes specially (``..``, ``~``) is
    # not reported as misplaced.
    if rel != file_path(entry.table, day, entry.account_id):
        return [Problem("file is not where the layout puts its table, day and account", path=rel)]
    if not path.is_file():
        return [Problem("file listed in the manifest is missing", path=rel)]
    problems = []
    size = path.stat().st_size
    if size != entry.bytes:
        problems.append(Problem(f"file has {size} bytes, manifest says {entry.bytes}", path=rel))
    if _sha256(path) != entry.sha256:
        problems.append(
            Problem("file content changed (SHA-256 differs from the manifest)", path=rel)
        )
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        return [*problems, Problem(f"not a readable Parquet file: {exc}", path=rel)]
    if rows != entry.rows:
        problems.append(Problem(f"file has {rows} rows, manifest says {entry.rows}", path=rel))
    return problems


def _unlisted(export: ExportDir, day: dt.date, listed: set[str]) -> list[Problem]:
    found = []
    for table_name in TABLES:
        base = export.root / day_dir(table_name, day)
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                rel = path.relative_to(export.root).as_posix()
                if path.is_file() and rel not in listed:
                    found.append(Problem("file is not listed in the manifest", path=rel))
    return found


def _export_chain(
    export: ExportDir, manifest: Manifest, account: str, entry: FileEntry
) -> ChainCheck:
    day = manifest.trading_day
    facts = manifest.accounts[account]
    anchor = facts.chain_anchor or GENESIS_HASH
    path = export.file(entry.path)
    # Rows whose predecessor in the account's chain belongs to another day.
    resume = dict(facts.chain_resume)
    try:
        check = check_rows(
            account,
            read_file(path, export.root / "events", "events", EVENTS_SCHEMA.names),
            anchor,
            day,
            resume,
        )
    except QueryError as exc:
        return ChainCheck(
            account, day, anchor=anchor, problems=[Problem(str(exc), path=entry.path)]
        )
    expectations = (
        (facts.events, check.rows, "rows"),
        (facts.first_id, check.first_id, "first row id"),
        (facts.last_id, check.last_id, "last row id"),
        (facts.first_chain_hash, check.first_hash, "first row's chain_hash"),
    )
    low, high = manifest.id_range
    for row_id in (check.first_id, check.last_id):
        outside = row_id is not None and (
            (low is not None and row_id < low) or (high is not None and row_id > high)
        )
        if outside:
            check.problems.append(
                Problem(f"row {row_id} lies outside the manifest's id_range", path=entry.path)
            )
    for stated, actual, label in expectations:
        if stated != actual:
            check.problems.append(
                Problem(f"{label} is {actual}, manifest says {stated}", path=entry.path)
            )
    if check.ok and facts.last_chain_hash not in (None, check.head):
        check.problems.append(
            Problem(
                "chain does not end at the manifest's last_chain_hash: rows removed at the end, "
                "or the manifest changed",
                row_id=check.last_id,
                expected=facts.last_chain_hash,
                stored=check.head,
            )
        )
    return check


def verify_export(
    directory: str | Path, *, day: dt.date | None = None, accounts: Sequence[str] | None = None
) -> VerifyReport:
    """Check an export directory (every exported day, or ``day``) against its manifests.

    Raises QueryError when the directory or the day's manifest is missing or not an
    export manifest; everything wrong inside is reported, not raised.
    """
    export = ExportDir(directory)
    days = [day] if day is not None else export.days()
    if not days:
        raise QueryError(f"no exported day in {export.root} (manifest/ is empty)")
    wanted = None if not accounts else set(accounts)
    if wanted is not None:
        unknown = wanted - export.accounts(days)
        if unknown:
            raise QueryError(
                f"unknown account {sorted(unknown)[0]!r}: not in the export {export.root}"
            )
    report = VerifyReport(str(export.root), day, [])
    for one_day in days:
        report.problems.extend(() if wanted else _unlisted_of(export, one_day))
        report.accounts.extend(_verify_export_day(export, export.manifest(one_day), wanted))
    return report


def _unlisted_of(export: ExportDir, day: dt.date) -> list[Problem]:
    return _unlisted(export, day, {entry.path for entry in export.manifest(day).files})


def _verify_export_day(
    export: ExportDir, manifest: Manifest, wanted: set[str] | None
) -> list[ChainCheck]:
    """Every file of one exported day against its manifest entry, and each account's chain."""
    day = manifest.trading_day
    checks: dict[str, ChainCheck] = {}
    events_files: dict[str, FileEntry] = {}
    for entry in manifest.files:
        account = entry.account_id
        if wanted is not None and account not in wanted:
            continue
        problems = _file_problems(export, day, entry)
        if problems:
            checks.setdefault(account, ChainCheck(account, day)).problems.extend(problems)
        if entry.table == "events":
            events_files[account] = entry
    for account, facts in sorted(manifest.accounts.items()):
        if wanted is not None and account not in wanted:
            continue
        events_file = events_files.get(account)
        if events_file is None:
            if facts.events:
                checks.setdefault(account, ChainCheck(account, day)).problems.append(
                    Problem(f"manifest counts {facts.events} events but lists no events file")
                )
            continue
        check = _export_chain(export, manifest, account, events_file)
        check.problems[:0] = checks.get(account, ChainCheck(account)).problems
        checks[account] = check
    for account in sorted(set(events_files) - set(manifest.accounts)):
        checks.setdefault(account, ChainCheck(account, day)).problems.append(
            Problem(
                "events file of an account the manifest's accounts do not list",
                path=events_files[account].path,
            )
        )
    return [checks[a] for a in sorted(checks)]


def render_verify(report: VerifyReport) -> str:
    """The verification result as text; failures name account, row id and what is wrong."""
    scope = f" for {report.trading_day}" if report.trading_day else ""
    lines = [f"Verify {report.source}{scope}: {'OK' if report.ok else 'FAILED'}"]
    rows = [
        (c.account_id, c.trading_day, c.rows, c.first_id, c.last_id, "ok" if c.ok else "FAILED")
        for c in report.accounts
    ]
    lines.append(table(["account", "day", "rows", "first_id", "last_id", "chain"], rows))
    for check in report.accounts:
        for p in check.problems:
            lines.append(_problem_line(f"account {check.account_id}", p))
    lines.extend(_problem_line("export", p) for p in report.problems)
    return "\n".join(lines)


def _problem_line(who: str, p: Problem) -> str:
    where = f" row {p.row_id}" if p.row_id is not None else ""
    where += f" file {p.path}" if p.path else ""
    hashes = f" (expected {p.expected}, stored {p.stored})" if p.expected else ""
    return f"FAIL {who}:{where}: {p.what}{hashes}"
