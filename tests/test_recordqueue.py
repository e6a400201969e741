"""The bounded queue between the sessions and the writer (recorder.recordqueue)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from recorder.recordqueue import RecordQueue
from recorder.records import LogRecord


def _log(n: int) -> LogRecord:
    return LogRecord("s", "a", n, "opened")


async def test_a_full_queue_makes_senders_wait_until_the_consumer_takes() -> None:
    queue = RecordQueue(2)
    queue.send_nowait(_log(0))
    await queue.send(_log(1))
    with pytest.raises(trio.WouldBlock):
        queue.send_nowait(_log(2))
    assert len(queue) == 2
    sent = trio.Event()

    async def third() -> None:
        await queue.send(_log(2))
        sent.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()  # no room: it waits
            assert [r.at_ns for r in queue.take(1)] == [0]
            await sent.wait()
    assert [r.at_ns for r in queue.take(10)] == [1, 2]  # order kept, nothing more


async def test_a_cancelled_send_put_nothing_in_and_a_finished_one_did() -> None:
    queue = RecordQueue(1)
    queue.send_nowait(_log(0))
    with trio.move_on_after(0.01) as scope:
        await queue.send(_log(1))
    assert scope.cancelled_caught
    assert len(queue) == 1
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        with pytest.raises(trio.Cancelled):
            await queue.send(_log(2))  # cancelled before it started: not put in
    assert [r.at_ns for r in queue.take(5)] == [0]


async def test_the_consumer_waits_for_records_then_drains_what_is_left_after_close() -> None:
    queue = RecordQueue()
    got: list[int] = []

    async def consume() -> None:
        while await queue.wait():
            got.extend(r.at_ns for r in queue.take(2))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            async with queue:
                for n in range(5):
                    queue.send_nowait(_log(n))
    assert got == [0, 1, 2, 3, 4]
    with pytest.raises(trio.ClosedResourceError):
        queue.send_nowait(_log(5))
    assert await queue.wait() is False


def test_a_queue_holds_at_least_one_record() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RecordQueue(0)
