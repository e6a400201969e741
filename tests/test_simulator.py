"""Tests of the Studio look-alike server (recorder.simulator), over real sockets on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given, settings
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)

from recorder.simulator import ActivityFlow, Record, SimConfig, SimEndpoints, Simulator
from recorder.simulator.flow import signed_quantity
from recorder.simulator.ledger import DayLedger
from recorder.simulator.server import run_simulator

ACCOUNT = "100000"
OTHER = "100001"
AUDIENCE = "https://api.clearstreet.io"
# Virtual seconds under autojump_clock; real runs finish in well under a second.
TEST_DEADLINE_S = 600

StartSim = Callable[..., Awaitable[tuple[Simulator, SimEndpoints]]]


@pytest.fixture
def start_sim(nursery: trio.Nursery) -> StartSim:
    """Start a simulator in the test's nursery; frame timestamps follow trio's clock."""

    async def start(**config: Any) -> tuple[Simulator, SimEndpoints]:
        sim = Simulator(SimConfig(**config), wall_clock_ms=lambda: int(trio.current_time() * 1000))
        endpoints: SimEndpoints = await nursery.start(sim.serve)
        return sim, endpoints

    return start


@asynccontextmanager
async def open_ws(url: str) -> AsyncIterator[WebSocketConnection]:
    """Like trio_websocket.open_websocket_url, but the test owns (and always closes) the TCP
    stream: trio-websocket 0.12.2's client never closes its socket when the *server* closes
    the connection, which the warnings-as-errors setting reports as an unclosed socket."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, parts.netloc, parts.path)
            try:
                yield ws
            finally:
                with trio.move_on_after(5):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


def token_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "grant_type": "client_credentials",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "audience": AUDIENCE,
    }
    body.update(overrides)
    return body


async def fetch_token(endpoints: SimEndpoints) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(endpoints.token_url, json=token_body())
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def subscribe_message(token: str, account_id: str = ACCOUNT) -> str:
    return json.dumps(
        {
            "authorization": token,
            "payload": {"type": "subscribe-activity", "account_id": account_id},
        }
    )


def ptype(frame: str | bytes) -> str:
    value = json.loads(frame)["payload"]["type"]
    assert isinstance(value, str)
    return value


def seq(frame: str) -> int:
    value = json.loads(frame)["sequence"]
    assert isinstance(value, int)
    return value


async def next_frame(ws: WebSocketConnection, *, skip_heartbeats: bool = True) -> str:
    while True:
        message = await ws.get_message()
        assert isinstance(message, str)
        if not (skip_heartbeats and ptype(message) == "heartbeat"):
            return message


async def subscribe(ws: WebSocketConnection, token: str, account_id: str = ACCOUNT) -> str:
    """Send a subscribe and return the ack."""
    await ws.send_message(subscribe_message(token, account_id))
    ack = await next_frame(ws)
    assert ptype(ack) == "subscribe-activity-ack"
    return ack


async def read_replay(ws: WebSocketConnection) -> list[str]:
    """Collect the replayed frames up to (not including) replay-complete."""
    replay = []
    while ptype(frame := await next_frame(ws)) != "replay-complete":
        replay.append(frame)
    assert "sequence" not in json.loads(frame)
    return replay


async def drain(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def assert_closed(ws: WebSocketConnection, code: int, *, skip_frames: bool = False) -> None:
    """The connection is closed by the server with `code`: at once, or after any frames if
    `skip_frames` is set (for drops that race live frames)."""
    with pytest.raises(ConnectionClosed) as info:
        await (drain(ws) if skip_frames else ws.get_message())
    assert info.value.reason is not None
    assert info.value.reason.code == code


# -- token endpoint ----------------------------------------------------------------------


async def test_token_success(start_sim: StartSim) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim(token_lifetime_s=3600.0)
        async with httpx.AsyncClient() as client:
            first = await client.post(endpoints.token_url, json=token_body())
            second = await client.post(endpoints.token_url, json=token_body())
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].count(".") == 2  # JWT-looking
    assert second.json()["access_token"] != body["access_token"]
    assert sim.tokens_issued == 2


@pytest.mark.parametrize(
    "overrides", [{"client_secret": "wrong"}, {"client_id": "someone-else"}], ids=["secret", "id"]
)
async def test_token_wrong_credentials_is_401(
    start_sim: StartSim, overrides: dict[str, str]
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        async with httpx.AsyncClient() as client:
            response = await client.post(endpoints.token_url, json=token_body(**overrides))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()
    assert sim.tokens_issued == 0
    assert sim.token_requests == 1


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({k: v for k, v in token_body().items() if k != "audience"}).encode(),
        json.dumps(token_body(grant_type="password")).encode(),
        json.dumps(token_body(client_secret=42)).encode(),
    ],
    ids=["not-json", "not-object", "missing-field", "wrong-grant", "non-string"],
)
async def test_token_malformed_body_is_400(start_sim: StartSim, content: bytes) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                endpoints.token_url, content=content, headers={"content-type": "application/json"}
            )
    assert response.status_code == 400
    assert "error" in response.json()
    assert sim.tokens_issued == 0


async def test_token_wrong_method_path_and_audience(start_sim: StartSim) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        async with httpx.AsyncClient() as client:
            get = await client.get(endpoints.token_url)
            elsewhere = await client.post(
                endpoints.token_url.replace("/oauth/token", "/token"), json=token_body()
            )
            audience = await client.post(endpoints.token_url, json=token_body(audience="x"))
    assert (get.status_code, elsewhere.status_code, audience.status_code) == (405, 404, 403)
    assert sim.tokens_issued == 0


# -- subscribe, replay, live -------------------------------------------------------------


async def test_subscribe_ack_replay_then_live(start_sim: StartSim, autojump_clock: Any) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim(rate_per_s=20.0)
        token = await fetch_token(endpoints)
        await trio.sleep(2)  # about 40 frames happen before anyone listens
        async with open_ws(endpoints.ws_url) as ws:
            ack = await subscribe(ws, token)
            replay = []
            while ptype(complete := await next_frame(ws)) != "replay-complete":
                replay.append(complete)
            live = [await next_frame(ws) for _ in range(10)]
    received = [ack, *replay, complete, *live]
    ack_obj = json.loads(ack)
    assert "sequence" not in ack_obj
    assert ack_obj["payload"]["success"] is True
    assert ack_obj["payload"]["account_id"] == ACCOUNT
    day = sim.day_log(ACCOUNT)
    assert len(replay) >= 39
    assert replay == day[: len(replay)]
    assert [seq(f) for f in replay] == list(range(1, len(replay) + 1))
    # Replayed frames keep their original timestamps (older than the ack).
    assert json.loads(replay[0])["timestamp"] < ack_obj["timestamp"]
    assert [seq(f) for f in live] == list(range(len(replay) + 1, len(replay) + 11))
    assert live == day[len(replay) : len(replay) + 10]
    assert "sequence" not in json.loads(complete)
    # Heartbeats were skipped above, and the run is too short (0.5 s) to have sent one.
    assert sim.sent_log(ACCOUNT)[: len(received)] == received
    assert sim.subscribes[0] == (ACCOUNT, token, True)


async def test_reconnect_replays_frames_first_seen_live(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim(rate_per_s=20.0)
        token = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            await read_replay(ws)
            live = [await next_frame(ws) for _ in range(15)]
        await trio.sleep(1)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            replay = await read_replay(ws)
    assert set(live) <= set(replay)
    assert replay[: len(replay)] == sim.day_log(ACCOUNT)[: len(replay)]
    assert len(replay) >= seq(live[-1]) + 19


async def test_every_connection_of_an_account_gets_every_live_frame(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        sim.pause_live(True)
        token = await fetch_token(endpoints)
        async with (
            open_ws(endpoints.ws_url) as first,
            open_ws(endpoints.ws_url) as second,
        ):
            for ws in (first, second):
                await subscribe(ws, token)
                await read_replay(ws)
            sim.emit(ACCOUNT, 6)
            got_first = [await next_frame(first) for _ in range(6)]
            got_second = [await next_frame(second) for _ in range(6)]
    assert got_first == got_second == sim.day_log(ACCOUNT)[-6:]


async def test_day_sequences_are_per_account_from_one(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, _ = await start_sim(rate_per_s=50.0)
        await trio.sleep(3)
    for account in (ACCOUNT, OTHER):
        day = sim.day_log(account)
        assert len(day) >= 149
        assert [seq(f) for f in day] == list(range(1, len(day) + 1))
        assert {json.loads(f)["payload"]["data"]["account_id"] for f in day} == {account}
    sim.new_day(ACCOUNT)
    sim.emit(ACCOUNT)
    assert [seq(f) for f in sim.day_log(ACCOUNT)] == [1]


# -- gaps --------------------------------------------------------------------------------


@pytest.mark.parametrize("permanent", [True, False], ids=["permanent", "healable"])
async def test_skipped_sequences(start_sim: StartSim, autojump_clock: Any, permanent: bool) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        sim.pause_live(True)
        sim.emit(ACCOUNT, 10)
        token = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            assert [seq(f) for f in await read_replay(ws)] == list(range(1, 11))
            sim.skip_sequences(ACCOUNT, 2, permanent=permanent)
            sim.emit(ACCOUNT, 5)
            live = [seq(await next_frame(ws)) for _ in range(3)]
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            replayed = [seq(f) for f in await read_replay(ws)]
    assert live == [13, 14, 15]
    if permanent:
        assert replayed == [*range(1, 11), 13, 14, 15]
    else:
        assert replayed == list(range(1, 16))
    assert [seq(f) for f in sim.day_log(ACCOUNT)] == replayed


# -- connection lifecycle ----------------------------------------------------------------


async def test_idle_connection_gets_error_notice_and_close(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        _, endpoints = await start_sim()
        async with open_ws(endpoints.ws_url) as ws:
            opened = trio.current_time()
            notice = await ws.get_message()
            elapsed = trio.current_time() - opened
            await assert_closed(ws, 1000)
    assert ptype(notice) == "error-notice"
    assert "sequence" not in json.loads(notice)
    assert "Idled too long" in json.loads(notice)["payload"]["details"]
    assert 30 <= elapsed < 31


async def test_token_lifetime_ends_subscription(start_sim: StartSim, autojump_clock: Any) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim(token_lifetime_s=62.0, rate_per_s=0.0)
        issued = trio.current_time()
        token = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            await read_replay(ws)
            heartbeat_times = []
            while ptype(frame := await next_frame(ws, skip_heartbeats=False)) == "heartbeat":
                heartbeat_times.append(trio.current_time())
            expired_after = trio.current_time() - issued
            await assert_closed(ws, 1000)
        async with open_ws(endpoints.ws_url) as ws:
            late = json.loads(await subscribe(ws, token))
    assert ptype(frame) == "error-notice"
    assert "Auth expired" in json.loads(frame)["payload"]["details"]
    assert 62 <= expired_after < 63
    assert len(heartbeat_times) == 12  # at 5, 10, ... 60 s
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(heartbeat_times)}
    assert gaps == {5.0}
    assert late["payload"]["success"] is False
    assert [s.accepted for s in sim.subscribes] == [True, False]


async def test_expire_tokens_closes_connections_and_voids_tokens(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        old = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, old)
            await read_replay(ws)
            sim.pause_live(True)
            sim.expire_tokens()
            notice = await next_frame(ws)
            await assert_closed(ws, 1000)
        async with open_ws(endpoints.ws_url) as ws:
            rejected = json.loads(await subscribe(ws, old))
            accepted = json.loads(await subscribe(ws, await fetch_token(endpoints)))
    assert ptype(notice) == "error-notice"
    assert rejected["payload"]["success"] is False
    assert accepted["payload"]["success"] is True
    assert sim.tokens_issued == 2


async def test_reject_next_subscribes(start_sim: StartSim, autojump_clock: Any) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        token = await fetch_token(endpoints)
        sim.reject_next_subscribes(2)
        async with open_ws(endpoints.ws_url) as ws:
            acks = [json.loads(await subscribe(ws, token)) for _ in range(3)]
            replay = await read_replay(ws)
    assert [a["payload"]["success"] for a in acks] == [False, False, True]
    assert [s.accepted for s in sim.subscribes] == [False, False, True]
    assert replay == sim.day_log(ACCOUNT)[: len(replay)]


@pytest.mark.parametrize(
    ("account", "use_valid_token"), [(ACCOUNT, False), ("999999", True)], ids=["token", "account"]
)
async def test_failed_subscribe_is_ack_false(
    start_sim: StartSim, autojump_clock: Any, account: str, use_valid_token: bool
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        token = await fetch_token(endpoints) if use_valid_token else "not-a-token"
        async with open_ws(endpoints.ws_url) as ws:
            ack = json.loads(await subscribe(ws, token, account))
            # No replay follows a failed subscribe: the next frame is the idle notice.
            after = await next_frame(ws)
    assert ack["payload"]["success"] is False
    assert ptype(after) == "error-notice"
    assert sim.subscribes == [(account, token, False)]


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"authorization": "t", "payload": {"type": "subscribe-activity"}}),
        json.dumps({"authorization": "t", "payload": {"type": "subscribe", "account_id": "1"}}),
        json.dumps({"payload": {"type": "subscribe-activity", "account_id": ACCOUNT}}),
        b'{"authorization": "t"}',
    ],
    ids=["not-json", "no-account", "wrong-type", "no-token", "binary"],
)
async def test_malformed_subscribe_gets_error_notice_not_ack(
    start_sim: StartSim, autojump_clock: Any, message: str | bytes
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        token = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await ws.send_message(message)
            notice = await next_frame(ws)
            with trio.move_on_after(10):
                extra = await ws.get_message()
                pytest.fail(f"unexpected frame after the error notice: {extra!r}")
            ack = json.loads(await subscribe(ws, token))  # the connection is still usable
    assert ptype(notice) == "error-notice"
    assert ack["payload"]["success"] is True
    assert sim.subscribes == [(ACCOUNT, token, True)]


async def test_acks_disabled_means_silence_then_idle_close(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        token = await fetch_token(endpoints)
        sim.set_ack(False)
        async with open_ws(endpoints.ws_url) as ws:
            await ws.send_message(subscribe_message(token))
            first = await ws.get_message()
            await assert_closed(ws, 1000)
    assert ptype(first) == "error-notice"
    assert sim.subscribes == [(ACCOUNT, token, False)]


async def test_close_after_ack(start_sim: StartSim, autojump_clock: Any) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        await trio.sleep(1)
        token = await fetch_token(endpoints)
        sim.close_after_ack(True)
        async with open_ws(endpoints.ws_url) as ws:
            ack = json.loads(await subscribe(ws, token))
            await assert_closed(ws, 1000)  # no replay before the close
    assert ack["payload"]["success"] is True


@pytest.mark.parametrize(("clean", "code"), [(True, 1001), (False, 1006)], ids=["clean", "abort"])
async def test_drop_connections(
    start_sim: StartSim, autojump_clock: Any, clean: bool, code: int
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        token = await fetch_token(endpoints)
        async with (
            open_ws(endpoints.ws_url) as mine,
            open_ws(endpoints.ws_url) as other,
        ):
            await subscribe(mine, token)
            await subscribe(other, token, OTHER)
            await read_replay(mine)
            sim.drop_connections(ACCOUNT, clean=clean)
            await assert_closed(mine, code, skip_frames=True)
            await read_replay(other)
            await next_frame(other)  # the other account's connection is untouched


async def test_stall_sends_nothing_for_its_duration(
    start_sim: StartSim, autojump_clock: Any
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        sim.pause_live(True)
        token = await fetch_token(endpoints)
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            await read_replay(ws)
            # Heartbeats are due 5, 10, ... s after the subscribe, i.e. after this instant.
            stalled_at = trio.current_time()
            sim.stall(ACCOUNT, 22)
            sim.emit(ACCOUNT, 2)
            first = await ws.get_message()
            first_after = trio.current_time() - stalled_at
            second = await ws.get_message()
            heartbeat = await ws.get_message()  # the connection lives on after the stall
            heartbeat_after = trio.current_time() - stalled_at
    # Without the stall, the emitted frames would arrive at once and a heartbeat at 5 s.
    assert first_after >= 22
    assert [first, second] == sim.day_log(ACCOUNT)[-2:]
    # Heartbeats due during the stall are not sent late: the next one is the one due at 25 s.
    assert ptype(heartbeat) == "heartbeat"
    assert heartbeat_after > 24


async def test_send_raw_text_and_binary(start_sim: StartSim, autojump_clock: Any) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        sim, endpoints = await start_sim()
        sim.pause_live(True)
        token = await fetch_token(endpoints)
        huge = json.dumps({"payload": {"type": "mystery", "blob": "x" * 500_000}})
        async with open_ws(endpoints.ws_url) as ws:
            await subscribe(ws, token)
            await read_replay(ws)
            for frame in ("{garbage", b"\x00\xffbinary", huge):
                sim.send_raw(ACCOUNT, frame)
            got = [await ws.get_message() for _ in range(3)]
    assert got == ["{garbage", b"\x00\xffbinary", huge]
    assert sim.sent_log(ACCOUNT)[-2:] == ["{garbage", huge]  # text frames only


async def test_wrong_path_is_rejected(start_sim: StartSim) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        _, endpoints = await start_sim()
        # trio-websocket raises the rejection from its reader task, so it arrives in a group.
        with pytest.RaisesGroup(ConnectionRejected) as info:
            async with open_ws(endpoints.ws_url.replace("/studio/v2/ws", "/ws")):
                pass
    rejected = info.value.exceptions[0]
    assert isinstance(rejected, ConnectionRejected)
    assert rejected.status_code == 404


async def test_run_simulator_prints_endpoints(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        nursery.start_soon(run_simulator, "127.0.0.1", 0, (ACCOUNT,), 5.0)
        out = ""
        while out.count("\n") < 4:
            await trio.sleep(0.01)
            out += capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["websocket"].startswith("ws://127.0.0.1:")
    assert lines["websocket"].endswith("/studio/v2/ws")
    assert lines["token"].startswith("http://127.0.0.1:")
    assert (lines["client_id"], lines["client_secret"]) == ("sim-client", "sim-secret")
    async with httpx.AsyncClient() as client:
        response = await client.post(lines["token"], json=token_body())
    assert response.status_code == 200


# -- the activity flow (pure) ------------------------------------------------------------


def records(seed: int, count: int, account_id: str = ACCOUNT) -> list[Record]:
    flow = ActivityFlow(account_id, seed=seed)
    return [flow.next_record(1_700_000_000_000 + i) for i in range(count)]


def assert_decimal_string(value: object) -> Decimal:
    assert isinstance(value, str)
    parsed = Decimal(value)
    assert str(parsed) == value
    assert "E" not in value.upper()
    return parsed


def assert_clean_number(value: object) -> None:
    assert isinstance(value, float | int)
    assert not isinstance(value, bool)
    # Built from a 4-place decimal, so its JSON text has no float artefacts.
    assert -Decimal(repr(value)).as_tuple().exponent <= 4  # type: ignore[operator]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), count=st.integers(10, 600))
def test_flow_invariants(seed: int, count: int) -> None:
    flow = ActivityFlow(ACCOUNT, seed=seed)
    positions: dict[str, Decimal] = {}
    fills_by_order: dict[str, Decimal] = {}
    last_order: dict[str, dict[str, Any]] = {}
    last_position: dict[str, Decimal] = {}
    trade_ids: set[str] = set()
    pending_fill: dict[str, Any] | None = None
    seen = 0
    # Stop after `count` records, but never inside a fill's trade/order/position triple.
    while seen < count or pending_fill is not None:
        record = flow.next_record(1_700_000_000_000 + seen)
        seen += 1
        data = record.data
        if record.type == "trade-notice":
            assert pending_fill is None
            quantity = assert_decimal_string(data["quantity"])
            assert_decimal_string(data["price"])
            assert quantity > 0
            symbol = str(data["symbol"])
            previous = positions.get(symbol, Decimal(0))
            positions[symbol] = previous + signed_quantity(str(data["side"]), quantity)
            assert assert_decimal_string(data["running_position"]) == positions[symbol]
            order_id = str(data["order_id"])
            fills_by_order[order_id] = fills_by_order.get(order_id, Decimal(0)) + quantity
            assert data["trade_id"] not in trade_ids
            trade_ids.add(str(data["trade_id"]))
            pending_fill = data
        elif record.type == "order-update":
            order_id = str(data["order_id"])
            previous_update = last_order.get(order_id)
            assert data["version"] == (previous_update["version"] + 1 if previous_update else 1)
            filled = assert_decimal_string(data["filled_quantity"])
            assert filled == fills_by_order.get(order_id, Decimal(0))
            assert filled <= assert_decimal_string(data["quantity"])
            running = assert_decimal_string(data["running_position"])
            assert running == positions.get(str(data["symbol"]), Decimal(0))
            assert (data["status"] == "filled") == (filled == Decimal(str(data["quantity"])))
            if filled:
                assert_clean_number(data["average_price"])
            if pending_fill is not None:
                assert pending_fill["order_id"] == order_id  # the fill's own order update
                assert data["status"] in ("partially-filled", "filled")
            last_order[order_id] = data
        elif record.type == "position-update":
            assert pending_fill is not None  # only right after a fill
            assert data["symbol"] == pending_fill["symbol"]
            last_position[str(data["symbol"])] = assert_decimal_string(data["quantity"])
            assert_clean_number(data["average_cost"])
            pending_fill = None
        else:
            assert record.type in ("buying-power-update", "locate-inventory-update")
    assert last_position == positions


def test_flow_covers_every_kind_of_step() -> None:
    seen = records(seed=1, count=2000)
    kinds = {r.type for r in seen}
    assert kinds == {
        "order-update",
        "trade-notice",
        "position-update",
        "buying-power-update",
        "locate-inventory-update",
    }
    statuses = {r.data["status"] for r in seen if r.type == "order-update"}
    assert statuses == {"new", "partially-filled", "filled", "canceled"}
    sides = {r.data["side"] for r in seen if r.type == "trade-notice"}
    assert sides == {"buy", "sell", "sell-short"}
    quantities = [Decimal(str(r.data["quantity"])) for r in seen if r.type == "position-update"]
    assert any(q < 0 for q in quantities)
    assert any(q == 0 for q in quantities)


def test_flow_is_reproducible_per_seed_and_account() -> None:
    assert records(seed=7, count=200) == records(seed=7, count=200)
    assert records(seed=7, count=200) != records(seed=8, count=200)
    assert [r.data.get("order_id") for r in records(7, 50)] != [
        r.data.get("order_id") for r in records(7, 50, OTHER)
    ]


def test_ledger_frames_and_skips() -> None:
    ledger = DayLedger()
    record = Record("buying-power-update", {"buying_power": "1.00"})
    assert ledger.append(record, 5) == (
        '{"timestamp":5,"sequence":1,"payload":{"type":"buying-power-update",'
        '"data":{"buying_power":"1.00"}}}'
    )
    ledger.skip(1, permanent=True)
    ledger.skip(1, permanent=False)
    assert ledger.append(record, 6) is None
    assert ledger.append(record, 7) is None
    assert ledger.append(record, 8) is not None
    assert [seq(f) for f in ledger.frames] == [1, 3, 4]
