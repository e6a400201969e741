"""The wire between the recorder and its writer process: messages and their framing (pure).

The reading process hands records to the writer process over a local stream socket
(:mod:`recorder.writerprocess`). Every message is a 4-byte big-endian length and a
MessagePack body (msgspec: compact, typed, decoded in C; no pickling of per-frame objects):

* reader → writer: :class:`Batch` — records in the order they were taken, frames as
  ``FrameRecord`` arrays, lifecycle rows as ``LogRecord`` maps with their places among
  the frames (so a ``closed`` row still follows its session's last frame);
* writer → reader: :class:`Ready` once the store is open, :class:`Progress` after every
  commit or change of the writer's state (it drives backpressure, ``/healthz``,
  ``/metrics`` and ``status``), :class:`Fatal` with one line before a writer that failed
  exits.

Only the first message, the writer's :class:`Setup`, is pickled: the settings it needs,
once per start, over a socket only the two processes hold.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from .config import Settings
from .logs import LogFormat
from .records import FrameRecord, LogRecord, Record
from .state import WriterState

#: Bytes of the length prefix of every message.
HEADER_BYTES: Final = 4
#: The largest message either side accepts (a batch of huge frames is split before this).
MAX_MESSAGE_BYTES: Final = 1 << 30


class Batch(msgspec.Struct, array_like=True, tag=True):
    """Records for the writer: ``frames`` in order, each of ``logs`` before the frame whose
    index ``log_at`` gives (``len(frames)``: after the last)."""

    frames: list[FrameRecord]
    logs: list[LogRecord]
    log_at: list[int]

    def records(self) -> list[Record]:
        """The records in the order they were handed over."""
        if not self.logs:
            return list(self.frames)
        return list(self._merged())

    def _merged(self) -> Iterator[Record]:
        frames, logs, log_at = self.frames, self.logs, self.log_at
        start = 0
        for log, at in zip(logs, log_at, strict=True):
            yield from frames[start:at]
            yield log
            start = at
        yield from frames[start:]


def batch_of(records: Sequence[Record]) -> Batch:
    """The :class:`Batch` holding ``records`` in their order."""
    frames: list[FrameRecord] = []
    logs: list[LogRecord] = []
    log_at: list[int] = []
    for record in records:
        if type(record) is FrameRecord:
            frames.append(record)
        else:
            assert isinstance(record, LogRecord)
            logs.append(record)
            log_at.append(len(frames))
    return Batch(frames, logs, log_at)


class Ready(msgspec.Struct, array_like=True, tag=True):
    """The writer process opened the store and is ready for records."""

    pid: int


class Progress(msgspec.Struct, array_like=True, tag=True):
    """The writer's state (:class:`~recorder.state.WriterState`'s fields) and the durations
    of the batches it committed since the last report."""

    state: dict[str, Any]
    batch_seconds: list[float]


class Fatal(msgspec.Struct, array_like=True, tag=True):
    """The writer process failed (one line) and exits."""

    line: str


FromWriter = Ready | Progress | Fatal

_ENCODER: Final = msgspec.msgpack.Encoder()
_BATCH_DECODER: Final = msgspec.msgpack.Decoder(Batch)
_REPLY_DECODER: Final = msgspec.msgpack.Decoder(FromWriter)


def frame(body: bytes) -> bytes:
    """``body`` with its length prefix."""
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def encode(message: Batch | FromWriter) -> bytes:
    """One message, framed."""
    return frame(_ENCODER.encode(message))


def decode_batch(body: bytes) -> Batch:
    return _BATCH_DECODER.decode(body)


def decode_reply(body: bytes) -> FromWriter:
    return _REPLY_DECODER.decode(body)


def state_fields(state: WriterState) -> dict[str, Any]:
    """What :class:`Progress` carries of the writer's state."""
    return dict(vars(state))


def apply_state(state: WriterState, fields: dict[str, Any]) -> None:
    """Set ``state`` to what a :class:`Progress` reported (unknown fields are ignored)."""
    known = vars(state)
    for name, value in fields.items():
        if name in known:
            setattr(state, name, value)


class Unframer:
    """Splits a byte stream into message bodies (pure; the I/O is the caller's)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete message bodies ``data`` finishes; a partial one is kept.

        Raises ValueError on a length beyond :data:`MAX_MESSAGE_BYTES` (not our peer)."""
        buffer = self._buffer
        buffer += data
        bodies: list[bytes] = []
        start = 0
        while len(buffer) - start >= HEADER_BYTES:
            size = int.from_bytes(buffer[start : start + HEADER_BYTES], "big")
            if size > MAX_MESSAGE_BYTES:
                raise ValueError(f"a message of {size} bytes, over the limit")
            end = start + HEADER_BYTES + size
            if len(buffer) < end:
                break
            bodies.append(bytes(buffer[start + HEADER_BYTES : end]))
            start = end
        del buffer[:start]
        return bodies

    @property
    def pending(self) -> int:
        """Bytes of a message not yet complete."""
        return len(self._buffer)


@dataclass(frozen=True)
class Setup:
    """What the writer process is started with (pickled once; the client secret removed)."""

    settings: Settings
    log_level: str
    log_format: LogFormat

    def dumps(self) -> bytes:
        return frame(pickle.dumps(self))

    @staticmethod
    def loads(body: bytes) -> Setup:
        setup = pickle.loads(body)  # noqa: S301 - from our parent, over a private socket pair
        if not isinstance(setup, Setup):
            raise TypeError("the first message was not the writer's setup")
        return setup
