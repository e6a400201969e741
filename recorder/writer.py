"""The single writer task: batches records from its intake into one transaction each.

Connection tasks send :class:`~recorder.records.FrameRecord` and
:class:`~recorder.records.LogRecord` values into a bounded
:class:`~recorder.recordqueue.RecordQueue` (when it is full they wait: memory never
grows without bound); in a writer process the intake is the batches the recorder sent
(:mod:`recorder.writermain`). The writer takes
up to ``batch_max_rows`` records, or what arrived within ``batch_max_delay_ms`` of
the first's receipt, and appends them in one transaction in a worker thread, never
on the event loop; while a batch commits the next one gathers in the queue, and
goes as soon as the commit ends if its delay has passed meanwhile. A transient
database error (locked, disk full, read-only, connection lost) is retried with
backoff on the same batch until it commits: nothing is dropped, and
:meth:`Appender.resync` makes sure nothing is written twice. Any other error is a
bug and propagates. When the intake is closed (every sender done),
the writer commits what is left and returns.

With attestation (an appender that signs), the writer also asks for a checkpoint of
every account with unattested rows every ``checkpoint_interval_s`` — waking up for it
when no record arrives — and once more after the last batch, at shutdown.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Final

import trio
from sqlalchemy import Engine

from .appender import Appender
from .attestation import attestation_for
from .backoff import Backoff
from .config import Settings, SigningSettings
from .dberrors import describe_db_error, is_transient
from .instants import NS_PER_S
from .recordqueue import Intake
from .records import FrameRecord, LogRecord, Record, stamped_ns
from .signing import Signer
from .state import WriterState

log = logging.getLogger(__name__)

RETRY_INITIAL_S: Final = 0.2
RETRY_MAX_S: Final = 10.0


class Writer:
    """Drains the records intake into the store in batches."""

    def __init__(
        self,
        appender: Appender,
        intake: Intake,
        state: WriterState,
        *,
        max_rows: int,
        max_delay_s: float,
        retry: Backoff | None = None,
        on_batch: Callable[[float], None] | None = None,
        checkpoint_interval_s: float = SigningSettings.checkpoint_interval_s,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.appender = appender
        self.intake = intake
        self.state = state
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.retry = retry or Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        self.on_batch = on_batch
        self.checkpoint_interval_s = checkpoint_interval_s
        #: Called whenever ``state`` changed (a transaction began, failed or committed): a
        #: writer process reports its state to the recorder from it.
        self.on_change = on_change or _nothing
        self.done = trio.Event()
        self._next_checkpoint = math.inf

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        appender: Appender,
        intake: Intake,
        state: WriterState,
        *,
        on_batch: Callable[[float], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> Writer:
        """The writer ``[recorder]`` and ``[signing]`` configure (batches, checkpoints)."""
        r = settings.recorder
        return cls(
            appender,
            intake,
            state,
            max_rows=r.batch_max_rows,
            max_delay_s=r.batch_max_delay_ms / 1000,
            on_batch=on_batch,
            checkpoint_interval_s=settings.signing.checkpoint_interval_s,
            on_change=on_change,
        )

    async def run(self) -> None:
        """Write batches until the intake is closed by its senders and drained."""
        attested = self.appender.attestation is not None
        if attested:
            self._next_checkpoint = trio.current_time() + self.checkpoint_interval_s
        try:
            while True:
                batch = await self._collect()
                if batch is None:
                    break
                due = trio.current_time() >= self._next_checkpoint
                await self._commit(batch, checkpoint=due)
            if attested:  # shutdown: attest every account to its last row
                await self._commit([], checkpoint=True)
        finally:
            self.done.set()

    async def _collect(self) -> list[Record] | None:
        """Up to ``max_rows`` records: the first ones, then whatever arrives before the delay.

        None once the intake is closed and drained; an empty batch when a checkpoint is
        due and no record came.
        """
        intake = self.intake
        max_rows = self.max_rows
        with trio.move_on_at(self._next_checkpoint if self.appender.unattested else math.inf):
            if not await intake.wait():
                return None
        batch = intake.take(max_rows)
        if not batch:
            return []  # no record came, and a checkpoint is due
        # The delay runs from when the first record was taken (its receipt), not from now:
        # records that queued while the previous batch committed go at once, so a slow
        # commit does not add to the next batch's wait (the queue is the pipeline).
        waited_s = max(0, time.time_ns() - stamped_ns(batch[0])) / NS_PER_S
        deadline = trio.current_time() + max(0.0, self.max_delay_s - waited_s)
        while len(batch) < max_rows:
            more = intake.take(max_rows - len(batch))
            if more:
                batch += more
                continue
            with trio.move_on_at(deadline) as scope:
                if not await intake.wait():
                    break
            if scope.cancelled_caught:
                break
        return batch

    async def _commit(self, batch: Sequence[Record], *, checkpoint: bool = False) -> None:
        frames = [r for r in batch if isinstance(r, FrameRecord)]
        logs = [r for r in batch if isinstance(r, LogRecord)]
        state = self.state
        started = time.monotonic()
        append = functools.partial(self.appender.append, checkpoint_all=checkpoint)
        while True:
            state.busy_since = time.monotonic()
            self.on_change()
            try:
                notes = await trio.to_thread.run_sync(append, frames, logs)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                state.busy_since = None
                if state.failing is None:
                    state.failing_since = time.monotonic()
                state.failing = describe_db_error(exc)
                state.retries += 1
                delay = self.retry.next()
                log.error(
                    "store write failed (%d rows held, retrying in %.1f s): %s",
                    len(batch),
                    delay,
                    state.failing,
                    extra={"event": "store-write-failed"},
                )
                self.on_change()
                await trio.sleep(delay)
                if await self._committed_after_all(frames, logs):
                    notes = self.appender.published_notes
                    break
            finally:
                state.busy_since = None
        now = time.monotonic()
        if self.on_batch is not None and batch:
            self.on_batch(now - started)
        if state.failing is not None:
            log.warning(
                "store writes recovered after %d retries",
                state.retries,
                extra={"event": "store-write-recovered"},
            )
            state.failing = state.failing_since = None
        self.retry.reset()
        if checkpoint:
            self._next_checkpoint = trio.current_time() + self.checkpoint_interval_s
        state.checkpoints += len(notes)
        attestation = self.appender.attestation
        if attestation is not None and attestation.copies is not None:
            state.checkpoint_copy_failures = attestation.copies.failures
            state.checkpoint_copies_waiting = len(attestation.copies.pending)
        if batch:  # a checkpoint alone is not a batch of records
            state.batches += 1
        state.rows_written += len(frames)
        state.log_rows_written += len(logs)
        state.last_commit_at = now
        self.on_change()

    async def _committed_after_all(self, frames: list[FrameRecord], logs: list[LogRecord]) -> bool:
        """Whether the failed batch did commit (its acknowledgement lost).

        Asks until the store answers: appending again without knowing would store the
        batch twice if it had committed.
        """
        while True:
            try:
                return await trio.to_thread.run_sync(self.appender.resync, frames, logs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.state.retries += 1
                self.state.failing = describe_db_error(exc)
                await trio.sleep(self.retry.next())


def appender_for(settings: Settings, signer: Signer | None, engine: Engine) -> Appender:
    """The store's appender, signing as ``[signing]`` says, told which accounts have rows no
    checkpoint covers yet (database work: call it from a thread, or a writer process)."""
    appender = Appender(engine, attestation_for(settings, signer, engine))
    appender.seed_unattested(settings.studio.accounts)
    return appender


def _nothing() -> None:
    pass
