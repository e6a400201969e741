"""The recorder's handle on its writer process: start it, feed it, watch it.

The reading process (trio: connections, sessions) and the writing process (the store) run
on two interpreters, so two cores: :mod:`recorder.writermain` is the child. Here, in the
recorder, :class:`WriterProcess` takes the place of the in-process
:class:`~recorder.writer.Writer`: it takes records from the same bounded
:class:`~recorder.recordqueue.RecordQueue` the sessions send into, and forwards them in
batches over a socket pair (:mod:`recorder.handoff`), as many as are queued at once.

Backpressure stays bounded end to end: at most ``window`` records, and about
:data:`~recorder.window.WINDOW_MAX_BYTES` of messages, are in flight (sent and not yet
reported committed; :mod:`recorder.window`); when the window is full the forwarder waits,
the queue fills, and the sessions wait, exactly as when the in-process writer is behind.
The queue and the window together hold at most ``queue_max_frames`` records.

Supervision: if the writer process dies or fails, :meth:`WriterProcess.run` raises
:class:`WriterFailed` at once and the recorder exits non-zero (systemd restarts it;
nothing committed is lost, and the day's replay re-delivers the sequenced frames that
were in flight). If the recorder dies, the writer sees its socket close, commits what it
holds and exits. On a clean shutdown the forwarder sends the last records, closes its
half of the socket, and :attr:`done` is set once the writer committed everything and
exited 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

import msgspec
import trio

from .config import CLIENT_SECRET_ENV, Settings
from .errors import RecorderError
from .handoff import (
    Fatal,
    Progress,
    Ready,
    Setup,
    Unframer,
    apply_state,
    batch_of,
    decode_reply,
    encode,
)
from .logs import current_logging
from .recordqueue import RecordQueue
from .records import Record
from .state import WriterState
from .window import Window

log = logging.getLogger(__name__)

#: How long the writer process may take to open the store and say it is ready.
WRITER_START_TIMEOUT_S: Final = 120.0
#: How long a writer process left behind (the recorder failing) gets before it is killed.
WRITER_EXIT_GRACE_S: Final = 30.0
#: Most records per message; a message of more bytes (huge frames) is sent in parts, well
#: below the wire's limit (recorder.handoff.MAX_MESSAGE_BYTES).
MESSAGE_MAX_RECORDS: Final = 4096
MESSAGE_SPLIT_BYTES: Final = 64 * 1024 * 1024
#: How long the forwarder lets records gather when fewer than FORWARD_MIN_RECORDS are queued.
FORWARD_DELAY_S: Final = 0.002
FORWARD_MIN_RECORDS: Final = 512
#: Most of ``queue_max_frames`` the queue takes; the rest is the window in flight.
QUEUE_MAX_RECORDS: Final = 4096
_READ_BYTES: Final = 1 << 16


class WriterFailed(RecorderError):
    """The writer process died or failed; the recorder must stop (systemd restarts it)."""


def split_queue(queue_max_frames: int) -> tuple[int, int]:
    """``(queue capacity, window)``: together ``queue_max_frames`` (at least 1 each)."""
    queue = max(1, min(QUEUE_MAX_RECORDS, queue_max_frames // 2))
    return queue, max(1, queue_max_frames - queue)


def _how_it_ended(returncode: int | None) -> str:
    if returncode is None:
        return "closed its socket"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class WriterProcess:
    """The writer in a child process; :meth:`start`, then :meth:`run` beside the readers."""

    def __init__(
        self,
        settings: Settings,
        queue: RecordQueue,
        state: WriterState,
        *,
        window: int,
        on_batch: Callable[[float], None] | None = None,
        inherit_fds: Sequence[int] = (),
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.state = state
        self.on_batch = on_batch
        self.inherit_fds = tuple(inherit_fds)
        self.done = trio.Event()
        self.pid: int | None = None
        self._process: trio.Process | None = None
        self._stream: trio.SocketStream | None = None
        self._unframer = Unframer()
        self._bodies: list[bytes] = []  # received, not yet handled
        self._window = Window(window)
        self._progress = trio.Event()
        self._all_sent = False

    @property
    def in_flight(self) -> int:
        """Records sent to the writer process and not yet reported committed."""
        return self._window.records

    async def start(self) -> None:
        """Start the writer process and wait until it has opened the store.

        Raises WriterFailed (one line) when it cannot start."""
        ours, theirs = socket.socketpair()
        try:
            self._process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "recorder.writermain", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), *self.inherit_fds),
                # The writer needs no client secret: not in its settings, nor its environment.
                env={k: v for k, v in os.environ.items() if k != CLIENT_SECRET_ENV},
            )
        except OSError as exc:
            ours.close()
            raise WriterFailed(f"cannot start the writer process: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        self.pid = self._process.pid
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        level, log_format = current_logging()
        studio = replace(self.settings.studio, client_secret=None)  # the writer needs none
        signing = replace(self.settings.signing, public_keys=())
        setup = Setup(replace(self.settings, studio=studio, signing=signing), level, log_format)
        try:
            with trio.fail_after(WRITER_START_TIMEOUT_S):
                await self._stream.send_all(setup.dumps())
                reply = await self._next_reply()
        except trio.TooSlowError:
            await self.aclose()
            raise WriterFailed(
                f"the writer process did not open the store within {WRITER_START_TIMEOUT_S:g} s"
            ) from None
        except trio.BrokenResourceError:
            reply = None
        if not isinstance(reply, Ready):
            await self._raise_failed(reply, "before it was ready")
        log.info("writer process %d ready", self.pid, extra={"event": "writer-ready"})

    async def run(self) -> None:
        """Forward records until the channel closes; return once the writer committed them
        all and exited. Raises WriterFailed when it dies or fails meanwhile."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward)
                while True:
                    reply = await self._next_reply()
                    if reply is None:
                        break
                    if isinstance(reply, Fatal):
                        await self._raise_failed(reply, "")
                if not self._all_sent:
                    await self._raise_failed(None, "")
                assert self._process is not None
                with trio.move_on_after(WRITER_EXIT_GRACE_S):
                    await self._process.wait()
                if self._process.returncode != 0:
                    await self._raise_failed(None, "")
        finally:
            self.done.set()

    async def aclose(self) -> None:
        """Close our end (the writer commits what it holds and exits); wait for it a grace
        period, then kill it. Safe to call more than once."""
        with trio.CancelScope(shield=True):
            if self._stream is not None:
                await self._stream.aclose()
            process = self._process
            if process is None or process.returncode is not None:
                return
            with trio.move_on_after(WRITER_EXIT_GRACE_S):
                await process.wait()
            if process.returncode is None:
                log.error(
                    "the writer process did not exit within %g s of the recorder's end; "
                    "killing it (what it had not committed comes back with the day's replay)",
                    WRITER_EXIT_GRACE_S,
                    extra={"event": "writer-killed"},
                )
                process.kill()
                await process.wait()

    async def _raise_failed(self, reply: Fatal | Ready | Progress | None, when: str) -> None:
        assert self._process is not None
        if isinstance(reply, Fatal):
            message = reply.line
        else:
            with trio.move_on_after(5):
                await self._process.wait()
            message = f"the writer process ended ({_how_it_ended(self._process.returncode)})"
            message += f" {when}" if when else ""
        raise WriterFailed(
            f"{message}; stopping the recorder (frames not yet committed come back with "
            "the day's replay on the next start)"
        )

    async def _next_reply(self) -> Ready | Progress | Fatal | None:
        """The writer's next message that is not Progress (applied here); None at EOF."""
        stream = self._stream
        assert stream is not None
        while True:
            while self._bodies:
                body = self._bodies.pop(0)
                try:
                    reply = decode_reply(body)
                except msgspec.DecodeError as exc:
                    raise WriterFailed(f"the writer process sent a message that is not one: "
                                       f"{exc}") from None  # fmt: skip
                if isinstance(reply, Progress):
                    self._progressed(reply)
                else:
                    return reply
            try:
                data = await stream.receive_some(_READ_BYTES)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            try:
                self._bodies = self._unframer.feed(data)
            except ValueError as exc:
                raise WriterFailed(f"the writer process sent {exc}") from None

    def _progressed(self, progress: Progress) -> None:
        apply_state(self.state, progress.state)
        if self.on_batch is not None:
            for seconds in progress.batch_seconds:
                self.on_batch(seconds)
        self._window.commit(self.state.rows_written + self.state.log_rows_written)
        self._progress.set()
        self._progress = trio.Event()

    async def _forward(self) -> None:
        """Records from the queue to the writer process, within the window."""
        stream = self._stream
        assert stream is not None
        queue = self.queue
        window = self._window
        while True:
            while window.full:
                await self._progress.wait()
            if not await queue.wait():
                break
            if len(queue) < FORWARD_MIN_RECORDS:
                # Let more gather: a message per record or two (the sessions wake this task
                # at every frame when the rate is high) costs the event loop more than the
                # frames themselves.
                await trio.sleep(FORWARD_DELAY_S)
            records = queue.take(min(window.room, MESSAGE_MAX_RECORDS))
            window.take(len(records))
            window.carried(await self._send(records))
        self._all_sent = True
        with contextlib.suppress(trio.BrokenResourceError):  # gone: run() says how it ended
            await stream.send_eof()  # the writer commits the rest and exits

    async def _send(self, records: list[Record]) -> int:
        """Send ``records`` (in parts if huge); the bytes sent."""
        assert self._stream is not None
        message = encode(batch_of(records))
        if len(message) > MESSAGE_SPLIT_BYTES and len(records) > 1:  # huge frames: in parts
            half = len(records) // 2
            return await self._send(records[:half]) + await self._send(records[half:])
        try:
            await self._stream.send_all(message)
        except trio.BrokenResourceError:
            await self._raise_failed(None, "")
        return len(message)
