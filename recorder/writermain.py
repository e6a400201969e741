"""The writer process: the store's side of the recorder, in its own interpreter and GIL.

Started by the recorder (:class:`recorder.writerprocess.WriterProcess`) as
``python -m recorder.writermain FD`` with one end of a socket pair as ``FD``. It reads
its :class:`~recorder.handoff.Setup`, opens the store and the signing key, says
:class:`~recorder.handoff.Ready`, then runs the same :class:`~recorder.writer.Writer` as
an in-process recorder: batches, the hash chains, checkpoints, inserts/``COPY``, commits,
retries of a failing store. After every change of its state it reports
:class:`~recorder.handoff.Progress` (committed counts drive the recorder's window).

It ignores SIGTERM and SIGINT: the recorder decides when recording ends. When the
recorder closes its end (a clean shutdown, or the recorder died — even by SIGKILL), the
writer commits every record it holds, signs the final checkpoints and exits 0. A record
of a batch the recorder had not finished sending is dropped (it was never committed: the
day's replay brings sequenced frames back). A failure that is not a store outage is
logged with its traceback, reported as :class:`~recorder.handoff.Fatal` and ends the
process with exit code 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections import deque
from typing import Final

import trio
from sqlalchemy.exc import SQLAlchemyError

from .dberrors import db_error_line
from .errors import RecorderError, first_leaf, first_line
from .handoff import (
    HEADER_BYTES,
    Fatal,
    Progress,
    Ready,
    Setup,
    Unframer,
    decode_batch,
    encode,
    state_fields,
)
from .heap import claim_process, freeze_startup_heap
from .logs import setup_logging
from .records import Record
from .state import WriterState
from .store import open_engine
from .writer import Writer, appender_for

log = logging.getLogger(__name__)

#: How much lower than the recorder's the writer's CPU priority is (``nice``). When the
#: machine's CPUs are all busy (a replay burst on a small machine), the reader, which must
#: keep each socket drained and stamp frames as they come, should win them: the writer can
#: fall behind safely, within the bounded window, and catches up when the burst is over.
#: Four accounts, 200,000-frame burst, two vCPUs, alternating A/B (tests/benchmarks/README.md):
#: recorder ÷ drain 0.80 → 0.90 on SQLite, 0.78 → 0.87 on PostgreSQL.
WRITER_NICE: Final = 5

#: Bytes read from the socket at a time.
READ_BYTES: Final = 1 << 20
#: How long the writer may take to commit what it holds once the recorder has ended.
FINISH_GRACE_S: Final = 30.0


class _Reporter:
    """Sends the writer's state to the recorder whenever it changed (one send at a time).

    Once the recorder is gone, reports are dropped: the records still go to the store."""

    def __init__(self, stream: trio.SocketStream, state: WriterState) -> None:
        self.stream = stream
        self.state = state
        self.gone = False
        self._stopping = False
        self._changed = trio.Event()
        self._durations: list[float] = []
        self._lock = trio.Lock()

    def changed(self) -> None:
        self._changed.set()

    def batch(self, seconds: float) -> None:
        self._durations.append(seconds)

    async def run(self) -> None:
        """Report every change until :meth:`stop` (never cut off in the middle of a send)."""
        while not self._stopping:
            await self._changed.wait()
            self._changed = trio.Event()
            await self.send()

    def stop(self) -> None:
        self._stopping = True
        self._changed.set()

    async def send(self) -> None:
        durations, self._durations = self._durations, []
        await self.say(Progress(state_fields(self.state), durations))

    async def say(self, message: Progress | Ready | Fatal) -> None:
        if self.gone:
            return
        async with self._lock:
            try:
                await self.stream.send_all(encode(message))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.gone = True


class _Received:
    """The batches the recorder sent, as the writer's intake. Kept encoded until the writer
    takes them (half the memory of the decoded records while a slow store holds them)."""

    def __init__(self) -> None:
        self._bodies: deque[bytes] = deque()
        self._records: list[Record] = []  # decoded, from ``_at`` on not yet taken
        self._at = 0
        self._consumer = trio.lowlevel.ParkingLot()
        #: Set once nothing more will come (the recorder closed its end, or died).
        self.closed = trio.Event()

    def put(self, bodies: list[bytes]) -> None:
        self._bodies.extend(bodies)
        if bodies and self._consumer:
            self._consumer.unpark_all()

    def close(self) -> None:
        self.closed.set()
        self._consumer.unpark_all()

    async def wait(self) -> bool:
        while self._at >= len(self._records) and not self._bodies:
            if self.closed.is_set():
                return False
            await self._consumer.park()
        return True

    def take(self, most: int) -> list[Record]:
        taken: list[Record] = []
        while len(taken) < most:
            if self._at >= len(self._records):
                if not self._bodies:
                    break
                self._records, self._at = decode_batch(self._bodies.popleft()).records(), 0
            end = self._at + most - len(taken)
            taken += self._records[self._at : end]
            self._at = min(end, len(self._records))
        return taken


async def _intake(stream: trio.SocketStream, received: _Received) -> None:
    """Batches from the recorder into the writer's intake, until the recorder closes."""
    unframer = Unframer()
    try:
        while True:
            try:
                data = await stream.receive_some(READ_BYTES)
            except trio.BrokenResourceError:  # the recorder died: as good as closed
                data = b""
            if not data:
                break
            received.put(unframer.feed(data))  # unbounded here: the recorder's window bounds it
    finally:
        received.close()
    if unframer.pending:
        log.warning(
            "the recorder ended in the middle of a batch (%d bytes): its records were not "
            "committed (the day's replay re-delivers sequenced frames)",
            unframer.pending,
            extra={"event": "writer-batch-cut"},
        )


async def serve(sock: socket.socket, setup: Setup) -> int:
    """Write what the recorder hands over until it closes; the process's exit code."""
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    state = WriterState()
    reporter = _Reporter(stream, state)
    settings = setup.settings
    try:
        engine = open_engine(settings.store.url, must_exist=True)
        appender = appender_for(settings, settings.require_signer(), engine)
    except (RecorderError, SQLAlchemyError) as exc:
        line = db_error_line(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
        await reporter.say(Fatal(f"the writer could not start: {line}"))
        return 1
    received = _Received()
    writer = Writer.for_settings(
        settings, appender, received, state, on_batch=reporter.batch, on_change=reporter.changed
    )
    freeze_startup_heap()
    await reporter.say(Ready(os.getpid()))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_intake, stream, received)
            nursery.start_soon(reporter.run)
            writing = trio.CancelScope()
            watch = trio.CancelScope()
            nursery.start_soon(_give_up_when_left, received, writing, watch)
            with writing:
                await writer.run()
            watch.cancel()
            reporter.stop()  # its last report goes out whole; the final one follows
        if writing.cancelled_caught:
            return 1
    except Exception as exc:  # a bug, or a store error that is not an outage: loudly
        log.exception("the writer failed", extra={"event": "writer-failed"})
        await reporter.say(Fatal(f"the writer failed: {first_line(first_leaf(exc))}"))
        return 1
    finally:
        engine.dispose()
    await reporter.send()  # the last state: everything committed
    return 0


async def _give_up_when_left(
    received: _Received, writing: trio.CancelScope, watch: trio.CancelScope
) -> None:
    """Once the recorder is gone, finish within :data:`FINISH_GRACE_S` or give up: a store
    that stays down must not keep an orphan (holding the SQLite store's lock) forever."""
    with watch:
        await received.closed.wait()
        await trio.sleep(FINISH_GRACE_S)
    if watch.cancelled_caught:
        return
    log.error(
        "the store took more than %g s to take the last records after the recorder ended; "
        "giving up on them (the day's replay re-delivers sequenced frames)",
        FINISH_GRACE_S,
        extra={"event": "writer-gave-up"},
    )
    writing.cancel()


def _read_setup(sock: socket.socket) -> Setup:
    header = sock.recv(HEADER_BYTES, socket.MSG_WAITALL)
    if len(header) < HEADER_BYTES:
        raise SystemExit("studio-recorder writer: the recorder closed before the setup")
    body = sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)
    return Setup.loads(body)


def main(argv: list[str] | None = None) -> int:
    """``python -m recorder.writermain FD``: only the recorder starts this."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m recorder.writermain FD (started by studio-recorder run)",
              file=sys.stderr)  # fmt: skip
        return 2
    # The recorder decides when recording ends: a Ctrl-C on the terminal (the whole process
    # group) or a SIGTERM must not cut the writer off before the recorder's last records.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    claim_process()  # started by the recorder, for this alone (recorder.heap)
    try:
        os.nice(WRITER_NICE)  # lowering one's own priority needs no privilege
        nice_error = None
    except OSError as exc:
        nice_error = exc
    sock = socket.socket(fileno=int(args[0]))
    setup = _read_setup(sock)
    setup_logging(setup.log_level, setup.log_format)
    if nice_error is not None:
        log.warning("the writer runs at the recorder's CPU priority: %s", nice_error)
    return trio.run(serve, sock, setup)


if __name__ == "__main__":
    sys.exit(main())
