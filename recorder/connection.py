"""Opening a WebSocket connection to Studio: the client, its limits, and its errors.

:func:`default_connect` is trio-websocket's client with the recorder's limits; a
wss:// connection is preceded by a TLS pre-handshake (:func:`check_tls`) so that a
certificate that does not verify fails at once and says why. The connect function
is a seam (:data:`Connect`): tests pass one to reach an in-process server.
:func:`queued_messages` reads what the connection has already received without a
trip through the scheduler, and :func:`deliver_in_runs` makes the connection queue every
message of a network read before its reader task yields. What happens on an open connection is
:mod:`recorder.session`'s business.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final
from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

#: Largest frame accepted (larger ones close the connection with 1009 and are logged).
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
RECEIVE_BUFFER_BYTES: Final = 64 * 1024
#: Messages trio-websocket may hold for a session that is busy (its default is 1, which
#: wakes the reading task once per message). Its reader queues every message of a network
#: read (up to RECEIVE_BUFFER_BYTES, about 150 frames of a replay burst) before it yields
#: (deliver_in_runs), and the session takes them all when it wakes, so the queue must hold
#: more than one read's frames or the reader stalls in mid-read. (History: with the
#: session's former burst pause, which let runs of 128 frames gather, the recorder read a
#: replay burst at 0.62-0.66 of the drain at 64 and at 0.89-1.09 at 256;
#: tests/benchmarks/README.md.) Memory: at most this many frames.
MESSAGE_QUEUE_SIZE: Final = 256
CONNECT_TIMEOUT_S: Final = 20.0
DISCONNECT_TIMEOUT_S: Final = 3.0

#: Opens a connection to a URL (an async context manager yielding it).
Connect = Callable[[str], AbstractAsyncContextManager[WebSocketConnection]]


class TlsHandshakeError(OSError):
    """The TLS handshake with the WebSocket server failed (e.g. its certificate does not
    verify). An OSError, so the supervisor retries it with backoff like any connect failure."""


async def check_tls(url: str, ssl_context: ssl.SSLContext | None) -> None:
    """Complete a TLS handshake with ``url``'s server on a throwaway connection.

    trio-websocket reports a failed TLS handshake (an untrusted certificate, a wrong
    host name) only as a bare ``ConnectionTimeout`` once its connect timeout has run
    out (python-trio/trio-websocket#199): the reason is lost and the failure is slow.
    This pre-handshake fails at once and says why. Raises TlsHandshakeError (or OSError
    when the server cannot be reached).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl_context or ssl.create_default_context()
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=context, https_compatible=True
            )
            try:
                await stream.do_handshake()
            finally:
                await trio.aclose_forcefully(stream)
    except trio.TooSlowError:
        raise TlsHandshakeError(
            f"TLS handshake with {host}:{port} timed out after {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {cause.verify_message}"
            hint = " (is [studio] ca_file set to the CA that signed it?)"
        else:
            reason = str(cause or exc) or type(exc).__name__
            hint = ""
        raise TlsHandshakeError(
            f"TLS handshake with {host}:{port} failed: {reason}{hint}"
        ) from None


def default_connect(ssl_context: ssl.SSLContext | None) -> Connect:
    """trio-websocket's client, with our limits; ``ssl_context`` for wss:// (None: defaults).

    A wss:// connection is preceded by :func:`check_tls`, so that a certificate that
    does not verify fails fast with its reason instead of hanging until the connect
    timeout.
    """

    @asynccontextmanager
    async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
        ws: WebSocketConnection | None = None
        if url.startswith("wss:"):
            await check_tls(url, ssl_context)
        try:
            async with open_websocket_url(
                url,
                ssl_context=ssl_context if url.startswith("wss:") else None,
                max_message_size=MAX_FRAME_BYTES,
                receive_buffer_size=RECEIVE_BUFFER_BYTES,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                connect_timeout=CONNECT_TIMEOUT_S,
                disconnect_timeout=DISCONNECT_TIMEOUT_S,
            ) as ws:
                yield ws
        finally:
            # trio-websocket 0.12 leaves the client's TCP stream open when the server
            # closes first (its aclose() returns early once a close reason is set), which
            # would leak one socket per reconnect. Close it ourselves.
            stream = getattr(ws, "_stream", None)
            if stream is not None:
                await trio.aclose_forcefully(stream)

    return connect


#: What a :func:`queued_messages` function raises when it has no message to give.
NOTHING_QUEUED: Final = (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError)


def _nothing_queued() -> str | bytes:
    raise trio.WouldBlock


def queued_messages(ws: WebSocketConnection) -> Callable[[], str | bytes]:
    """A function returning the next message trio-websocket already received, without
    waiting: it raises ``trio.WouldBlock`` when there is none (also ``EndOfChannel`` or
    ``ClosedResourceError`` once the connection is closed; ``ws.get_message()`` then
    raises the proper ``ConnectionClosed``).

    ``get_message()`` passes through trio's scheduler once per message even when
    messages are waiting; reading the queue behind it (trio-websocket 0.12's
    ``_recv_channel``, a ``trio.MemoryReceiveChannel``) takes a burst of frames in one
    go. If a future trio-websocket renames it, this falls back to "nothing queued"
    and every message goes through ``get_message()`` as before.
    """
    channel = getattr(ws, "_recv_channel", None)
    receive_nowait = getattr(channel, "receive_nowait", None)
    return receive_nowait if callable(receive_nowait) else _nothing_queued


class _RunSender:
    """trio-websocket's sending end of its message queue, minus the scheduler trip.

    trio-websocket's reader task hands each message over with ``await
    channel.send(message)``, which passes through trio's scheduler once per message
    even when the queue has room: a 64 KiB read of a replay burst (about 150 frames)
    costs about 150 scheduler passes, the session and the reader taking turns. This
    sender puts the message in the queue at once when there is room and waits
    (backpressure, as before) only when the queue is full; the reader task still yields
    at every network read. Everything else (closing, ``async with``, statistics) is the
    channel's own.
    """

    __slots__ = ("_channel",)

    def __init__(self, channel: trio.MemorySendChannel[str | bytes]) -> None:
        self._channel = channel

    async def send(self, message: str | bytes) -> None:
        try:
            self._channel.send_nowait(message)
        except trio.WouldBlock:
            await self._channel.send(message)

    def __getattr__(self, name: str) -> object:
        return getattr(self._channel, name)

    # Looked up on the type, not through __getattr__.
    async def __aenter__(self) -> _RunSender:
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.__aexit__(*exc_info)  # type: ignore[arg-type]


def deliver_in_runs(ws: WebSocketConnection) -> bool:
    """Make ``ws``'s reader queue every message of a network read before it yields.

    Reaches into trio-websocket 0.12's ``_send_channel`` (a ``trio.MemorySendChannel``;
    ``tests/test_session_queue.py`` fails if an upgrade moves it). Returns whether it
    did; when the attribute is missing, nothing changes and messages come one
    scheduler pass at a time, as with stock trio-websocket.
    """
    channel = getattr(ws, "_send_channel", None)
    if isinstance(channel, _RunSender):
        return True
    if not isinstance(channel, trio.MemorySendChannel):
        return False
    ws._send_channel = _RunSender(channel)  # type: ignore[assignment]
    return True


async def next_message(ws: WebSocketConnection, queued: Callable[[], str | bytes]) -> str | bytes:
    """A message already queued (``queued``: :func:`queued_messages`), else the next one
    to arrive (or trio-websocket's ``ConnectionClosed``)."""
    try:
        return queued()
    except NOTHING_QUEUED:
        return await ws.get_message()


def describe_error(exc: BaseException) -> str:
    """A connection error as ``Type: message`` (the cause's message when it has none).

    Unlike :func:`recorder.errors.first_line`, the type is named: for connection
    errors it is often the most telling part (``ConnectionRejected``, ``OSError``).
    """
    text = str(exc)
    cause = exc.__cause__
    if not text and cause is not None:
        text = str(cause)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
