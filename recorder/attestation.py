"""Signed checkpoints: the writer's half of attestation.

Inside the transaction of the batch it covers, :meth:`Attestation.checkpoint` reads an
account's chain states as stored (count, last id and head of ``events`` and of
``connection_log``), signs them as a :class:`~recorder.checkpoint.Checkpoint` note and
appends the note to ``checkpoints``. A checkpoint whose states equal the account's
latest one is not made again. Counts come from the latest checkpoint plus an index
count of the rows after it, so a checkpoint costs a few index lookups, whatever the
size of the account.

After the commit, :class:`NoteCopies` appends each note (fsynced) to a file per trading
day under ``[signing] checkpoint_dir`` — copies outside the database, which an examiner
holds the store against — and every note is logged at INFO. A copy that cannot be
written is logged, counted and retried with the next notes: recording never stops for
it, and the note itself is in the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Table, func, insert, select

from .checkpoint import GENESIS, ChainState, Checkpoint
from .config import Settings
from .errors import StoreError, first_line
from .heads import pruned_tail
from .objectstore import ObjectArchive, ObjectStoreError
from .schema import STORE_ID, checkpoints, connection_log, events, store_meta
from .signing import Signer
from .tradingday import day_of_ns

log = logging.getLogger(__name__)

#: A file of ``checkpoint_dir``: the notes of one trading day, each followed by a blank line.
NOTES_SUFFIX: Final = ".notes"


def notes_file(directory: Path, day: dt.date) -> Path:
    """``DIR/YYYY-MM-DD.notes``: where the notes attesting ``day``'s rows are copied."""
    return directory / f"{day.isoformat()}{NOTES_SUFFIX}"


def read_store_id(conn: Connection) -> str:
    """The store's id (written once by ``db upgrade``); StoreError when it has none."""
    value = conn.execute(
        select(store_meta.c.value).where(store_meta.c.name == STORE_ID)
    ).scalar_one_or_none()
    if value is None:
        raise StoreError("the store has no store_id: run `studio-recorder db upgrade`")
    return str(value)


@dataclass(frozen=True)
class Note:
    """A checkpoint made in a transaction, with the trading day its rows end in."""

    checkpoint: Checkpoint
    note: str
    day: dt.date


#: Notes held for a ``checkpoint_dir`` that cannot be written, at most (the oldest go first:
#: they are in the store all the same, and memory must stay bounded).
PENDING_COPIES_MAX: Final = 100_000


@dataclass
class NoteCopies:
    """Appends notes to ``DIR/YYYY-MM-DD.notes`` (fsynced); retries what failed next time."""

    directory: Path
    pending: list[Note] = field(default_factory=list)
    failures: int = 0

    def publish(self, notes: Sequence[Note]) -> None:
        _waiting(self.pending, notes, self.directory)
        if not self.pending:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            by_day: dict[dt.date, list[str]] = {}
            for note in self.pending:
                by_day.setdefault(note.day, []).append(note.note + "\n")
            for day, texts in sorted(by_day.items()):
                _append(notes_file(self.directory, day), "".join(texts))
        except OSError as exc:
            self.failures += 1
            log.error(
                "cannot copy %d checkpoint notes to %s (kept in the store; retried with the "
                "next ones): %s",
                len(self.pending),
                self.directory,
                exc.strerror or first_line(exc),
                extra={"event": "checkpoint-copy-failed"},
            )
            return
        self.pending.clear()


@dataclass
class ObjectNoteCopies:
    """Writes each note as an object of its own (``PREFIX/YYYY-MM-DD/SHA256.note``) to object
    storage, under the archive's Object Lock: objects cannot be appended to, and a locked one
    cannot be removed, so that even the holder of the signing key cannot make an attested
    state disappear. Failures are logged, counted and retried with the next notes (at most
    :data:`PENDING_COPIES_MAX` wait); recording never stops for them."""

    store: ObjectArchive
    pending: list[Note] = field(default_factory=list)
    failures: int = 0

    def publish(self, notes: Sequence[Note]) -> None:
        _waiting(self.pending, notes, self.store.url)
        while self.pending:
            note = self.pending[0]
            digest = hashlib.sha256(note.note.encode()).hexdigest()
            try:
                self.store.put(f"{note.day.isoformat()}/{digest}{OBJECT_NOTE_SUFFIX}",
                               note.note.encode())  # fmt: skip
            except ObjectStoreError as exc:
                self.failures += 1
                log.error(
                    "cannot copy %d checkpoint notes to %s (kept in the store; retried with "
                    "the next ones): %s", len(self.pending), self.store.url, exc,
                    extra={"event": "checkpoint-copy-failed"},
                )  # fmt: skip
                return
            del self.pending[0]


def _waiting(pending: list[Note], notes: Sequence[Note], where: object) -> None:
    """Add ``notes`` to the copies waiting; past :data:`PENDING_COPIES_MAX`, the oldest are
    given up (they are in the store) and that is logged."""
    pending.extend(notes)
    if len(pending) > PENDING_COPIES_MAX:
        dropped = len(pending) - PENDING_COPIES_MAX
        del pending[:dropped]
        log.error("%d checkpoint notes will not be copied to %s (they are in the store)",
                  dropped, where, extra={"event": "checkpoint-copies-dropped"})  # fmt: skip


#: The name ending of a note's object (one note per object).
OBJECT_NOTE_SUFFIX: Final = ".note"


def _append(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` and flush it to disk (and the directory, for a new file)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@dataclass
class Attestation:
    """What an appender signs with: the key, the store's id, the zone and the copies."""

    signer: Signer
    store_id: str
    tz: ZoneInfo
    copies: NoteCopies | ObjectNoteCopies | None = None

    def checkpoint(
        self,
        conn: Connection,
        account: str,
        heads: tuple[str, str],
        at_ns: int,
        day: dt.date | None,
    ) -> Note | None:
        """Sign and append the account's states as stored now; None when unchanged.

        ``heads`` are the account's ``events`` and ``connection_log`` chain heads as of
        this point of the transaction (the appender computed them); ``day`` the trading
        day of its last covered frame (None: the day of ``at_ns``).
        """
        latest = _latest(conn, account)
        events_state = _state(conn, events, account, latest[0], heads[0])
        log_state = _state(conn, connection_log, account, latest[1], heads[1])
        if (events_state, log_state) == latest:
            return None
        checkpoint = Checkpoint(self.store_id, account, events_state, log_state, at_ns)
        note = self.signer.sign(checkpoint.text())
        conn.execute(
            insert(checkpoints).values(
                account_id=account,
                at_ns=at_ns,
                events_count=events_state.count,
                events_last_id=events_state.last_id,
                events_head=events_state.head,
                log_count=log_state.count,
                log_last_id=log_state.last_id,
                log_head=log_state.head,
                key_id=self.signer.key_id.hex(),
                note=note,
            )
        )
        return Note(checkpoint, note, day or day_of_ns(at_ns, self.tz))

    def covered(self, conn: Connection, account: str) -> bool:
        """Whether the account's latest checkpoint covers every row it has in the store."""
        latest = _latest(conn, account)
        return all(
            _last_id(conn, table, account) == state.last_id
            for table, state in zip((events, connection_log), latest, strict=True)
        )

    def published(self, notes: Sequence[Note]) -> None:
        """After the commit: log every note, copy them to ``checkpoint_dir``."""
        for note in notes:
            log.info(
                "checkpoint of account %s: events %d rows through id %d",
                note.checkpoint.account_id,
                note.checkpoint.events.count,
                note.checkpoint.events.last_id,
                extra={"event": "checkpoint", "account": note.checkpoint.account_id,
                       "note": note.note},
            )  # fmt: skip
        if self.copies is not None:
            self.copies.publish(notes)


def _last_id(conn: Connection, table: Table, account: str) -> int:
    """The id of the account's last row of ``table`` (0: none), through its index."""
    query = select(func.max(table.c.id)).where(table.c.account_id == account)
    last = conn.execute(query).scalar_one_or_none()
    if last is None and table is events:  # every frame of it pruned: where the prefix ends
        tail = pruned_tail(conn, account)
        return 0 if tail is None else tail.last_id
    return int(last or 0)


def _latest(conn: Connection, account: str) -> tuple[ChainState, ChainState]:
    row = conn.execute(
        select(
            checkpoints.c.events_count,
            checkpoints.c.events_last_id,
            checkpoints.c.events_head,
            checkpoints.c.log_count,
            checkpoints.c.log_last_id,
            checkpoints.c.log_head,
        )
        .where(checkpoints.c.account_id == account)
        .order_by(checkpoints.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return GENESIS, GENESIS
    return ChainState(row[0], row[1], row[2]), ChainState(row[3], row[4], row[5])


def _state(
    conn: Connection, table: Table, account: str, latest: ChainState, head: str
) -> ChainState:
    """``table``'s state for ``account`` now: the latest checkpoint's count plus the rows
    after it (both through the ``(account_id, id)`` index). Pruned rows still count: a
    chain's count is of every row it ever had."""
    id_ = table.c.id
    mine = table.c.account_id == account
    last_id = _last_id(conn, table, account)
    if last_id == latest.last_id:
        return ChainState(latest.count, last_id, head) if last_id else GENESIS
    tail = pruned_tail(conn, account) if table is events else None
    if tail is not None and latest.last_id < tail.last_id:  # some rows since it were pruned
        kept = conn.execute(select(func.count()).where(mine, id_ <= last_id)).scalar_one()
        return ChainState(tail.row_count + int(kept), int(last_id), head)
    newer = conn.execute(
        select(func.count()).where(mine, id_ > latest.last_id, id_ <= last_id)
    ).scalar_one()
    return ChainState(latest.count + int(newer), int(last_id), head)


def attestation_for(
    settings: Settings, signer: Signer | None, engine: Engine
) -> Attestation | None:
    """The attestation ``[signing]`` configures for the store of ``engine``, or None.

    Without a signing key (``signer`` None: :meth:`Settings.require_signer`) the recorder
    records as before and says once, here, that its store is not attested.
    """
    if signer is None:
        log.warning(
            "no [signing] key_file: checkpoints are not signed, so this store's record is "
            "not attested against whoever controls the database",
            extra={"event": "not-attested"},
        )
        return None
    with engine.connect() as conn:
        store_id = read_store_id(conn)
    directory = settings.signing.checkpoint_dir
    log.info(
        "signing checkpoints with key %s+%s",
        signer.name,
        signer.key_id.hex(),
        extra={"event": "attested", "store_id": store_id},
    )
    copies: NoteCopies | ObjectNoteCopies | None = None
    if settings.signing.checkpoint_url is not None:
        target = replace(settings.archive, url=settings.signing.checkpoint_url)
        copies = ObjectNoteCopies(ObjectArchive(target))
    elif directory is not None:
        copies = NoteCopies(directory)
    return Attestation(signer, store_id, settings.recorder.tz, copies)
