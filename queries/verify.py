"""Tamper verification: what every check of a chain reports, and the shared machinery.

The chains (``recorder.chain``) cover every recorded field of every ``events`` and
``connection_log`` row in ``id`` order per account, so recomputing them finds any row
that was changed, removed, inserted or reordered; the report names the account, the
first bad row id, the hash expected there and the hash stored. Whoever can write the
database can recompute a chain too: signed checkpoints (:mod:`queries.attested`) are
what holds against them. :mod:`queries.storecheck` verifies the store,
:mod:`queries.exportcheck` an export directory; both report here
(:class:`ChainCheck`, :class:`VerifyReport`, :func:`render_verify`), and spread large
jobs over worker processes (:func:`run_jobs`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.chain import GENESIS_HASH, verify_encoded
from recorder.instants import iso_ns

from .attested import (
    NO_KEYS_WARNING,
    Finding,
    Signed,
    summary,
)
from .canonical import canonical_array
from .render import table

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


@dataclass(frozen=True)
class Pruned:
    """Rows of one account and day pruned from the store after archiving (a ``prunes`` row):
    the ids, how many, the archived manifest they were verified against, when and by whom."""

    trading_day: dt.date
    first_id: int
    last_id: int
    rows: int
    head_last: str
    manifest_sha256: str
    at: str
    by: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Pruned:
        """From a ``prunes`` row as the store reader gives it."""
        return cls(
            row["trading_day"], int(row["first_id"]), int(row["last_id"]), int(row["row_count"]),
            str(row["head_last"]), str(row["manifest_sha256"]), iso_ns(int(row["at_ns"])) or "",
            f"{row['os_user']}@{row['host']}",
        )  # fmt: skip


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
    #: Ranges of the account's chain pruned from the store (archived): the rows before
    #: ``anchor``, checked in the archive.
    pruned: list[Pruned] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def attest(
        self,
        signed: list[Signed],
        seen: Mapping[int, tuple[int, str] | None],
        findings: list[Finding],
        *,
        log: tuple[int, Mapping[int, tuple[int, str] | None]] | None = None,
        resumed: Collection[int] = (),
    ) -> None:
        """Record what the signed checkpoints say: their findings, and how far they attest
        the rows checked (and, with ``log`` = (its rows, its watched positions), the
        account's ``connection_log``). ``resumed``: ids where the recomputation restarted
        from an unsigned hash (an export's ``chain_resume``; they must be in ``seen``)."""
        self.problems += [Problem(f.what, f.row_id, f.expected, f.found) for f in findings]
        restarts = [p[0] for i, p in seen.items() if i in resumed and p is not None]
        attestation = summary(
            signed, seen, self.rows, not self.problems, log=log, restarts=restarts
        )
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


@dataclass
class AccountChain:
    """One account's chain recomputed by :func:`check_interleaved`: the check, and the
    hash after each of its rows (to answer for a signed checkpoint's row afterwards)."""

    check: ChainCheck
    ids: list[pa.Array] = field(default_factory=list)  # int64 chunks, ascending
    digests: list[pa.Array] = field(default_factory=list)  # binary(32) chunks, the same rows

    def hash_at(self, row_id: int) -> tuple[int, str] | None:
        """(rows up to and including ``row_id``, the hash there), as ``check_rows`` fills a
        ``seen`` entry; None when the row is not among the account's rows."""
        ids = pa.chunked_array(self.ids, pa.int64())
        i = int(np.searchsorted(ids.to_numpy(), row_id))
        if i < len(ids) and ids[i].as_py() == row_id:
            digest: bytes = pa.chunked_array(self.digests, _DIGEST)[i].as_py()
            return i + 1, digest.hex()
        return None


_DIGEST: Final = pa.binary(32)
_HEX_LENGTH: Final = 64


def check_interleaved(
    batches: Iterable[pa.RecordBatch],
    anchor: Callable[[str, int], str],
    trading_day: dt.date | None,
    *,
    keep_hashes: bool = True,
) -> tuple[dict[str, AccountChain], set[str]]:
    """:func:`check_rows` of every account in ``batches`` in one pass over their rows (id
    order, the accounts' rows interleaved as stored): the fast path of a day's check.

    ``anchor(account, first id)`` gives the hash an account's first row chains from (asked
    when that row comes). Returns every account's chain, and the accounts where some row
    did not match: for those, :func:`check_rows` (the reference) must say which row and
    how, so this never has to. One SHA-256 per row is the only per-row work in Python;
    the rest is done on whole columns. ``keep_hashes``: keep every row's hash for
    :meth:`AccountChain.hash_at` (needed only to hold signed checkpoints against).
    """
    heads: dict[str, bytes] = {}
    chains: dict[str, AccountChain] = {}
    broken: set[str] = set()
    sha256 = hashlib.sha256
    for batch in batches:
        if not batch.num_rows:
            continue
        column = batch.column("account_id")
        accounts = column.to_pylist()
        stored = batch.column("chain_hash")
        ids = batch.column("id")
        rows_of = {account: pc.equal(column, account) for account in set(accounts)}
        for account, mine in rows_of.items():
            own = ids.filter(mine)
            if account not in chains:  # its first row: the chain starts at its anchor
                start = anchor(account, own[0].as_py())
                first_hash = stored.filter(mine)[0].as_py()
                chains[account] = AccountChain(ChainCheck(
                    account, trading_day, first_id=own[0].as_py(), anchor=start,
                    first_hash=first_hash, head=start,
                ))  # fmt: skip
                heads[account] = bytes.fromhex(start)
            chains[account].ids.append(own)
        digests: list[bytes] = []
        keep = digests.append
        for account, canonical in zip(accounts, canonical_array(batch).to_pylist(), strict=True):
            head = sha256(heads[account] + canonical).digest()
            heads[account] = head
            keep(head)
        expected = stored.to_pylist()
        # Joined, the hashes compare in one step; that says each row matched only when every
        # stored hash has its 64 characters (a hash split over two rows must not pass).
        whole = pc.all(pc.equal(pc.utf8_length(stored), _HEX_LENGTH)).as_py() is True
        if not whole or b"".join(digests).hex() != "".join(expected):
            broken |= {a for a, d, h in zip(accounts, digests, expected, strict=True)
                       if d.hex() != h}  # fmt: skip
        if keep_hashes:
            hashes = pa.array(digests, _DIGEST)
            for account, mine in rows_of.items():
                chains[account].digests.append(hashes.filter(mine))
    for account, chain in chains.items():
        chain.check.last_id = chain.ids[-1][-1].as_py()
        chain.check.rows = sum(len(ids) for ids in chain.ids)
        chain.check.head = heads[account].hex()
    return chains, broken


def run_jobs(
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
        for gone in check.pruned:
            lines.append(
                f"NOTE account {check.account_id}: {gone.trading_day} pruned (ids "
                f"{gone.first_id}-{gone.last_id}, {gone.rows} frames) at {gone.at} by {gone.by}; "
                f"archived, manifest sha256 {gone.manifest_sha256}"
            )
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


def verify_totals(reports: list[VerifyReport]) -> str:
    """The totals of several days' verifications, per account, as text."""
    sums: dict[str, list[Any]] = {}
    for report in reports:
        for check in report.accounts:
            total = sums.setdefault(check.account_id, [0, 0, True])
            total[0] += check.rows
            total[1] += len(check.problems)
            total[2] = total[2] and check.ok
    return f"Totals over {len(reports)} days\n" + table(
        ["account", "rows", "problems", "chain"],
        [(a, t[0], t[1], "ok" if t[2] else "FAILED") for a, t in sorted(sums.items())],
    )
