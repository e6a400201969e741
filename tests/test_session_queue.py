"""The session reads messages trio-websocket has already queued without a scheduler pass.

That fast path reaches into trio-websocket's receive queue (``_recv_channel``); if an
upgrade renames it, the recorder silently falls back to one ``get_message()`` per
frame and loses throughput. These tests make such an upgrade fail loudly instead.
"""

from __future__ import annotations

import functools

import pytest
import trio
from trio_websocket import WebSocketRequest, open_websocket, serve_websocket

from recorder.connection import MESSAGE_QUEUE_SIZE, _nothing_queued, queued_messages

pytestmark = pytest.mark.timeout(20)

MESSAGES = ["one", b"\x00binary", "three"]


async def _serve(request: WebSocketRequest) -> None:
    ws = await request.accept()
    for message in MESSAGES:
        await ws.send_message(message)
    await trio.sleep_forever()


async def test_queued_messages_come_in_order_without_waiting() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve_websocket, _serve, "127.0.0.1", 0, ssl_context=None)
        )
        port = server.port
        async with open_websocket(
            "127.0.0.1", port, "/", use_ssl=False, message_queue_size=MESSAGE_QUEUE_SIZE
        ) as ws:
            queued = queued_messages(ws)
            assert queued is not _nothing_queued, "trio-websocket's receive queue moved"
            # Let the connection's reader task queue everything the server sent.
            with trio.fail_after(5):
                while ws._recv_channel.statistics().current_buffer_used < len(MESSAGES):
                    await trio.sleep(0.01)
            assert [queued(), queued(), queued()] == MESSAGES
            with pytest.raises(trio.WouldBlock):
                queued()
        nursery.cancel_scope.cancel()
