"""One accepted WebSocket connection of the simulator: an ordered outbox and its writer.

Everything the server sends on a connection — acks, replays, live frames, heartbeats, error
notices, the final close — goes through one unbounded outbox drained by one task
(`send_loop`). That keeps frames in exactly the order they were enqueued (replay before
`replay-complete` before live), lets producers enqueue from synchronous code, and gives a single
place to apply a stall (hold the outbox, keep TCP open).

Drops are different on purpose: they model the network failing, so they jump the queue
(cancel the session) and then either close cleanly with 1001 or close the TCP stream without
any WebSocket close frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "Session"]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
# Bounds on waiting for a peer that stopped reading; a simulator must never hang a test.
_SEND_TIMEOUT_S = 10.0
_DISCONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str | None


@dataclass(frozen=True)
class _RawTextFrame:
    """A text frame whose payload bytes are sent as they are, even when not valid UTF-8."""

    payload: bytes

    def wire_bytes(self) -> bytes:
        """The whole frame as a server sends it: FIN + text opcode, unmasked, then the payload."""
        size = len(self.payload)
        if size < 126:
            header = bytes([0x81, size])
        elif size < 1 << 16:
            header = bytes([0x81, 126]) + size.to_bytes(2, "big")
        else:
            header = bytes([0x81, 127]) + size.to_bytes(8, "big")
        return header + self.payload


_Item = tuple[str | bytes | _Close | _RawTextFrame, str | None]  # (what to send, whose log)


class Session:
    """Outbox, stall state and shutdown mode of one server-side WebSocket connection."""

    def __init__(
        self,
        ws: WebSocketConnection,
        stream: trio.abc.Stream,
        *,
        on_sent: Callable[[str, str], None],
    ) -> None:
        """Wrap `ws` (running over `stream`); `on_sent(account_id, frame)` logs text sent."""
        self.ws = ws
        self._stream = stream
        self._on_sent = on_sent
        self.account_id: str | None = None  # set once a subscribe is accepted
        self.token: str | None = None
        self.subscribed = trio.Event()
        # Cancelled to end the connection; the server runs the connection's tasks inside it.
        self.scope = trio.CancelScope()
        self._outbox_in, self._outbox_out = trio.open_memory_channel[_Item](math.inf)
        self._stalled_until = -math.inf
        self._drop: Literal["clean", "abort"] | None = None

    # -- producers (synchronous, callable from any task) ----------------------------------

    def enqueue(self, frame: str | bytes, log_as: str | None) -> None:
        """Queue a frame; if it is text and `log_as` is set, it goes in that account's log."""
        self._outbox_in.send_nowait((frame, log_as))

    def enqueue_raw_text(self, payload: bytes) -> None:
        """Queue a text frame carrying ``payload`` unchecked (a WebSocket library would refuse
        to build one that is not UTF-8: this writes the frame to the stream itself)."""
        self._outbox_in.send_nowait((_RawTextFrame(payload), None))

    def close_after_queued(self, code: int = CLOSE_NORMAL, reason: str | None = None) -> None:
        """Close the WebSocket with `code` once everything queued before has been sent."""
        self._outbox_in.send_nowait((_Close(code, reason), None))

    def stall_until(self, deadline: float) -> None:
        """Hold all output until trio time `deadline` (extends, never shortens, a stall)."""
        self._stalled_until = max(self._stalled_until, deadline)

    @property
    def stalled(self) -> bool:
        """True while output is held by a stall."""
        return trio.current_time() < self._stalled_until

    def drop(self, *, clean: bool) -> None:
        """End the connection now, skipping the outbox (see the module docstring)."""
        self._drop = "clean" if clean else "abort"
        self.scope.cancel()

    # -- the writer ----------------------------------------------------------------------

    async def send_loop(self) -> None:
        """Drain the outbox in order until a close is sent or the peer is gone."""
        async for frame, log_as in self._outbox_out:
            # A loop, not one sleep: stall() may extend the deadline while we wait.
            while self.stalled:  # noqa: ASYNC110
                await trio.sleep_until(self._stalled_until)
            if isinstance(frame, _Close):
                with trio.move_on_after(_DISCONNECT_TIMEOUT_S):
                    await self.ws.aclose(frame.code, frame.reason)
                self.scope.cancel()
                return
            if isinstance(frame, _RawTextFrame):
                with trio.CancelScope(shield=True), trio.move_on_after(_SEND_TIMEOUT_S):
                    try:
                        await self._stream.send_all(frame.wire_bytes())
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.scope.cancel()
                        return
                continue
            # Shielded: a send cancelled halfway would leave half a frame on the wire and
            # corrupt a later clean close. The timeout still bounds a peer that stopped reading.
            with trio.CancelScope(shield=True), trio.move_on_after(_SEND_TIMEOUT_S) as timeout:
                try:
                    await self.ws.send_message(frame)
                except ConnectionClosed:
                    self.scope.cancel()
                    return
            if timeout.cancelled_caught:
                self.drop(clean=False)  # the stream may hold half a frame: only abort is safe
                return
            if isinstance(frame, str) and log_as is not None:
                self._on_sent(log_as, frame)

    async def finish(self) -> None:
        """Close the connection the way it ended: clean drop 1001, abort, or normal 1000."""
        if self._drop == "abort":
            # No close frame at all: the client sees the TCP stream end (code 1006 for it).
            await trio.aclose_forcefully(self._stream)
            return
        code = CLOSE_GOING_AWAY if self._drop == "clean" else CLOSE_NORMAL
        reason = "Going away" if self._drop == "clean" else None
        with trio.move_on_after(_DISCONNECT_TIMEOUT_S) as timeout:
            await self.ws.aclose(code, reason)  # a no-op if already closed
        if timeout.cancelled_caught:
            await trio.aclose_forcefully(self._stream)
