"""Verifying an export directory alone, offline: files against manifests, chains, signatures.

Each file's size, SHA-256 and row count against its manifest entry, no file missing or
unlisted, each account's ``events`` file chained from the manifest's ``chain_anchor`` to
its ``last_chain_hash``, and — with trusted keys — every signed checkpoint of the day
that the manifest carries reproduced by the rows' chain (:mod:`queries.attested`).
Nothing here needs the store: an examiner holding the export and a public key can run it.
The manifest itself is not signed; the checkpoints in it are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.chain import GENESIS_HASH, canonical_log_bytes, verify_chain

from .attested import (
    NO_TRUST,
    Finding,
    Signed,
    Trust,
    chain_findings,
    open_signed,
    sequence_findings,
)
from .contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA
from .errors import QueryError
from .exportdir import ExportDir
from .layout import TABLES, day_dir
from .manifest import FileEntry, Manifest
from .verify import CHANGED, ChainCheck, Problem, VerifyReport, check_rows


def _manifest_checkpoints(
    manifest: Manifest, account: str, trust: Trust
) -> tuple[list[Signed], list[Finding]]:
    """The day's checkpoints of the account that the manifest carries, opened."""
    if not trust.enabled:
        return [], []
    notes = manifest.accounts[account].checkpoints
    if notes and manifest.store_id is None:
        return [], [Finding("the manifest names no store_id for its checkpoints")]
    verifiers = trust.verifiers()
    signed: list[Signed] = []
    findings: list[Finding] = []
    for index, note in enumerate(notes, 1):
        where = f"manifest checkpoint {index}"
        opened = open_signed(note, where, verifiers, manifest.store_id, account)
        if isinstance(opened, Finding):
            findings.append(opened)
        else:
            signed.append(opened)
    return signed, findings


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_problems(export: ExportDir, manifest: Manifest, entry: FileEntry) -> list[Problem]:
    rel = entry.path
    try:
        path = export.file(rel)
    except QueryError:
        return [Problem("manifest names a path outside the export directory", path=rel)]
    # The writer's own layout function, of the day's format version: an id it encodes
    # specially (``..``, ``~``) is not reported as misplaced.
    if rel != manifest.layout.file_path(entry.table, manifest.trading_day, entry.account_id):
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
    export: ExportDir, manifest: Manifest, account: str, entry: FileEntry, trust: Trust
) -> ChainCheck:
    day = manifest.trading_day
    facts = manifest.accounts[account]
    anchor = facts.chain_anchor or GENESIS_HASH
    # Rows whose predecessor in the account's chain belongs to another day.
    resume = dict(facts.chain_resume)
    signed, findings = _manifest_checkpoints(manifest, account, trust)
    # Watched: each checkpoint's last row, and each resume point (where the chain goes on
    # from a hash nothing signs: rows before it need a checkpoint of their own stretch).
    watch: dict[int, tuple[int, str] | None] = {s.checkpoint.events.last_id: None for s in signed}
    watch.update(dict.fromkeys(resume))
    try:
        check = check_rows(
            account,
            export.read(day, entry, EVENTS_SCHEMA.names),
            anchor,
            day,
            resume,
            seen=watch,
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
    if trust.enabled:
        findings += sequence_findings(signed) + chain_findings(signed, "events", watch, None)
        check.attest(signed, watch, findings, resumed=resume)
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
    directory: str | Path,
    *,
    day: dt.date | None = None,
    accounts: Sequence[str] | None = None,
    trust: Trust = NO_TRUST,
) -> VerifyReport:
    """Check an export directory (every exported day, or ``day``) against its manifests.

    With ``trust`` keys, also each account's signed checkpoints of the day (carried in
    the manifest): offline, the rows' chain from the manifest's anchor must reproduce
    every signed head. Raises QueryError when the directory or the day's manifest is
    missing or not an export manifest; everything wrong inside is reported, not raised.
    """
    export = ExportDir(directory)
    days = [day] if day is not None else export.days()
    if not days:
        raise QueryError(f"no exported day in {export.root} (manifest/ is empty)")
    wanted = None if not accounts else set(accounts)
    if wanted is not None:
        export.check_accounts(sorted(wanted), days)
    report = VerifyReport(str(export.root), day, [], attestation=trust.enabled)
    for one_day in days:
        report.problems.extend(() if wanted else _unlisted_of(export, one_day))
        manifest = export.manifest(one_day)
        report.accounts.extend(_verify_export_day(export, manifest, wanted, trust))
    return report


def _unlisted_of(export: ExportDir, day: dt.date) -> list[Problem]:
    return _unlisted(export, day, {entry.path for entry in export.manifest(day).files})


def _log_chain(export: ExportDir, manifest: Manifest, entry: FileEntry) -> list[Problem]:
    """The account's journal file recomputed from the manifest's ``log_chain_resume`` (not
    checked for a manifest written before it was recorded)."""
    resume = manifest.accounts[entry.account_id].log_chain_resume
    if resume is None:
        return []
    names = CONNECTION_LOG_SCHEMA.names
    try:
        rows = [r for b in export.read(manifest.trading_day, entry, names) for r in b.to_pylist()]
    except QueryError as exc:
        return [Problem(str(exc), path=entry.path)]
    if rows and rows[0]["id"] not in dict(resume):
        what = f"connection_log {CHANGED}: the file does not start where log_chain_resume does"
        return [Problem(what, row_id=rows[0]["id"], path=entry.path)]
    broken, _, _ = verify_chain(rows, GENESIS_HASH, dict(resume), canonical_log_bytes)
    if broken is None:
        return []
    return [Problem(f"connection_log {CHANGED}", broken.row_id, broken.expected, broken.stored,
                    path=entry.path)]  # fmt: skip


def _verify_export_day(
    export: ExportDir, manifest: Manifest, wanted: set[str] | None, trust: Trust
) -> list[ChainCheck]:
    """Every file of one exported day against its manifest entry, and each account's chain."""
    day = manifest.trading_day
    checks: dict[str, ChainCheck] = {}
    events_files: dict[str, FileEntry] = {}
    for entry in manifest.files:
        account = entry.account_id
        if wanted is not None and account not in wanted:
            continue
        problems = _file_problems(export, manifest, entry)
        if problems:
            checks.setdefault(account, ChainCheck(account, day)).problems.extend(problems)
        if entry.table == "events":
            events_files[account] = entry
        elif account in manifest.accounts and not problems:
            problems = _log_chain(export, manifest, entry)
            if problems:
                checks.setdefault(account, ChainCheck(account, day)).problems.extend(problems)
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
        check = _export_chain(export, manifest, account, events_file, trust)
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
