"""The bounded queue between the sessions and the writer: records in, batches out.

Every account's session puts each record in with :meth:`RecordQueue.send_nowait` (or
:meth:`~RecordQueue.send`, which waits for room): when the queue holds ``capacity``
records the sessions wait (backpressure reaches the server through TCP), so memory never
grows without bound. The one consumer — the in-process writer, or the forwarder to the
writer process — waits for records with :meth:`~RecordQueue.wait` and takes as many as
it wants at once with :meth:`~RecordQueue.take`: a batch costs one list slice, not one
channel hand-off per record (a trio memory channel costs about a microsecond per record
on each side, which the event loop cannot spare at tens of thousands of frames a second).

Cancellation is as with trio's channels: a :meth:`send` that was cancelled did not put
its record in (the session keeps it and sends it again), one that returned did.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Protocol

import trio

from .records import Record


class Intake(Protocol):
    """Where the writer takes its records from."""

    async def wait(self) -> bool:
        """Until a record can be taken (True), or none ever will (False: closed, drained)."""
        ...

    def take(self, most: int) -> list[Record]:
        """Up to ``most`` records, oldest first, without waiting (maybe none)."""
        ...


class RecordQueue:
    """A bounded FIFO of records for one consumer and any number of senders."""

    def __init__(self, capacity: float = math.inf) -> None:
        if capacity < 1:
            raise ValueError("a record queue holds at least one record")
        self.capacity = capacity
        self._items: list[Record] = []
        self._closed = False
        self._broken = False
        self._consumer = trio.lowlevel.ParkingLot()
        self._senders = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    def send_nowait(self, record: Record) -> None:
        """Put ``record`` in, or raise trio.WouldBlock (nothing put in) when full.

        Raises trio.BrokenResourceError once the consumer is gone (:meth:`consumer_gone`)."""
        if self._broken:
            raise trio.BrokenResourceError("the writer is gone")
        if self._closed:
            raise trio.ClosedResourceError("the record queue is closed")
        items = self._items
        if len(items) >= self.capacity:
            raise trio.WouldBlock
        items.append(record)
        if self._consumer:
            self._consumer.unpark_all()

    async def send(self, record: Record) -> None:
        """Put ``record`` in, waiting for room as long as it takes."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.send_nowait(record)
            except trio.WouldBlock:
                await self._senders.park()  # cancelled here: nothing was put in
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return

    async def wait(self) -> bool:
        while not self._items:
            if self._closed:
                return False
            await self._consumer.park()
        return True

    def take(self, most: int) -> list[Record]:
        items = self._items
        if most >= len(items):
            self._items = []
            taken = items
        else:
            taken = items[:most]
            del items[:most]
        if taken and self._senders:
            self._senders.unpark_all()
        return taken

    def close(self) -> None:
        """Nothing more will be sent: the consumer takes what is left, then stops."""
        self._closed = True
        self._consumer.unpark_all()
        self._senders.unpark_all()  # a sender still waiting learns it is closed

    def consumer_gone(self) -> None:
        """The writer stopped for good (it failed): senders, waiting or not, get
        trio.BrokenResourceError instead of waiting for room that will never come."""
        self._broken = True
        self._senders.unpark_all()

    async def __aenter__(self) -> RecordQueue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
