"""Signed checkpoints, checked: what a holder of the public keys alone can prove.

A hash chain kept beside the rows proves nothing against whoever can write the database
(they can recompute it). The recorder therefore signs, per account, checkpoints of both
chains (:mod:`recorder.checkpoint`). Holding the rows against them:

* every checkpoint's signature verifies under a trusted key, and it names this store
  and this account (its stored columns are what it says);
* each checkpoint extends the one before it (counts and ids never go back), and no two
  validly signed checkpoints give different heads for the same count (a fork: history
  re-signed by someone holding the key);
* the recomputed chain at each checkpoint's last row is its signed head, and the
  number of the account's rows up to that row is its signed count (a deleted row);
* with copies of the notes from outside the database (``checkpoint_dir``): each one is
  in the store, and none is ahead of it (rows and checkpoints rolled back together).

Rows after the last checkpoint are reported as unattested, never as a failure. Pure
functions over parsed notes and recomputed chain positions; the readers are elsewhere.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from recorder.attestation import NOTES_SUFFIX, OBJECT_NOTE_SUFFIX
from recorder.chain import GENESIS_HASH
from recorder.checkpoint import ChainState, Checkpoint, CheckpointFormatError
from recorder.config import ArchiveSettings
from recorder.objectstore import ObjectArchive
from recorder.signing import SigningError, Verifier, open_note, parse_verifier

from .errors import QueryError, UsageError

#: What verify's human output says when no key is given.
NO_KEYS_WARNING: Final = (
    "no --public-key: the hash chains were recomputed, which catches a careless edit but "
    "not a rewrite by whoever controls the database (they can recompute the chains too)"
)


@dataclass(frozen=True)
class Trust:
    """What a verification trusts: verifier keys (their text: picklable for worker
    processes) and, optionally, a directory of notes copied outside the database."""

    keys: tuple[str, ...] = ()
    #: A directory of ``DAY.notes`` files, or ``s3://bucket/prefix`` of one note per object.
    notes_dir: str | None = None
    #: How to reach an ``s3://`` ``notes_dir`` (the ``[archive]`` endpoint and region); None:
    #: boto3's defaults (AWS, or ``AWS_ENDPOINT_URL``).
    notes_store: ArchiveSettings | None = None

    @classmethod
    def of(cls, keys: Iterable[str], notes_dir: str | Path | None = None) -> Trust:
        """Each key a verifier key line or a ``.pub`` file; QueryError for a bad one."""
        texts = []
        for number, key in enumerate(keys, 1):
            try:
                verifier = parse_verifier(key)
            except SigningError as exc:  # never quoted: it may be a private key by mistake
                raise UsageError(f"public key {number}: {exc}") from None
            texts.append(verifier.text)
        return cls(tuple(texts), None if notes_dir is None else str(notes_dir))

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def verifiers(self) -> list[Verifier]:
        return [Verifier.from_text(key) for key in self.keys]


#: Trusting no key: chains are recomputed, signatures are not checked.
NO_TRUST: Final = Trust()


@dataclass(frozen=True)
class Signed:
    """A checkpoint whose signature verified: where it was found, what it says."""

    where: str  # "checkpoint 12" (a row of the store) or "FILE" (a copy)
    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True)
class Finding:
    """Something wrong with the attestation (a chain check's problem, see queries.verify)."""

    what: str
    row_id: int | None = None
    expected: str | None = None
    found: str | None = None


def open_signed(
    note: str, where: str, verifiers: Sequence[Verifier], store_id: str | None, account: str
) -> Signed | Finding:
    """The note as a checkpoint trusted to be what it says, or why it is not."""
    try:
        text, signers = open_note(note, verifiers)
    except SigningError as exc:
        return Finding(f"{where}: {exc}")
    if not signers:
        return Finding(f"{where}: no signature by a trusted key (missing or unknown key)")
    try:
        checkpoint = Checkpoint.parse(text)
    except CheckpointFormatError as exc:
        return Finding(f"{where}: signed, but not a checkpoint note: {exc}")
    if store_id is not None and checkpoint.store_id != store_id:
        return Finding(f"{where}: names another store ({checkpoint.store_id})")
    if checkpoint.account_id != account:
        return Finding(f"{where}: is a checkpoint of account {checkpoint.account_id!r}")
    return Signed(where, checkpoint, note)


def sequence_findings(signed: Sequence[Signed]) -> list[Finding]:
    """Each checkpoint extends the one before (store order), and no fork among all."""
    findings = []
    for before, after in itertools.pairwise(signed):
        for name in ("events", "log"):
            a, b = getattr(before.checkpoint, name), getattr(after.checkpoint, name)
            if b.count < a.count or b.last_id < a.last_id:
                findings.append(
                    Finding(
                        f"{after.where}: does not extend {before.where} ({name} "
                        f"{b.count} rows through id {b.last_id} after {a.count} through "
                        f"{a.last_id})"
                    )
                )
    return findings + fork_findings(signed)


def fork_findings(signed: Iterable[Signed]) -> list[Finding]:
    """Two validly signed checkpoints with different heads for the same count."""
    findings = []
    for name in ("events", "log"):
        first: dict[int, Signed] = {}
        for item in signed:
            state: ChainState = getattr(item.checkpoint, name)
            seen = first.setdefault(state.count, item)
            if getattr(seen.checkpoint, name).head != state.head:
                findings.append(
                    Finding(
                        f"fork: {seen.where} and {item.where} sign different {name} heads "
                        f"for {state.count} rows (history re-signed with the key)",
                        expected=getattr(seen.checkpoint, name).head,
                        found=state.head,
                    )
                )
    return findings


def chain_findings(
    signed: Iterable[Signed],
    name: str,
    seen: Mapping[int, tuple[int, str] | None],
    count_offset: int | None,
) -> list[Finding]:
    """Each checkpoint's ``name`` state against the recomputed chain.

    ``seen`` maps each watched last id to ``(rows up to it, recomputed head)``, or None
    when no such row was read; ``count_offset`` turns those counts into the account's
    (the rows before the stretch read), None when counts cannot be known (an export).
    """
    findings = []
    for item in signed:
        state: ChainState = getattr(item.checkpoint, name)
        if state.last_id == 0:
            if state.count or state.head != GENESIS_HASH:
                findings.append(Finding(f"{item.where}: {name} state of an empty chain is wrong"))
            continue
        found = seen.get(state.last_id)
        if found is None:
            if state.last_id in seen:
                findings.append(
                    Finding(
                        f"{item.where}: {name} row {state.last_id} it attests is missing "
                        "(rows deleted)",
                        row_id=state.last_id,
                    )
                )
            continue
        count, head = found
        if head != state.head:
            findings.append(
                Finding(
                    f"{item.where}: the {name} chain at row {state.last_id} is not the signed "
                    "head (rows changed)",
                    row_id=state.last_id,
                    expected=state.head,
                    found=head,
                )
            )
        elif count_offset is not None and count + count_offset != state.count:
            findings.append(
                Finding(
                    f"{item.where}: {count + count_offset} {name} rows up to id "
                    f"{state.last_id}, the checkpoint signed {state.count} (rows deleted)",
                    row_id=state.last_id,
                )
            )
    return findings


def copy_findings(
    copies: Iterable[Signed], stored_notes: set[str], rows: tuple[int, int]
) -> list[Finding]:
    """Notes copied outside the database that the store no longer holds.

    ``rows`` is the account's ``(events, connection_log)`` row counts now.
    """
    findings = []
    for copy in copies:
        if copy.note in stored_notes:
            continue
        checkpoint = copy.checkpoint
        if checkpoint.events.count > rows[0] or checkpoint.log.count > rows[1]:
            findings.append(
                Finding(
                    f"{copy.where}: a checkpoint of {checkpoint.events.count} events and "
                    f"{checkpoint.log.count} log rows is ahead of the store ({rows[0]} and "
                    f"{rows[1]}): rows and checkpoints were rolled back"
                )
            )
        else:
            findings.append(Finding(f"{copy.where}: a signed checkpoint missing from the store"))
    return findings


def read_notes(trust: Trust) -> list[tuple[str, str]]:
    """Every note copied outside the database, from ``trust.notes_dir``: a directory (see
    :func:`read_notes_dir`) or object storage (each object ``DAY/….note`` one note)."""
    where = str(trust.notes_dir)
    if not where.startswith("s3://"):
        return read_notes_dir(where)
    store = ObjectArchive(replace(trust.notes_store or ArchiveSettings(), url=where))
    found = []
    for key in store.keys(""):
        if key.endswith(OBJECT_NOTE_SUFFIX):
            text = store.get(key).decode("utf-8", errors="replace")
            found += [(f"{where}/{key} note {n}", note)
                      for n, note in enumerate(split_notes(text), 1)]  # fmt: skip
    return found


def read_notes_dir(directory: str | Path) -> list[tuple[str, str]]:
    """Every note in ``DIR/*.notes`` as ``(where, note)``; QueryError for an unreadable one."""
    root = Path(directory)
    if not root.is_dir():
        raise QueryError(f"checkpoints directory not found: {root}")
    found = []
    for path in sorted(root.glob(f"*{NOTES_SUFFIX}")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QueryError(f"cannot read {path}: {exc}") from None
        found += [(f"{path} note {n}", note) for n, note in enumerate(split_notes(text), 1)]
    return found


def split_notes(text: str) -> list[str]:
    """The notes of a copies file: each is its text lines, a blank line, its signature lines
    (``— …``), then a blank line. Read line by line, so a torn last note spoils only itself."""
    notes: list[str] = []
    body: list[str] = []
    signatures: list[str] = []
    for line in text.split("\n"):
        if line.startswith(SIGNATURE_PREFIX):
            signatures.append(line)
        elif line:
            if signatures:  # a new note begins
                notes.append(_note(body, signatures))
                body, signatures = [], []
            body.append(line)
        elif signatures:  # the blank line after a note's signatures
            notes.append(_note(body, signatures))
            body, signatures = [], []
    if signatures:
        notes.append(_note(body, signatures))
    return notes


#: How a signature line of a signed note begins (U+2014 and a space).
SIGNATURE_PREFIX: Final = "\u2014 "


def _note(body: list[str], signatures: list[str]) -> str:
    return "".join(f"{line}\n" for line in body) + "\n" + "".join(f"{s}\n" for s in signatures)


@dataclass(frozen=True)
class AttestationSummary:
    """The attestation part of an account's verification (JSON fields of verify)."""

    attested: bool
    checkpoints: int
    attested_through_id: int | None
    unattested_rows: int


def summary(
    signed: Sequence[Signed],
    seen: Mapping[int, tuple[int, str] | None],
    rows: int,
    ok: bool,
    *,
    log: tuple[int, Mapping[int, tuple[int, str] | None]] | None = None,
    restarts: Sequence[int] = (),
) -> AttestationSummary:
    """How far an account's ``rows`` (read, in order) are attested by its valid checkpoints.

    ``seen`` holds the recomputed positions of the checkpoints' last rows. A checkpoint
    attests the rows before it back to where the recomputation last started: the first
    row, or a position of ``restarts`` (an export's ``chain_resume`` points, where the
    chain continues from a hash that nothing signs). With ``log`` (``connection_log`` rows,
    watched positions), its rows after the last checkpoint count as unattested too.
    ``attested`` means: verified, and no row unattested.
    """
    if not signed:
        return AttestationSummary(False, 0, None, rows + (log[0] if log else 0))
    through = max(s.checkpoint.events.last_id for s in signed)
    positions = [seen[s.checkpoint.events.last_id] for s in signed]
    unattested = _uncovered(rows, [p[0] for p in positions if p is not None], restarts)
    if log is not None:
        log_rows, log_seen = log
        found = [log_seen.get(s.checkpoint.log.last_id) for s in signed]
        unattested += _uncovered(log_rows, [p[0] for p in found if p is not None], ())
    return AttestationSummary(ok and unattested == 0, len(signed), through, unattested)


def _uncovered(rows: int, covered_at: Sequence[int], restarts: Sequence[int]) -> int:
    """Rows of ``1..rows`` no position of ``covered_at`` covers within its stretch."""
    starts = sorted({1, *restarts})
    left = 0
    for index, start in enumerate(starts):
        end = starts[index + 1] - 1 if index + 1 < len(starts) else rows
        inside = [p for p in covered_at if start <= p <= end]
        left += end - (max(inside) if inside else start - 1)
    return left


def day_of(path: str) -> dt.date | None:
    """The trading day a copies file (``DAY.notes``) or note object (``DAY/….note``) is
    filed under, if it is one."""
    where = Path(path)
    for name in (where.name.removesuffix(NOTES_SUFFIX), where.parent.name):
        try:
            return dt.date.fromisoformat(name)
        except ValueError:
            continue
    return None
