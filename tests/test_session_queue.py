"""The session reads messages trio-websocket has already queued without a scheduler pass,
and trio-websocket's reader queues every message of a network read before it yields.

Those fast paths reach into trio-websocket's message queue (``_recv_channel`` and
``_send_channel``); if an upgrade renames or reroutes them, the recorder silently falls
back to a scheduler pass per frame and loses throughput. These tests make such an
upgrade fail loudly instead.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket,
    serve_websocket,
)

from recorder.connection import (
    MESSAGE_QUEUE_SIZE,
    _nothing_queued,
    _RunSender,
    default_connect,
    deliver_in_runs,
    queued_messages,
)
from tests.support.recording import start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(20)

MESSAGES = ["one", b"\x00binary", "three"]


async def _serve(request: WebSocketRequest) -> None:
    ws = await request.accept()
    for message in MESSAGES:
        await ws.send_message(message)
    await trio.sleep_forever()


@asynccontextmanager
async def _connected(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
) -> AsyncIterator[WebSocketConnection]:
    """A client connection (with the recorder's queue size) to a server running ``handler``."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
        )
        async with open_websocket(
            "127.0.0.1", server.port, "/", use_ssl=False, message_queue_size=MESSAGE_QUEUE_SIZE
        ) as ws:
            yield ws
        nursery.cancel_scope.cancel()


async def test_queued_messages_come_in_order_without_waiting() -> None:
    async with _connected(_serve) as ws:
        queued = queued_messages(ws)
        assert queued is not _nothing_queued, "trio-websocket's receive queue moved"
        # Let the connection's reader task queue everything the server sent.
        with trio.fail_after(5):
            while ws._recv_channel.statistics().current_buffer_used < len(MESSAGES):
                await trio.sleep(0.01)
        assert [queued(), queued(), queued()] == MESSAGES
        with pytest.raises(trio.WouldBlock):
            queued()


class _CountingSender(_RunSender):
    __slots__ = ("sent",)

    def __init__(self, channel: trio.MemorySendChannel[str | bytes]) -> None:
        super().__init__(channel)
        self.sent = 0

    async def send(self, message: str | bytes) -> None:
        self.sent += 1
        await super().send(message)


MANY = [f"frame {i}" for i in range(3 * MESSAGE_QUEUE_SIZE)]


async def _serve_many(request: WebSocketRequest) -> None:
    ws = await request.accept()
    for message in MANY:
        await ws.send_message(message)
    await ws.aclose()


async def test_the_reader_hands_every_message_to_the_run_sender() -> None:
    """More messages than the queue holds, read slowly: all arrive, in order, through
    the run sender (backpressure when the queue is full), then the close."""
    async with _connected(_serve_many) as ws:
        assert deliver_in_runs(ws), "trio-websocket's send channel moved"
        assert deliver_in_runs(ws)  # a second call changes nothing
        assert isinstance(ws._send_channel, _RunSender)
        counting = _CountingSender(ws._send_channel._channel)
        ws._send_channel = counting  # type: ignore[assignment]
        got = []
        with trio.fail_after(10):
            while len(got) < len(MANY):
                got.append(await ws.get_message())
                if len(got) == MESSAGE_QUEUE_SIZE:
                    # The queue fills up and the reader waits: nothing is dropped.
                    await wait_until(
                        lambda: (
                            ws._recv_channel.statistics().current_buffer_used == MESSAGE_QUEUE_SIZE
                        )
                    )
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        assert got == MANY
        assert counting.sent == len(MANY), "trio-websocket no longer sends through it"
        await trio.aclose_forcefully(ws._stream)  # as recorder.connection does


async def test_the_run_sender_yields_only_when_the_queue_is_full() -> None:
    send, receive = trio.open_memory_channel[str | bytes](2)
    async with _RunSender(send) as sender:  # as trio-websocket's reader task holds it
        with trio.testing.assert_no_checkpoints():
            await sender.send("a")
            await sender.send("b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.send, "c")  # waits for room
            await trio.testing.wait_all_tasks_blocked()
            assert send.statistics().tasks_waiting_send == 1
            assert [receive.receive_nowait() for _ in range(2)] == ["a", "b"]
        assert receive.receive_nowait() == "c"
    with pytest.raises(trio.EndOfChannel):  # leaving the block closed the channel
        receive.receive_nowait()


async def test_a_connection_without_the_channel_is_left_alone() -> None:
    class Elsewhere:
        _send_channel = None

    assert not deliver_in_runs(Elsewhere())  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_a_recording_session_reads_its_connection_in_runs(tmp_path: Path) -> None:
    """The session itself installs the run sender on the connection it reads."""
    opened: list[WebSocketConnection] = []
    plain = default_connect(None)

    @asynccontextmanager
    async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
        async with plain(url) as ws:
            opened.append(ws)
            yield ws

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running = await start(nursery, tmp_path, accounts=("100000",), connect=connect)
            await wait_until(lambda: len(running.frames("100000")) > 5)
            assert opened
            assert all(isinstance(ws._send_channel, _RunSender) for ws in opened)
            await running.stop()
            running.sim_scope.cancel()
