"""The recorder runtime against the real simulator: real sockets, real SQLite, trio time."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import trio
from sqlalchemy import Engine

from recorder.chain import verify_chain
from recorder.simulator import SimConfig
from tests.support.config import SECRET
from tests.support.recording import start
from tests.support.waiting import wait_until

A, B = "100000", "0042"


async def test_records_every_frame_byte_exact_for_several_accounts(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A, B))
        await wait_until(lambda: all(len(run.frames(a)) >= 40 for a in (A, B)))
        await run.stop()
    for account in (A, B):
        sent = run.sim.sent_log(account)
        assert run.raws(account) == sent  # every frame, in order, byte for byte
        rows = run.frames(account)
        assert verify_chain(rows)[0] is None
        assert {r["session_id"] for r in rows} == {rows[0]["session_id"]}
        types = [r["msg_type"] for r in rows]
        assert types[0] == "subscribe-activity-ack"
        assert "replay-complete" in types
        assert run.events_of(account) == ["opened", "subscribed", "replay-complete", "closed"]
        assert run.log(account)[-1]["detail"] == "shutdown"


async def test_reconnects_after_clean_and_unclean_drops_and_flags_replays(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A,))
        await wait_until(lambda: len(run.frames(A)) >= 10)
        run.sim.drop_connections(A, clean=True)
        await wait_until(lambda: run.events_of(A).count("replay-complete") == 2)
        await wait_until(lambda: len(run.frames(A)) >= 60)
        run.sim.drop_connections(A, clean=False)
        await wait_until(lambda: run.events_of(A).count("replay-complete") == 3)
        await run.stop()
    closed = [r["detail"] for r in run.log(A) if r["event"] == "closed"]
    assert closed[0].startswith("server close 1001")
    assert closed[1].startswith("server close 1006")  # no close frame: abnormal closure
    assert closed[2] == "shutdown"
    rows = run.frames(A)
    sessions = list(dict.fromkeys(r["session_id"] for r in rows))
    assert len(sessions) == 3
    for session in sessions[1:]:
        mine = [r for r in rows if r["session_id"] == session]
        boundary = next(i for i, r in enumerate(mine) if r["msg_type"] == "replay-complete")
        before = [r for r in mine[:boundary] if r["sequence"] is not None]
        after = [r for r in mine[boundary:] if r["sequence"] is not None]
        assert before, "the reconnect replayed the day"
        assert all(r["replayed"] for r in before)
        assert not any(r["replayed"] for r in after)
        # The replay starts at the first sequence of the day.
        assert before[0]["sequence"] == 1
    assert not any(r["replayed"] for r in rows if r["sequence"] is None)
    assert verify_chain(rows)[0] is None


async def test_liveness_timeout_closes_and_reconnects(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            liveness_timeout_s=20,
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2),
        )
        await wait_until(lambda: "replay-complete" in run.events_of(A))
        run.sim.stall(A, 25)  # TCP stays open, nothing arrives: no heartbeats either
        await wait_until(lambda: run.events_of(A).count("subscribed") == 2, timeout_s=400)
        await run.stop()
    closed = [r["detail"] for r in run.log(A) if r["event"] == "closed"]
    assert closed[0] == "liveness timeout: no frame for 20 s"


async def test_subscribe_rejected_then_accepted_with_a_fresh_token(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        sim_config = SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2)
        run = await start(nursery, tmp_path, accounts=(A,), sim_config=sim_config, backoff_max_s=30)
        await wait_until(lambda: "subscribed" in run.events_of(A))
        run.sim.reject_next_subscribes(1)
        rejected_at = trio.current_time()
        run.sim.drop_connections(A)
        await wait_until(lambda: run.events_of(A).count("subscribed") == 2, timeout_s=120)
        resubscribed_at = trio.current_time()
        await run.stop()
    assert run.events_of(A)[:5] == ["opened", "subscribed", "replay-complete", "closed", "opened"]
    assert "subscribe-rejected" in run.events_of(A)
    assert run.recorder.state.accounts[A].rejected_subscribes == 1
    # The rejected subscribe waits backoff_max_s before trying again, with a new token.
    assert resubscribed_at - rejected_at >= 30
    accepted = [s for s in run.sim.subscribes if s.accepted]
    rejected = [s for s in run.sim.subscribes if not s.accepted]
    assert rejected[0].token == accepted[0].token
    assert accepted[1].token != rejected[0].token
    assert run.sim.tokens_issued == 2


async def test_auth_expiry_gets_one_new_token_for_all_accounts(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A, B))
        await wait_until(lambda: all("subscribed" in run.events_of(a) for a in (A, B)))
        assert run.sim.tokens_issued == 1  # one token shared by every account
        run.sim.expire_tokens()
        await wait_until(lambda: all(run.events_of(a).count("subscribed") == 2 for a in (A, B)))
        await run.stop()
    assert run.sim.tokens_issued == 2  # one refresh for the stale token, not one per account
    for account in (A, B):
        closed = [r["detail"] for r in run.log(account) if r["event"] == "closed"]
        assert "after error-notice: Auth expired" in closed[0]
        notices = [r for r in run.frames(account) if r["msg_type"] == "error-notice"]
        assert len(notices) == 1


async def test_garbage_unknown_binary_huge_and_non_ascii_frames_are_stored_exactly(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    big = json.dumps(
        {"timestamp": 1, "payload": {"type": "order-update", "data": {"text": "é✓漢" * 70_000}}},
        ensure_ascii=False,
    )
    assert len(big.encode()) > 200_000
    oddities: list[str | bytes] = [
        "not json at all",
        '{"channel":"activity","timestamp":5,"payload":{"type":"brand-new-type","x":1}}',
        b"\x00\x01binary\xff",
        '{"payload":{"type":"heartbeat","nul":"\x00"}}',
        big,
    ]
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0),
        )
        await wait_until(lambda: "replay-complete" in run.events_of(A))
        for frame in oddities:
            run.sim.send_raw(A, frame)
        await wait_until(lambda: len(run.frames(A)) >= 2 + len(oddities))
        await run.stop()
    rows = run.frames(A)
    stored = run.raws(A)
    for frame in oddities:
        assert frame in stored
    by_raw = {raw: row for raw, row in zip(stored, rows, strict=True)}
    assert by_raw["not json at all"]["msg_type"] is None
    assert by_raw[oddities[1]]["msg_type"] == "brand-new-type"
    assert by_raw[b"\x00\x01binary\xff"]["raw_kind"] == "binary"
    assert by_raw[oddities[3]]["raw_kind"] == "text-base64"
    assert by_raw[big]["raw_kind"] == "text"
    assert by_raw[big]["raw"] == big


async def test_secret_and_token_never_reach_logs_or_database(
    tmp_path: Path, recorder_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2),
        )
        await wait_until(lambda: "replay-complete" in run.events_of(A))
        run.sim.reject_next_subscribes(1)
        run.sim.expire_tokens()
        await wait_until(lambda: run.events_of(A).count("subscribed") == 2, timeout_s=200)
        await run.stop()
    tokens = {s.token for s in run.sim.subscribes}
    assert len(tokens) >= 2
    database = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())
    text = caplog.text + repr(run.recorder) + repr(run.recorder.tokens) + repr(run.settings)
    for secret in (SECRET, *tokens):
        assert secret not in text
        assert secret.encode() not in database


async def test_close_right_after_ack_in_a_loop_backs_off_instead_of_storming(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    times: list[float] = []
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0, heartbeat_s=0),
        )
        run.sim.close_after_ack(True)
        started = trio.current_time()
        while trio.current_time() - started < 200:
            if len(run.sim.subscribes) > len(times):
                times.append(trio.current_time())
            await trio.sleep(0.5)
        await run.stop()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Delays 1, 2, 4, 8, 16, 32, 60, 60 … s, each at least half its cap: a dozen attempts
    # in 200 s at the very most, not a storm (times are polled every 0.5 s).
    assert 6 <= len(times) <= 12
    assert gaps[4] >= 7.5
    assert max(gaps) <= 61
    closed = [r["detail"] for r in run.log(A) if r["event"] == "closed"]
    assert all(d.startswith("server close 1000") for d in closed[:-1])


async def test_never_acked_subscribe_times_out_and_retries(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0, heartbeat_s=0),
        )
        run.sim.set_ack(False)
        await wait_until(lambda: run.events_of(A).count("closed") >= 2)
        run.sim.set_ack(True)
        await wait_until(lambda: "subscribed" in run.events_of(A))
        await run.stop()
    closed = [r["detail"] for r in run.log(A) if r["event"] == "closed"]
    assert closed[0] == "subscribe timeout: no ack within 10 s"
    assert closed[-1] == "shutdown"


async def test_json_escapes_no_text_column_can_hold_are_stored_and_do_not_stop_the_writer(
    tmp_path: Path, recorder_clock: trio.testing.MockClock, engine: Engine
) -> None:
    # A lone surrogate has no UTF-8 encoding and PostgreSQL text refuses U+0000: spelled as
    # JSON escapes in a frame's type or an ack's details, they once reached the insert and
    # failed every batch holding that frame (a crash loop, since the replay resends it).
    hostile = [
        '{"sequence":900001,"timestamp":5,"payload":{"type":"\\udc00"}}',
        '{"timestamp":6,"payload":{"type":"order-\\u0000update"}}',
        '{"timestamp":7,"payload":{"type":"subscribe-ack","success":true,'
        '"details":"\\ud800 \\u0000"}}',
    ]
    async with trio.open_nursery() as nursery:
        run = await start(
            nursery,
            tmp_path,
            accounts=(A,),
            engine=engine,
            sim_config=SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0),
        )
        await wait_until(lambda: "replay-complete" in run.events_of(A))
        for frame in hostile:
            run.sim.send_raw(A, frame)
        run.sim.send_raw(A, '{"timestamp":8,"payload":{"type":"after"}}')
        await wait_until(lambda: '{"timestamp":8,"payload":{"type":"after"}}' in run.raws(A))
        await run.stop()
    by_raw = {raw: row for raw, row in zip(run.raws(A), run.frames(A), strict=True)}
    for frame in hostile[:2]:
        assert by_raw[frame]["msg_type"] is None  # unparseable type, raw kept exactly
    assert by_raw[hostile[2]]["msg_type"] == "subscribe-ack"
    assert verify_chain(run.frames(A))[0] is None
