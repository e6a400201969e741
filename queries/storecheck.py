"""Verifying the store: every account's chains, and with trusted keys its signed checkpoints.

* Whole store: each account's ``events`` chain from the genesis hash over all its rows,
  and its ``connection_log`` chain; every account with rows in either, or with
  checkpoints, is checked (and, with copies of the notes, every account they name).
* One day (``day``): each account's stretch of its ``events`` chain from the day's first
  row to its last (rows of other days in between included), from the hash of the row
  before it (:meth:`~queries.source.StoreReader.chain_anchor`); the ``connection_log``
  chain whole; the checkpoints whose last row lies in the stretch.

With trusted keys (:class:`~queries.attested.Trust`), the checks of
:mod:`queries.attested`. Rows stream in bounded batches, one account at a time, so memory
does not grow with the store; large jobs are spread over worker processes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import pyarrow as pa

from recorder.chain import GENESIS_HASH, canonical_log_bytes, verify_chain
from recorder.checkpoint import Checkpoint, CheckpointFormatError
from recorder.signing import SigningError, open_note

from .attested import (
    NO_TRUST,
    Finding,
    Signed,
    Trust,
    chain_findings,
    copy_findings,
    day_of,
    fork_findings,
    open_signed,
    read_notes,
    sequence_findings,
)
from .duck import check_accounts
from .source import StoreReader
from .verify import (
    CHANGED,
    AccountChain,
    ChainCheck,
    Problem,
    Pruned,
    VerifyReport,
    check_interleaved,
    check_rows,
    run_jobs,
)

#: The columns of ``checkpoints`` that repeat what its note signs.
_STATE_COLUMNS: Final = (
    "events_count", "events_last_id", "events_head", "log_count", "log_last_id", "log_head",
)  # fmt: skip

Watch = dict[int, tuple[int, str] | None]


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
    #: ``(where, note)`` copies of this account's notes from outside the database.
    copies: tuple[tuple[str, str], ...] = field(default=())
    #: Whole store: where the account's pruned prefix ends (last id, chain hash there).
    tail: tuple[int, str] | None = None


def _store_job(job: _StoreJob, chain: AccountChain | None = None) -> ChainCheck:
    """Verify one account; ``chain``: its ``events`` chain already recomputed (by
    :func:`check_interleaved` over rows in memory), else its rows are read and checked."""
    with StoreReader(job.url) as reader:
        signed, findings = _stored_checkpoints(reader, job)
        watch: Watch = {s.checkpoint.events.last_id: None for s in signed}
        log_watch: Watch = {s.checkpoint.log.last_id: None for s in signed}
        if chain is None:
            anchor = job.stretch[2] if job.stretch else GENESIS_HASH
            first, last = (job.stretch[0], job.stretch[1]) if job.stretch else (None, None)
            batches = reader.events(accounts=[job.account], first_id=first, last_id=last)
            check = check_rows(job.account, batches, anchor, job.day, seen=watch)
        else:
            check = replace(chain.check, problems=[])
            watch.update({row_id: chain.hash_at(row_id) for row_id in watch})
        if job.tail is not None and job.tail[0] in watch:  # a state signed at the cut
            watch[job.tail[0]] = (0, job.tail[1])
        pruned = [Pruned.of(row) for row in reader.prunes(job.account)]
        if job.day is None:  # the whole chain: say where its pruned ranges went
            check.pruned = pruned
        log_rows = _log_chain(reader, job.account, log_watch, check)
        if not job.trust.enabled:
            return check
        offset = 0
        if job.stretch is not None:
            offset = reader.count_events(accounts=[job.account], id_range=(0, job.stretch[0] - 1))
            offset += sum(p.rows for p in pruned if p.last_id < job.stretch[0])
        findings += sequence_findings(signed)
        findings += chain_findings(signed, "events", watch, offset)
        findings += chain_findings(signed, "log", log_watch, 0)
        if job.trust.notes_dir is not None:
            findings += _copy_findings(reader, job, signed, sum(p.rows for p in pruned))
        check.attest(signed, watch, findings, log=(log_rows, log_watch))
        return check


def _stored_checkpoints(reader: StoreReader, job: _StoreJob) -> tuple[list[Signed], list[Finding]]:
    """The account's checkpoints in the store (of the stretch), opened with the trusted keys."""
    if not job.trust.enabled:
        return [], []
    if job.store_id is None:
        return [], [Finding("the store has no store_id: run `studio-recorder db upgrade`")]
    stretch = (job.stretch[0], job.stretch[1]) if job.stretch else None
    if stretch is not None and job.tail is not None:  # and those signed at the cut
        stretch = (job.tail[0], stretch[1])
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


def _columns_of(signed: Signed) -> tuple[object, ...]:
    e, g = signed.checkpoint.events, signed.checkpoint.log
    return (e.count, e.last_id, e.head, g.count, g.last_id, g.head)


def _log_chain(reader: StoreReader, account: str, seen: Watch, check: ChainCheck) -> int:
    """Recompute the account's ``connection_log`` chain into ``check``; its row count."""
    rows = [row for batch in reader.connection_log(accounts=[account]) for row in batch.to_pylist()]
    broken, _, count = verify_chain(rows, encode=canonical_log_bytes, seen=seen)
    if broken is not None:
        problem = Problem(
            f"connection_log {CHANGED}", broken.row_id, broken.expected, broken.stored
        )
        check.problems.append(problem)
    return count


def _copy_findings(
    reader: StoreReader, job: _StoreJob, signed: list[Signed], pruned: int
) -> list[Finding]:
    """The copies of the account's notes outside the database against the store's
    (``pruned``: the account's rows pruned, which its chain's counts still include)."""
    stored = {s.note for s in signed}
    if job.stretch is not None:  # the stretch's checkpoints: the copies may hold others
        stored |= {str(row["note"]) for row in reader.checkpoints(job.account)}
    verifiers = job.trust.verifiers()
    copies = [
        opened
        for where, note in job.copies
        if isinstance(opened := open_signed(note, where, verifiers, job.store_id, job.account),
                      Signed)
    ]  # fmt: skip
    rows = (reader.count_events(accounts=[job.account]) + pruned, reader.count_log(job.account))
    forks = fork_findings([*signed, *(c for c in copies if c.note not in stored)])
    return forks + copy_findings(copies, stored, rows)


def _copies_by_account(trust: Trust, day: dt.date | None) -> dict[str, list[tuple[str, str]]]:
    """The notes of ``trust.notes_dir`` (of ``day``'s file when given), by the account they
    name (signatures are checked by each account's job)."""
    if trust.notes_dir is None or not trust.enabled:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    for where, note in read_notes(trust):
        if day is not None and day_of(where.split(" note ")[0]) != day:
            continue
        try:
            account = Checkpoint.parse(open_note(note, [])[0]).account_id
        except (SigningError, CheckpointFormatError):
            continue  # not a checkpoint note: nothing of this store to hold it against
        found.setdefault(account, []).append((where, note))
    return found


def verify_store(
    url: str,
    *,
    day: dt.date | None = None,
    accounts: Sequence[str] | None = None,
    configured: Sequence[str] = (),
    workers: int | None = None,
    trust: Trust = NO_TRUST,
    loaded: Iterable[pa.RecordBatch] | None = None,
) -> VerifyReport:
    """Check the chains of the store at ``url`` (every account, or ``accounts``).

    With ``day``: the stretch of each chain that the day's rows span. With ``trust``
    keys, also every signed checkpoint (:mod:`queries.attested`). Raises QueryError for an
    unreadable store or an account neither the store nor ``configured`` (the
    configuration's accounts) knows. ``workers``: processes to spread the accounts over
    (default: one per CPU when there are many rows).

    ``loaded``: the day's ``events`` rows of every account asked for, in id order with
    every column, as another reader reads them (an evening's workspace; consumed as they
    come). An account whose stretch holds only that day's rows is checked from them, in
    this process, in one pass with the others (:func:`check_interleaved`); the store is
    read only for the rest (a stretch with rows of another day in between, or a chain that
    does not match: then the reference check reads and reports it).
    """
    copies = _copies_by_account(trust, day)
    jobs: list[_StoreJob] = []
    sizes: list[int] = []
    chains: dict[str, AccountChain] = {}
    with StoreReader(url) as reader:
        check_accounts(reader, accounts or (), configured)
        source = reader.display_url
        store_id = reader.store_id()
        if loaded is not None and day is not None:
            ranges, chains = _from_loaded(reader, loaded, day, keep_hashes=trust.enabled)
        else:
            ranges = reader.id_ranges(day=day, accounts=list(accounts) if accounts else None)
        names = set(ranges) | set(copies)
        if day is None:
            for table in ("connection_log", "checkpoints"):
                names |= set(reader.accounts(table=table))
        if accounts:
            names = set(accounts)
        tails = _pruned_tails(reader)
        names |= set(tails) if day is None and not accounts else set()
        for account in sorted(names):
            job = _StoreJob(url, account, day, trust, store_id,
                            copies=tuple(copies.get(account, ())))  # fmt: skip
            tail = tails.get(account)
            if day is None:
                job = replace(job, tail=tail)
            if account in ranges and (day is not None or tail is not None):
                first, last, _ = ranges[account]
                anchor = (
                    chains[account].check.anchor
                    if account in chains
                    else reader.chain_anchor(account, first)
                )
                job = replace(job, stretch=(first, last, anchor))
            elif day is not None:  # nothing of the account that day
                job = replace(job, stretch=(0, -1, GENESIS_HASH))
            elif tail is not None:  # every frame of it pruned: nothing left to read
                job = replace(job, stretch=(tail[0] + 1, tail[0], tail[1]))
            jobs.append(job)
            sizes.append(ranges[account][2] if account in ranges else 0)
    if loaded is not None and day is not None:
        checks = [_store_job(job, chains.get(job.account)) for job in jobs]
    else:
        checks = run_jobs(_store_job, [(job,) for job in jobs], sizes, workers)
    return VerifyReport(source, day, checks, attestation=trust.enabled)


def _pruned_tails(reader: StoreReader) -> dict[str, tuple[int, str]]:
    """Where each pruned account's pruned prefix ends: (last id, chain hash there). Its
    remaining rows are checked from there; its checkpoints up to there were checked in the
    archive, with the rows they sign."""
    tails: dict[str, tuple[int, str]] = {}
    for row in reader.prunes():
        account, last = str(row["account_id"]), int(row["last_id"])
        if account not in tails or tails[account][0] < last:
            tails[account] = (last, str(row["head_last"]))
    return tails


def _from_loaded(
    reader: StoreReader, loaded: Iterable[pa.RecordBatch], day: dt.date, *, keep_hashes: bool
) -> tuple[dict[str, tuple[int, int, int]], dict[str, AccountChain]]:
    """The day's ``(first id, last id, rows)`` by account, as :meth:`StoreReader.id_ranges`
    answers, from ``loaded`` (the day's rows), and the chains recomputed from them in one
    pass of the accounts whose rows all matched and whose stretch holds no row of another
    day (the others are left to the reference check, which reads them). ``keep_hashes``:
    signed checkpoints are to be held against the chains."""
    chains, broken = check_interleaved(loaded, reader.chain_anchor, day, keep_hashes=keep_hashes)
    ranges: dict[str, tuple[int, int, int]] = {}
    whole: dict[str, AccountChain] = {}
    for account, chain in chains.items():
        first, last, rows = chain.check.first_id or 0, chain.check.last_id or 0, chain.check.rows
        ranges[account] = (first, last, rows)
        if account not in broken and (
            reader.count_events(accounts=[account], id_range=(first, last)) == rows
        ):
            whole[account] = chain
    return ranges, whole
