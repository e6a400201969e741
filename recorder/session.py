"""One WebSocket session of one account: connect, subscribe, read until it ends.

Every frame is stamped with ``time.time_ns()`` the moment it is taken off the
connection, its envelope parsed (never raising), and handed to the writer. The
session's lifecycle goes to ``connection_log`` through the same channel, so a
``closed`` row always follows the session's last frame. A session ends on a
server close, a liveness or subscribe timeout, a rejected subscribe, a
connection error, or shutdown; :func:`run_session` returns how it ended and
raises only when the connection could not be opened at all.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from .auth import Token
from .connection import (
    DISCONNECT_TIMEOUT_S,
    NOTHING_QUEUED,
    deliver_in_runs,
    describe_error,
    next_message,
    queued_messages,
)
from .context import AccountContext
from .envelope import (
    ACK_TYPE,
    ERROR_NOTICE_TYPE,
    RAW_TEXT,
    REPLAY_COMPLETE_TYPE,
    Envelope,
    encode_raw,
    parse_envelope,
    storable_text,
)
from .ownership import OWNERSHIP_LOST_DETAIL
from .records import SHUTDOWN_DETAIL, FrameRecord, LogRecord, Record
from .replay import ReplayTracker

log = logging.getLogger(__name__)

#: How long shutdown waits to record a session's ``closed`` row and close its socket.
SHUTDOWN_GRACE_S: Final = 5.0

#: Close codes that mean a frame broke the WebSocket protocol (RFC 6455 §7.4.1): protocol
#: error, invalid payload data (a text frame that is not UTF-8), message too big.
PROTOCOL_ERROR_CLOSE_CODES: Final = frozenset({1002, 1007, 1009})

Ending = Literal[
    "server-close", "liveness-timeout", "subscribe-timeout", "rejected", "error", "shutdown"
]


@dataclass(frozen=True)
class SessionResult:
    """How a session that was opened ended."""

    session_id: str
    ending: Ending
    detail: str
    subscribed_for_s: float  # 0 when never subscribed
    frames: int


def new_session_id() -> str:
    return str(uuid.uuid4())


def subscribe_message(account_id: str, token: Token) -> str:
    """The subscribe request; carries the token, so never log it."""
    payload = {"type": "subscribe-activity", "account_id": account_id}
    return json.dumps({"authorization": token.value, "payload": payload})


class _Ended(Exception):
    """Internal: the conversation decided to end the session."""

    def __init__(self, ending: Ending, detail: str) -> None:
        super().__init__(detail)
        self.ending = ending
        self.detail = detail


async def run_session(context: AccountContext, *, lost: trio.Event | None = None) -> SessionResult:
    """Run one session to its end. Raises TokenUnavailable, HandshakeError or OSError
    when no session could be opened (nothing recorded then but a log line).

    ``lost`` is the account's ownership-lost event, when its supervisor cancels the
    session on it: a session cancelled after it was set says so in its ``closed`` row.
    """
    account = context.account
    token = await context.tokens.get()
    session_id = new_session_id()
    conversation = _Conversation(context, token, session_id)
    opened = False
    try:
        async with context.connect(context.session.url) as ws:
            opened = True
            account.connected = True
            account.session_id = session_id
            account.sessions += 1
            opened_row = LogRecord(session_id, account.account_id, time.time_ns(), "opened")
            await context.sink.send(opened_row)
            await conversation.run(ws)
    except _Ended as ended:
        conversation.end(ended.ending, ended.detail)
    except ConnectionClosed as exc:  # raised by send_message when the server closed first
        conversation.server_closed(exc.reason)
    except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
        if not opened:
            raise
        if conversation.ending is None:  # else: only closing a finished session failed
            conversation.end("error", f"connection error: {describe_error(exc)}")
    finally:
        account.connected = account.subscribed = False
        account.live_sequence_gaps_closed += conversation.tracker.live_holes
        account.live_sequence_gaps = 0
        if opened:
            if context.shutdown.is_set() and conversation.ending in (None, "error"):
                conversation.end("shutdown", SHUTDOWN_DETAIL)
            elif conversation.ending is None:  # cancelled for another reason
                stopped_by_loss = lost is not None and lost.is_set()
                conversation.end(
                    "shutdown", OWNERSHIP_LOST_DETAIL if stopped_by_loss else "cancelled"
                )
            await conversation.record_closed(context.shutdown)
    assert conversation.ending is not None
    return SessionResult(
        session_id,
        conversation.ending,
        conversation.detail,
        conversation.subscribed_for_s(),
        conversation.frames,
    )


class _Conversation:
    """The subscribe/read state of one session (kept apart so ``run_session`` stays readable)."""

    def __init__(self, context: AccountContext, token: Token, session_id: str) -> None:
        self.account = context.account
        self.settings = context.session
        self.tokens = context.tokens
        self.token = token
        self.sink = context.sink
        self.trading_day = context.trading_day
        self.session_id = session_id
        self.attempted = context.first_attempt  # set once the subscribe got its answer
        self.tracker = ReplayTracker()
        self.frames = 0
        self.subscribed_at: float | None = None
        self.ended_at: float | None = None
        self.last_notice: str | None = None
        self.ending: Ending | None = None
        self.detail = ""
        self.last_rx = trio.current_time()
        self._pending: Record | None = None
        # The envelope of the frame in ``_pending`` when its hand-off was cut short by a
        # deadline: acted upon once the frame is handed over (see run()).
        self._pending_envelope: Envelope | None = None

    def subscribed_for_s(self) -> float:
        if self.subscribed_at is None:
            return 0.0
        return (self.ended_at or trio.current_time()) - self.subscribed_at

    def end(self, ending: Ending, detail: str) -> None:
        if self.ending is None:
            self.ending, self.detail = ending, detail
            self.ended_at = trio.current_time()

    def server_closed(self, reason: object) -> None:
        code = getattr(reason, "code", None)
        name = getattr(reason, "name", "") or ""
        text = getattr(reason, "reason", None)
        if code in PROTOCOL_ERROR_CLOSE_CODES:
            # The WebSocket layer (ours, or the server's) refused a frame: e.g. a text frame
            # that is not UTF-8 (1007). wsproto reports our side's refusal as a close.
            self.end(
                "error", f"protocol error {code} {name}".rstrip() + (f": {text}" if text else "")
            )
            return
        detail = f"server close {code} {name}".rstrip() + (f": {text}" if text else "")
        if self.last_notice is not None:
            # An error-notice then a close: the token may be what the server objected to
            # (decided on the message type and the close, never on the notice's text).
            detail += f"; after error-notice: {self.last_notice}"
            self.tokens.mark_stale(self.token)
        self.end("server-close", detail)

    async def record_closed(self, shutdown: trio.Event) -> None:
        """Write any frame caught mid-send and the ``closed`` row, even while being cancelled.

        While the store is down the queue may be full: wait for room as long as it takes
        (dropping them would lose a frame and make a clean end look unclean), except once
        shutdown has begun, which waits at most a grace period so a stuck writer cannot
        hang it."""
        record = LogRecord(
            self.session_id,
            self.account.account_id,
            time.time_ns(),
            "closed",
            storable_text(self.detail),
        )
        self.account.last_close = self.detail
        stuck = "stuck"
        with trio.CancelScope(shield=True):
            while True:
                with trio.move_on_after(SHUTDOWN_GRACE_S):
                    try:
                        await self._flush()
                        await self.sink.send(record)
                    except trio.BrokenResourceError:  # the writer failed: nothing to wait for
                        stuck = "gone"
                        break
                    return
                if shutdown.is_set():
                    break
        log.error(
            "could not record the end of session %s: the writer is %s",
            self.session_id,
            stuck,
            extra={"account": self.account.account_id},
        )

    async def _emit(self, record: Record) -> None:
        # A cancelled MemorySendChannel.send() has not enqueued its item: keep it as
        # pending so the frame is sent after the timeout (or at shutdown), never lost.
        self._pending = record
        await self.sink.send(record)
        self._pending = None

    async def _flush(self) -> None:
        if self._pending is not None:
            await self.sink.send(self._pending)
            self._pending = None

    async def log_event(self, event: str, detail: str | None = None) -> None:
        text = None if detail is None else storable_text(detail)
        record = LogRecord(self.session_id, self.account.account_id, time.time_ns(), event, text)
        await self._emit(record)

    async def run(self, ws: WebSocketConnection) -> None:
        """Subscribe, then read until the server closes or a timeout/rejection ends it."""
        await ws.send_message(subscribe_message(self.account.account_id, self.token))
        subscribe_deadline = trio.current_time() + self.settings.subscribe_timeout_s
        liveness_s = self.settings.liveness_timeout_s
        while self.ending is None:
            deadline = self.last_rx + liveness_s
            if self.subscribed_at is None:
                deadline = min(deadline, subscribe_deadline)
            # One scope per deadline, not per frame: the loop re-arms it only when it
            # fires and frames arrived meanwhile, keeping the per-frame path cheap.
            with trio.CancelScope(deadline=deadline):
                await self._read(ws)
            if self._pending is not None:
                # The deadline passed while the writer's queue was full: that is our own
                # backpressure (the store is slow or down), not a silent upstream. Wait for
                # room, then measure silence afresh.
                await self._flush()
                self.last_rx = trio.current_time()
                envelope, self._pending_envelope = self._pending_envelope, None
                if envelope is not None:  # a frame, received (and counted) in time: act on it
                    await self._act_on(envelope)
                continue
            now = trio.current_time()
            if self.subscribed_at is None and now >= subscribe_deadline:
                limit_s = self.settings.subscribe_timeout_s
                self.end("subscribe-timeout", f"subscribe timeout: no ack within {limit_s:g} s")
            elif now >= self.last_rx + liveness_s:
                self.end("liveness-timeout", f"liveness timeout: no frame for {liveness_s:g} s")
        log.warning(
            "closing the connection: %s",
            self.detail,
            extra={"account": self.account.account_id, "session": self.session_id},
        )
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            await ws.aclose(code=1000, reason=self.ending)

    async def _read(self, ws: WebSocketConnection) -> None:
        account = self.account
        account_id = account.account_id
        session_id = self.session_id
        tracker = self.tracker
        trading_day = self.trading_day
        emit = self._emit
        send_nowait = self.sink.send_nowait
        by_type = account.frames_by_type
        deliver_in_runs(ws)
        queued = queued_messages(ws)
        time_ns = time.time_ns
        current_time = trio.current_time
        new_record = tuple.__new__  # FrameRecord is a NamedTuple: skip its Python __new__
        took = False  # frames were taken since the last time none was queued
        while True:
            try:
                # Already received: no trip through the scheduler. trio-websocket queues a
                # network read's messages in one go (deliver_in_runs), so in a burst this
                # takes a run of them per wake-up.
                message = queued()
            except NOTHING_QUEUED:
                if took:
                    self.last_rx = current_time()  # (a backlog that never empties is no silence)
                    took = False
                message = await next_message(ws, queued)
                self.last_rx = current_time()
            took = True
            received_at_ns = time_ns()
            envelope = parse_envelope(message)
            replayed = tracker.observe(envelope)
            if type(message) is str and "\x00" not in message:
                raw_kind, raw = RAW_TEXT, message  # the common case of encode_raw
            else:
                raw_kind, raw = encode_raw(message)
            msg_type, sequence, server_ts_ms = envelope[:3]
            record = new_record(
                FrameRecord,
                (
                    account_id,
                    session_id,
                    received_at_ns,
                    server_ts_ms,
                    sequence,
                    msg_type,
                    trading_day(server_ts_ms, received_at_ns),
                    replayed,
                    raw_kind,
                    raw,
                ),
            )
            # Counted as received, before the hand-off: a frame whose hand-off waits (and
            # may be finished late by run()) counts with its own receipt time all the same.
            self.frames += 1
            account.frames += 1
            by_type[msg_type] += 1
            account.last_frame_ns = received_at_ns
            if sequence is not None:
                account.last_sequence = sequence
                account.live_sequence_gaps = tracker.live_holes
            try:
                send_nowait(record)  # enqueued, or WouldBlock and nothing enqueued
            except trio.WouldBlock:
                # The writer is behind: wait (backpressure). If a deadline cuts the wait
                # short, the frame stays pending and run() hands it over and acts on it.
                self._pending_envelope = envelope
                await emit(record)
                self._pending_envelope = None
            if msg_type is None or msg_type in _ROUTINE:
                continue
            await self._act_on(envelope)

    async def _act_on(self, envelope: Envelope) -> None:
        """What a frame that is not routine means for the session (ack, replay end, notice)."""
        msg_type = envelope.msg_type
        if msg_type == ACK_TYPE and self.subscribed_at is None:
            await self._on_ack(envelope.success, envelope.details)
        elif msg_type == REPLAY_COMPLETE_TYPE and self.tracker.replay_done:
            await self.log_event("replay-complete")
        elif msg_type == ERROR_NOTICE_TYPE:
            self.last_notice = envelope.details or "(no details)"
            log.warning(
                "error-notice from the server: %s",
                self.last_notice,
                extra={"account": self.account.account_id, "session": self.session_id},
            )

    async def _on_ack(self, success: bool | None, details: str | None) -> None:
        self.attempted.set()
        if success is True:
            self.subscribed_at = trio.current_time()
            self.account.subscribed = True
            await self.log_event("subscribed", details)
            log.info(
                "subscribed", extra={"account": self.account.account_id, "session": self.session_id}
            )
            return
        # success false (or not a boolean: an ambiguous ack is never taken as success)
        self.account.rejected_subscribes += 1
        self.tokens.mark_stale(self.token)
        detail = f"subscribe rejected: {details or '(no details)'}"
        await self.log_event("subscribe-rejected", details)
        log.error(
            "%s", detail, extra={"account": self.account.account_id, "session": self.session_id}
        )
        raise _Ended("rejected", detail)


# Types that need no action beyond being stored (checked first: they are most frames).
_ROUTINE: Final = frozenset(
    {
        "order-update",
        "trade-notice",
        "position-update",
        "buying-power-update",
        "locate-inventory-update",
        "heartbeat",
    }
)
