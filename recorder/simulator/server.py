"""A local look-alike of Clear Street Studio's Activity channel, for tests and the demo.

`Simulator.serve` runs two servers until cancelled: the WebSocket endpoint
(`ws://HOST:PORT/studio/v2/ws`, trio-websocket) and the OAuth2 token endpoint
(`http://HOST:PORT2/oauth/token`, see `tokens.py`). It follows the protocol
(README): subscribe within
`subscribe_timeout_s` or get an idle error-notice and a 1000 close; a subscribe is acked, then
the account's whole day is replayed (original frames, verbatim), then `replay-complete`, then
live frames and heartbeats until the token expires.

Every wait goes through trio, so `autojump_clock` tests run instantly; only frame timestamps
come from the (injectable) wall clock. Fault-injection methods are synchronous and may be
called from a test while the simulator serves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from time import time_ns

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, wrap_server_stream

from recorder.instants import NS_PER_MS
from recorder.simulator import frames
from recorder.simulator.config import (
    DEFAULT_CONFIG,
    WS_PATH,
    SimConfig,
    SimEndpoints,
    SubscribeSeen,
)
from recorder.simulator.flow import ActivityFlow
from recorder.simulator.ledger import DayLedger
from recorder.simulator.session import CLOSE_NORMAL, Session
from recorder.simulator.tokens import TOKEN_PATH, TokenIssuer, serve_token_endpoint

__all__ = ["AUTH_EXPIRED_DETAILS", "IDLE_DETAILS", "Simulator", "run_simulator"]

IDLE_DETAILS = "Idled too long; please reconnect"
AUTH_EXPIRED_DETAILS = "Auth expired; please reconnect"
_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(eq=False)
class _Account:
    account_id: str
    flow: ActivityFlow
    ledger: DayLedger = field(default_factory=DayLedger)
    subscribers: set[Session] = field(default_factory=set)
    stalled_until: float = -math.inf


def _default_wall_clock_ms() -> int:
    return time_ns() // NS_PER_MS


def _url_host(sockname: str) -> str:
    # A wildcard bind is reachable through loopback; IPv6 literals need brackets in a URL.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(sockname, sockname)  # noqa: S104
    return f"[{host}]" if ":" in host else host


async def _open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # Port 0 on a name with several addresses binds several *different* ports; keep one.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    return listeners


def _endpoint(listeners: list[trio.SocketListener], scheme: str, path: str) -> str:
    address = listeners[0].socket.getsockname()
    return f"{scheme}://{_url_host(address[0])}:{address[1]}{path}"


class Simulator:
    """In-memory Studio Activity server: accounts, their day logs, tokens and fault switches."""

    def __init__(
        self,
        config: SimConfig = DEFAULT_CONFIG,
        *,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        """Prepare accounts and flows; nothing listens until `serve` runs."""
        self.config = config
        self._now_ms = wall_clock_ms or _default_wall_clock_ms
        self._tokens = TokenIssuer(
            client_id=config.client_id,
            client_secret=config.client_secret,
            audience=config.audience,
            lifetime_s=config.token_lifetime_s,
        )
        self._accounts = {
            account_id: _Account(account_id, ActivityFlow(account_id, seed=config.seed))
            for account_id in config.accounts
        }
        self._sessions: set[Session] = set()
        self._sent: dict[str, list[str]] = {}
        self.subscribes: list[SubscribeSeen] = []
        self._rejects_pending = 0
        self._altered_replays: dict[str, int] = {}
        self._ack_enabled = True
        self._close_after_ack = False
        self._live_paused = False

    # -- observation ---------------------------------------------------------------------

    @property
    def tokens_issued(self) -> int:
        """Successful token responses so far."""
        return self._tokens.issued

    @property
    def token_requests(self) -> int:
        """Token requests received so far, successful or not."""
        return self._tokens.requests

    def sent_log(self, account_id: str) -> list[str]:
        """Every text frame sent to any connection of the account, exactly as sent, in order."""
        return list(self._sent.get(account_id, ()))

    def day_log(self, account_id: str) -> list[str]:
        """The account's sequenced frames of the day: exactly what a replay sends now."""
        return self._account(account_id).ledger.frames

    # -- fault injection -----------------------------------------------------------------

    def drop_connections(self, account_id: str | None = None, *, clean: bool = True) -> None:
        """Drop the account's connections (all connections if None), now.

        clean=True sends a close frame with code 1001; clean=False closes the TCP stream with
        no close frame at all (the client sees an abnormal closure, 1006).
        """
        for session in list(self._sessions):
            if account_id is None or session.account_id == account_id:
                session.drop(clean=clean)

    def skip_sequences(self, account_id: str, count: int = 1, *, permanent: bool) -> None:
        """Do not send the next `count` sequence numbers live.

        permanent=True: those frames never exist (a hole in replays too); permanent=False:
        they are in the day log, so the next replay heals the gap.
        """
        self._account(account_id).ledger.skip(count, permanent=permanent)

    def alter_next_replay(self, account_id: str, index: int = 0) -> None:
        """In the account's next replay, send its ``index``-th frame of the day with a changed
        payload (same sequence): a replay that disagrees with what was sent live."""
        self._altered_replays[account_id] = index

    def stall(self, account_id: str, seconds: float) -> None:
        """Send nothing (no heartbeats, no live frames) to the account for `seconds`; TCP stays
        open. Frames produced meanwhile are delivered after the stall; heartbeats are not."""
        account = self._account(account_id)
        account.stalled_until = max(account.stalled_until, trio.current_time() + seconds)
        for session in account.subscribers:
            session.stall_until(account.stalled_until)

    def send_raw(self, account_id: str, frame: str | bytes) -> None:
        """Send this exact text (str) or binary (bytes) frame to the account's connections."""
        for session in self._account(account_id).subscribers:
            session.enqueue(frame, account_id)

    def send_invalid_utf8(self, account_id: str, payload: bytes = b'{"bad":"\xff\xfe"}') -> None:
        """Send a *text* frame whose payload is not valid UTF-8 to the account's connections
        (a protocol violation: the client's WebSocket layer must refuse it, close 1007)."""
        for session in self._account(account_id).subscribers:
            session.enqueue_raw_text(payload)

    def expire_tokens(self) -> None:
        """Expire every token issued so far; their connections get the auth-expired notice."""
        self._tokens.expire_all(trio.current_time())

    def reject_next_subscribes(self, count: int) -> None:
        """Answer the next `count` well-formed subscribes with `success: false`."""
        self._rejects_pending = count

    def set_ack(self, enabled: bool) -> None:
        """False: ignore subscribes silently (no ack; the idle timeout then fires)."""
        self._ack_enabled = enabled

    def close_after_ack(self, enabled: bool) -> None:
        """True: close (1000) right after every ack, before any replay."""
        self._close_after_ack = enabled

    def pause_live(self, paused: bool) -> None:
        """Stop or resume generating live frames for all accounts (heartbeats continue)."""
        self._live_paused = paused

    def new_day(self, account_id: str | None = None) -> None:
        """Start a new trading day: empty day log, sequences restart at 1 (positions persist)."""
        for account in self._accounts.values():
            if account_id is None or account.account_id == account_id:
                account.ledger.new_day()

    def emit(self, account_id: str, count: int = 1) -> None:
        """Generate `count` live frames for the account now (even while live is paused)."""
        account = self._account(account_id)
        for _ in range(count):
            self._emit(account)

    # -- serving -------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_port: int = 0,
        *,
        task_status: trio.TaskStatus[SimEndpoints] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the WebSocket and token endpoints until cancelled.

        Reports `SimEndpoints` through `task_status` once both are listening. Raises OSError if
        a port cannot be bound.
        """
        ws_listeners = await _open_listeners(host, port)
        try:
            token_listeners = await _open_listeners(host, token_port)
        except BaseException:
            for listener in ws_listeners:
                await trio.aclose_forcefully(listener)
            raise
        endpoints = SimEndpoints(
            ws_url=_endpoint(ws_listeners, "ws", WS_PATH),
            token_url=_endpoint(token_listeners, "http", TOKEN_PATH),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle_tcp, ws_listeners)
            await nursery.start(
                partial(
                    serve_token_endpoint,
                    self._tokens,
                    token_listeners,
                    wall_clock_s=lambda: self._now_ms() / 1000,
                )
            )
            for account in self._accounts.values():
                nursery.start_soon(self._generate, account)
            task_status.started(endpoints)

    async def _generate(self, account: _Account) -> None:
        if self.config.rate_per_s <= 0:
            return
        interval_s = 1 / self.config.rate_per_s
        # Absolute ticks, so the rate does not drift with processing time.
        next_at = trio.current_time()
        while True:
            next_at += interval_s
            await trio.sleep_until(next_at)
            if not self._live_paused:
                self._emit(account)

    def _emit(self, account: _Account) -> None:
        now_ms = self._now_ms()
        frame = account.ledger.append(account.flow.next_record(now_ms), now_ms)
        if frame is not None:
            for session in account.subscribers:
                session.enqueue(frame, account.account_id)

    def _account(self, account_id: str) -> _Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            known = ", ".join(self._accounts)
            raise ValueError(f"unknown account {account_id!r}; simulated: {known}") from None

    def _log_sent(self, account_id: str, frame: str) -> None:
        self._sent.setdefault(account_id, []).append(frame)

    # -- one connection ------------------------------------------------------------------

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._handle_websocket(nursery, stream)
                finally:
                    nursery.cancel_scope.cancel()  # stops trio-websocket's reader task
        except (ConnectionClosed, trio.BrokenResourceError):
            pass  # the client vanished; nothing to clean up beyond closing the stream
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle_websocket(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        request: WebSocketRequest | None = None
        with trio.move_on_after(_HANDSHAKE_TIMEOUT_S):
            request = await wrap_server_stream(nursery, stream)
        if request is None or request.path.split("?", 1)[0] != WS_PATH:
            if request is not None:
                await request.reject(404, body=b"Not found")
            return
        session = Session(await request.accept(), stream, on_sent=self._log_sent)
        self._sessions.add(session)
        try:
            with session.scope:
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(session.send_loop)
                    tasks.start_soon(self._receive_loop, session, tasks)
                    tasks.start_soon(self._idle_watchdog, session)
        finally:
            self._sessions.discard(session)
            if session.account_id is not None:
                self._accounts[session.account_id].subscribers.discard(session)
            await session.finish()

    async def _receive_loop(self, session: Session, tasks: trio.Nursery) -> None:
        while True:
            try:
                message = await session.ws.get_message()
            except ConnectionClosed:
                session.scope.cancel()
                return
            self._on_client_message(session, message, tasks)

    async def _idle_watchdog(self, session: Session) -> None:
        with trio.move_on_after(self.config.subscribe_timeout_s):
            await session.subscribed.wait()
            return
        session.enqueue(frames.error_notice(self._now_ms(), IDLE_DETAILS), None)
        session.close_after_queued(CLOSE_NORMAL)

    async def _heartbeats(self, session: Session, account_id: str) -> None:
        if self.config.heartbeat_s <= 0:
            return
        while True:
            await trio.sleep(self.config.heartbeat_s)
            if not session.stalled:  # a stalled server sends nothing at all
                session.enqueue(frames.heartbeat(self._now_ms()), account_id)

    async def _expire_auth(self, session: Session, account_id: str, token: str) -> None:
        await self._tokens.wait_expired(token)
        self._accounts[account_id].subscribers.discard(session)
        session.enqueue(frames.error_notice(self._now_ms(), AUTH_EXPIRED_DETAILS), account_id)
        session.close_after_queued(CLOSE_NORMAL)

    def _on_client_message(
        self, session: Session, message: str | bytes, tasks: trio.Nursery
    ) -> None:
        # Synchronous on purpose: the replay snapshot and the registration for live frames
        # happen with no checkpoint in between, so no frame is lost or sent twice.
        now_ms = self._now_ms()
        if session.account_id is not None:
            # The project uses one account per connection; upstream allows several, the
            # simulator does not model that.
            details = "Already subscribed on this connection"
            session.enqueue(frames.error_notice(now_ms, details), session.account_id)
            return
        try:
            subscribe = frames.parse_subscribe(message)
        except frames.MalformedSubscribeError as exc:
            session.enqueue(frames.error_notice(now_ms, f"Invalid subscribe request: {exc}"), None)
            return
        account_id = subscribe.account_id
        if not self._ack_enabled:
            self.subscribes.append(SubscribeSeen(account_id, subscribe.token, False))
            return
        account = self._accounts.get(account_id)
        failure: str | None = None
        if self._rejects_pending > 0:
            self._rejects_pending -= 1
            failure = "Subscription rejected; please retry"
        elif not self._tokens.is_valid(subscribe.token, trio.current_time()):
            failure = "Invalid or expired authorization"
        elif account is None:
            failure = f"Unknown account {account_id}"
        self.subscribes.append(SubscribeSeen(account_id, subscribe.token, failure is None))
        details = failure or "Subscribed successfully"
        ack = frames.ack(now_ms, account_id, success=failure is None, details=details)
        session.enqueue(ack, account_id)
        if self._close_after_ack:
            session.subscribed.set()  # the close is queued; the idle timer has no job left
            session.close_after_queued(CLOSE_NORMAL)
            return
        if account is None or failure is not None:
            return
        session.account_id, session.token = account_id, subscribe.token
        session.stall_until(account.stalled_until)
        altered = self._altered_replays.pop(account_id, None)
        for index, frame in enumerate(account.ledger.frames):
            session.enqueue(frames.altered(frame) if index == altered else frame, account_id)
        session.enqueue(frames.replay_complete(now_ms), account_id)
        account.subscribers.add(session)
        session.subscribed.set()
        tasks.start_soon(self._heartbeats, session, account_id)
        tasks.start_soon(self._expire_auth, session, account_id, subscribe.token)


async def run_simulator(
    host: str,
    port: int,
    accounts: tuple[str, ...],
    rate_per_s: float,
    token_port: int = 0,
) -> None:
    """Serve a simulator forever (for the CLI), printing where and how to reach it.

    Prints `websocket: URL`, `token: URL`, `client_id: ...` and `client_secret: ...`, one per
    line, flushed, once both endpoints listen. Raises OSError if a port cannot be bound and
    ValueError for an invalid account list or rate.
    """
    config = SimConfig(accounts=tuple(accounts), rate_per_s=rate_per_s)
    simulator = Simulator(config)
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(partial(simulator.serve, host, port, token_port))
        print(f"websocket: {endpoints.ws_url}", flush=True)
        print(f"token: {endpoints.token_url}", flush=True)
        print(f"client_id: {config.client_id}", flush=True)
        print(f"client_secret: {config.client_secret}", flush=True)
