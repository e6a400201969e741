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
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

import pyarrow as pa

from recorder.chain import GENESIS_HASH, canonical_log_bytes, verify_chain, verify_encoded

from .attested import (
    NO_KEYS_WARNING,
    NO_TRUST,
    Finding,
    Signed,
    Trust,
    chain_findings,
    copy_findings,
    day_of,
    fork_findings,
    open_signed,
    read_notes_dir,
    sequence_findings,
    summary,
)
from .canonical import canonical_array
from .duck import check_accounts
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
    #: With trusted keys: no problem and no row after the last signed checkpoint.
    attested: bool = False
    checkpoints: int = 0  # valid signed checkpoints checked
    attested_through_id: int | None = None
    unattested_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def attest(
        self,
        signed: list[Signed],
        seen: Mapping[int, tuple[int, str] | None],
        findings: list[Finding],
    ) -> None:
        """Record what the signed checkpoints say: their findings, and how far they attest."""
        self.problems += [Problem(f.what, f.row_id, f.expected, f.found) for f in findings]
        attestation = summary(signed, seen, (self.rows, self.last_id), not self.problems)
        self.attested = attestation.attested
        self.checkpoints = attestation.checkpoints
        self.attested_through_id = attestation.attested_through_id
        self.unattested_rows = attestation.unattested_rows


@dataclass
class VerifyReport:
    """Every account's check, and problems of the export that belong to no account."""

    source: str
    trading_day: dt.date | None
    accounts: list[ChainCheck]
    problems: list[Problem] = field(default_factory=list)
    attestation: bool = False  # checked against signed checkpoints (keys were given)

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
            "signatures_checked": self.attestation,
        }


def check_rows(
    account_id: str,
    batches: Iterable[pa.RecordBatch],
    anchor: str,
    trading_day: dt.date | None = None,
    resume: Mapping[int, str] | None = None,
    *,
    seen: dict[int, tuple[int, str] | None] | None = None,
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

    broken, check.head, check.rows = verify_encoded(rows(), ids, anchor, resume, seen=seen)
    if broken is not None:
        check.problems.append(Problem(CHANGED, broken.row_id, broken.expected, broken.stored))
    return check


# -- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StoreJob:
    """One account's verification (picklable: it may run in a worker process)."""

    url: str
    account: str
    day: dt.date | None
    trust: Trust
    store_id: str | None
    #: The stretch of the chain to read: (first id, last id, hash before it); None: all.
    stretch: tuple[int, int, str] | None = None
    empty: bool = False  # nothing of the account in the scope


def _store_job(job: _StoreJob) -> ChainCheck:
    with StoreReader(job.url) as reader:
        signed, findings = _stored_checkpoints(reader, job)
        watch: dict[int, tuple[int, str] | None] = {
            s.checkpoint.events.last_id: None for s in signed if s.checkpoint.events.last_id
        }
        anchor = job.stretch[2] if job.stretch else GENESIS_HASH
        if job.empty:
            check = ChainCheck(job.account, job.day, anchor=anchor, head=anchor)
        else:
            first, last = (job.stretch[0], job.stretch[1]) if job.stretch else (None, None)
            batches = reader.events(accounts=[job.account], first_id=first, last_id=last)
            check = check_rows(job.account, batches, anchor, job.day, seen=watch)
        log_watch: dict[int, tuple[int, str] | None] = {
            s.checkpoint.log.last_id: None for s in signed if s.checkpoint.log.last_id
        }
        check.problems += _log_chain_problems(reader, job.account, log_watch)
        if not job.trust.enabled:
            return check
        in_scope = signed
        if job.stretch is not None:
            in_scope = [s for s in signed if s.checkpoint.events.last_id <= job.stretch[1]]
            offset = reader.count_events(accounts=[job.account], id_range=(0, job.stretch[0] - 1))
        else:
            offset = 0
        findings += sequence_findings(signed)
        findings += chain_findings(in_scope, "events", watch, offset)
        findings += chain_findings(signed, "log", log_watch, 0)
        if job.trust.notes_dir is not None:
            findings += _copy_findings(reader, job, signed)
        check.attest(signed, watch, findings)
        return check


def _stored_checkpoints(reader: StoreReader, job: _StoreJob) -> tuple[list[Signed], list[Finding]]:
    """The account's checkpoints in the store (of the stretch), opened with the trusted keys."""
    if not job.trust.enabled:
        return [], []
    if job.store_id is None:
        return [], [Finding("the store has no store_id: run `studio-recorder db upgrade`")]
    stretch = (job.stretch[0], job.stretch[1]) if job.stretch else None
    verifiers = job.trust.verifiers()
    signed: list[Signed] = []
    findings: list[Finding] = []
    for row in reader.checkpoints(job.account, last_ids=stretch):
        where = f"checkpoint {row['id']}"
        opened = open_signed(row["note"], where, verifiers, job.store_id, job.account)
        if isinstance(opened, Finding):
            findings.append(opened)
            continue
        if _columns_of(opened) != tuple(row[c] for c in _STATE_COLUMNS):
            findings.append(Finding(f"{where}: its columns are not what its note signs"))
        signed.append(opened)
    return signed, findings


_STATE_COLUMNS: Final = (
    "events_count", "events_last_id", "events_head", "log_count", "log_last_id", "log_head",
)  # fmt: skip


def _columns_of(signed: Signed) -> tuple[object, ...]:
    e, g = signed.checkpoint.events, signed.checkpoint.log
    return (e.count, e.last_id, e.head, g.count, g.last_id, g.head)


def _log_chain_problems(
    reader: StoreReader, account: str, seen: dict[int, tuple[int, str] | None]
) -> list[Problem]:
    rows = [row for batch in reader.connection_log(accounts=[account]) for row in batch.to_pylist()]
    broken, _, _ = verify_chain(rows, encode=canonical_log_bytes, seen=seen)
    if broken is None:
        return []
    return [Problem(f"connection_log {CHANGED}", broken.row_id, broken.expected, broken.stored)]


def _copy_findings(reader: StoreReader, job: _StoreJob, signed: list[Signed]) -> list[Finding]:
    """The copies of the notes outside the database against the store's checkpoints."""
    assert job.trust.notes_dir is not None
    stored = {s.note for s in signed}
    verifiers = job.trust.verifiers()
    copies = []
    for where, note in read_notes_dir(job.trust.notes_dir):
        if job.day is not None and day_of(where.split(" note ")[0]) != job.day:
            continue
        opened = open_signed(note, where, verifiers, job.store_id, job.account)
        if isinstance(opened, Signed):
            copies.append(opened)
    if job.day is not None:
        stored = stored | _notes_of(reader, job.account)
    rows = (reader.count_events(accounts=[job.account]), reader.count_log(job.account))
    forks = fork_findings([*signed, *(c for c in copies if c.note not in stored)])
    return forks + copy_findings(copies, stored, rows)


def _notes_of(reader: StoreReader, account: str) -> set[str]:
    return {str(row["note"]) for row in reader.checkpoints(account)}


def verify_store(
    url: str,
    *,
    day: dt.date | None = None,
    accounts: Sequence[str] | None = None,
    configured: Sequence[str] = (),
    workers: int | None = None,
    trust: Trust = NO_TRUST,
) -> VerifyReport:
    """Check the chains of the store at ``url`` (every account, or ``accounts``).

    With ``day``: the stretch of each chain that the day's rows span. With ``trust``
    keys, also every signed checkpoint (:mod:`queries.attested`). Raises QueryError for an
    unreadable store or an account neither the store nor ``configured`` (the
    configuration's accounts) knows. ``workers``: processes to spread the accounts over
    (default: one per CPU when there are many rows).
    """
    jobs: list[_StoreJob] = []
    sizes: list[int] = []
    with StoreReader(url) as reader:
        check_accounts(reader, accounts or (), configured)
        source = reader.display_url
        store_id = reader.store_id()
        ranges = reader.id_ranges(day=day, accounts=list(accounts) if accounts else None)
        for account in sorted(set(accounts or ()) | set(ranges)):
            job = _StoreJob(url, account, day, trust, store_id)
            if account not in ranges:
                jobs.append(replace(job, stretch=(0, -1, GENESIS_HASH), empty=True))
                sizes.append(0)
                continue
            first, last, count = ranges[account]
            if day is not None:
                job = replace(job, stretch=(first, last, reader.chain_anchor(account, first)))
            jobs.append(job)
            sizes.append(count)
    checks = _run(_store_job, [(job,) for job in jobs], sizes, workers)
    return VerifyReport(source, day, checks, attestation=trust.enabled)


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


def render_verify(report: VerifyReport) -> str:
    """The verification result as text; failures name account, row id and what is wrong."""
    scope = f" for {report.trading_day}" if report.trading_day else ""
    lines = [f"Verify {report.source}{scope}: {'OK' if report.ok else 'FAILED'}"]
    headers = ["account", "day", "rows", "first_id", "last_id", "chain"]
    rows: list[tuple[object, ...]] = [
        (c.account_id, c.trading_day, c.rows, c.first_id, c.last_id, "ok" if c.ok else "FAILED")
        for c in report.accounts
    ]
    if report.attestation:
        headers += ["attested", "through_id", "unattested"]
        rows = [
            (*row, c.attested, c.attested_through_id, c.unattested_rows)
            for row, c in zip(rows, report.accounts, strict=True)
        ]
    lines.append(table(headers, rows))
    for check in report.accounts:
        for p in check.problems:
            lines.append(_problem_line(f"account {check.account_id}", p))
        if report.attestation and check.ok and check.unattested_rows:
            lines.append(
                f"NOTE account {check.account_id}: {check.unattested_rows} rows after "
                f"id {check.attested_through_id or 0} are not attested by a signed checkpoint yet"
            )
    lines.extend(_problem_line("export", p) for p in report.problems)
    if not report.attestation:
        lines.append(f"NOTE {NO_KEYS_WARNING}")
    return "\n".join(lines)


def _problem_line(who: str, p: Problem) -> str:
    where = f" row {p.row_id}" if p.row_id is not None else ""
    where += f" file {p.path}" if p.path else ""
    hashes = f" (expected {p.expected}, stored {p.stored})" if p.expected else ""
    return f"FAIL {who}:{where}: {p.what}{hashes}"
