"""The window: what the recorder has handed to its writer process and not yet seen committed.

The forwarder (:class:`recorder.writerprocess.WriterProcess`) sends records in messages and
the writer process reports how many it committed. The writer process holds the records in
flight (as the messages' bytes, about the size of the frames) until it commits them, so
the window bounds them twice: by count (``queue_max_frames`` less the queue) and by bytes
(:data:`WINDOW_MAX_BYTES`). In a long replay burst the reader takes frames faster than
the store commits them and the window fills; bounded by count alone, 96,000 frames of
~400 bytes took the two processes' summed RSS from about 180 to 215–227 MB
(tests/benchmarks/README.md). A message is released once every record up to its end is
committed. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections import deque
from typing import Final

#: Most bytes of messages in flight to the writer process before the forwarder waits: at
#: about 480 bytes per frame some 17,000 frames, a quarter of a second of the writer's
#: work in a burst, so it never runs dry. One message may exceed it (a huge frame is
#: never held back).
WINDOW_MAX_BYTES: Final = 8 * 1024 * 1024


class Window:
    """Records and message bytes in flight; ``full`` when either reaches its bound."""

    __slots__ = ("_messages", "bytes", "committed", "most_bytes", "most_records", "sent")

    def __init__(self, most_records: int, most_bytes: int = WINDOW_MAX_BYTES) -> None:
        if most_records < 1 or most_bytes < 1:
            raise ValueError("a window holds at least one record and one byte")
        self.most_records = most_records
        self.most_bytes = most_bytes
        self.sent = 0  # records taken for sending, in all
        self.committed = 0  # records the writer process reported committed, in all
        self.bytes = 0  # bytes of the messages not yet wholly committed
        self._messages: deque[tuple[int, int]] = deque()  # (records sent at its end, bytes)

    @property
    def records(self) -> int:
        """Records sent (or being sent) and not yet reported committed."""
        return self.sent - self.committed

    @property
    def full(self) -> bool:
        return self.records >= self.most_records or self.bytes >= self.most_bytes

    @property
    def room(self) -> int:
        """How many more records may be taken now (0 when full)."""
        return 0 if self.full else self.most_records - self.records

    def take(self, records: int) -> None:
        """``records`` are about to be sent: they count as in flight from now on."""
        self.sent += records

    def carried(self, message_bytes: int) -> None:
        """The records taken so far went out, in messages of ``message_bytes`` in all."""
        self._messages.append((self.sent, message_bytes))
        self.bytes += message_bytes
        self._release()  # its records may already be committed (a report came meanwhile)

    def commit(self, committed: int) -> None:
        """The writer process reported ``committed`` records committed in all."""
        self.committed = committed
        self._release()

    def _release(self) -> None:
        messages = self._messages
        while messages and messages[0][0] <= self.committed:
            self.bytes -= messages.popleft()[1]
