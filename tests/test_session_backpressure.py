"""A frame whose hand-off waits for the writer is still acted upon whole.

When the store is slow or down, the writer's queue is full and handing a frame over
waits. A liveness or subscribe deadline that passes meanwhile does not make the session
ignore the frame: an ack that arrived in time but waited for the writer past the subscribe
timeout still subscribes the session, instead of being stored and then ignored (which ended the
session as a subscribe timeout and reconnected for as long as the store was slow).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from recorder.auth import TokenSource
from recorder.backoff import Backoff
from recorder.connection import default_connect
from recorder.context import AccountContext, SessionSettings
from recorder.credentials import Secret
from recorder.envelope import ACK_TYPE
from recorder.records import FrameRecord, LogRecord, Record
from recorder.session import run_session
from recorder.simulator import SimConfig, Simulator
from recorder.simulator.config import DEFAULT_AUDIENCE
from recorder.state import AccountState
from recorder.tradingday import TradingDayCache
from tests.support.config import SECRET

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "100000"
SUBSCRIBE_TIMEOUT_S = 10.0


class GatedSink:
    """The writer's channel as a full queue: it takes the session's first record
    (``opened``), then every hand-off waits until the test opens the gate. Beside each
    record it keeps the account's ``last_frame_ns`` at the moment the record arrived."""

    def __init__(self, account: AccountState) -> None:
        self.account = account
        self.records: list[Record] = []
        self.last_frame_ns_seen: list[int | None] = []
        self.gate = trio.Event()
        self.waited = trio.Event()  # a hand-off is waiting at the closed gate

    def send_nowait(self, value: Record, /) -> None:
        if not self.gate.is_set():
            raise trio.WouldBlock
        self._take(value)

    async def send(self, value: Record, /) -> None:
        if self.records and not self.gate.is_set():
            self.waited.set()
            await self.gate.wait()
        self._take(value)

    def _take(self, value: Record) -> None:
        self.records.append(value)
        self.last_frame_ns_seen.append(self.account.last_frame_ns)


async def record_with_the_ack_stuck_past_the_subscribe_timeout(sink: GatedSink) -> None:
    """Run a session whose ack waits for the writer until well past the subscribe
    timeout, then let it through, see the session subscribe, and shut it down."""
    sim = Simulator(
        SimConfig(accounts=(ACCOUNT,), client_secret=SECRET, rate_per_s=0, heartbeat_s=0)
    )
    account = sink.account
    shutdown = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            tokens = TokenSource(
                endpoints.token_url, "sim-client", Secret(SECRET), DEFAULT_AUDIENCE
            )
            settings = SessionSettings(endpoints.ws_url, SUBSCRIBE_TIMEOUT_S, 60.0)

            async def session() -> None:
                await run_session(
                    AccountContext(
                        account=account,
                        session=settings,
                        tokens=tokens,
                        sink=sink,
                        trading_day=TradingDayCache(ZoneInfo("America/New_York")),
                        connect=default_connect(None),
                        shutdown=shutdown,
                        backoff=Backoff(1.0, 60.0),
                    )
                )

            nursery.start_soon(session)
            await sink.waited.wait()  # the ack is stuck behind the full queue ...
            await trio.sleep(3 * SUBSCRIBE_TIMEOUT_S)  # ... well past the subscribe timeout
            sink.gate.set()
            while not account.subscribed:
                await trio.sleep(0.1)
            await trio.sleep(1)
            shutdown.set()
            nursery.cancel_scope.cancel()


async def test_an_ack_that_waited_for_the_writer_past_the_subscribe_timeout_subscribes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = GatedSink(AccountState(ACCOUNT))
    await record_with_the_ack_stuck_past_the_subscribe_timeout(sink)
    acks = [r for r in sink.records if isinstance(r, FrameRecord) and r.msg_type == ACK_TYPE]
    events = [r.event for r in sink.records if isinstance(r, LogRecord)]
    assert len(acks) == 1  # stored once ...
    assert "subscribed" in events  # ... and taken as the ack it is
    closed = [r.detail for r in sink.records if isinstance(r, LogRecord) and r.event == "closed"]
    assert closed
    assert not any("subscribe timeout" in (detail or "") for detail in closed)


async def test_a_frame_handed_over_late_counts_with_its_receipt_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The ack's hand-off is cut short by the subscribe deadline and finished late; the
    # ``subscribed`` row it causes comes next, before any later frame is read. By then the
    # account's last frame is the ack as it was received (stamped at receipt, as stored),
    # not the moment it was finally handed over.
    sink = GatedSink(AccountState(ACCOUNT))
    await record_with_the_ack_stuck_past_the_subscribe_timeout(sink)
    (ack_at,) = [
        i
        for i, r in enumerate(sink.records)
        if isinstance(r, FrameRecord) and r.msg_type == ACK_TYPE
    ]
    ack, subscribed = sink.records[ack_at], sink.records[ack_at + 1]
    assert isinstance(ack, FrameRecord)
    assert isinstance(subscribed, LogRecord)
    assert subscribed.event == "subscribed"
    assert sink.last_frame_ns_seen[ack_at + 1] == ack.received_at_ns
