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
from recorder.config import Secret
from recorder.envelope import ACK_TYPE
from recorder.records import FrameRecord, LogRecord, Record
from recorder.session import SessionSettings, default_connect, run_session
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
    (``opened``), then every hand-off waits until the test opens the gate."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.gate = trio.Event()
        self.waited = trio.Event()  # a hand-off is waiting at the closed gate

    def send_nowait(self, value: Record, /) -> None:
        if not self.gate.is_set():
            raise trio.WouldBlock
        self.records.append(value)

    async def send(self, value: Record, /) -> None:
        if self.records and not self.gate.is_set():
            self.waited.set()
            await self.gate.wait()
        self.records.append(value)


async def test_an_ack_that_waited_for_the_writer_past_the_subscribe_timeout_subscribes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = Simulator(
        SimConfig(accounts=(ACCOUNT,), client_secret=SECRET, rate_per_s=0, heartbeat_s=0)
    )
    sink = GatedSink()
    account = AccountState(ACCOUNT)
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
                    account,
                    settings,
                    tokens,
                    sink,
                    TradingDayCache(ZoneInfo("America/New_York")),
                    connect=default_connect(None),
                    shutdown=shutdown,
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
    acks = [r for r in sink.records if isinstance(r, FrameRecord) and r.msg_type == ACK_TYPE]
    events = [r.event for r in sink.records if isinstance(r, LogRecord)]
    assert len(acks) == 1  # stored once ...
    assert "subscribed" in events  # ... and taken as the ack it is
    closed = [r.detail for r in sink.records if isinstance(r, LogRecord) and r.event == "closed"]
    assert closed
    assert not any("subscribe timeout" in (detail or "") for detail in closed)
