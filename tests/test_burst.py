"""When a session reads in runs (recorder.burst): only in a burst, for a bounded moment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.burst import (
    BURST_FRAMES_PER_S,
    BURST_GATHER_MAX_S,
    BURST_GATHER_MIN_S,
    BURST_RUN_FRAMES,
    BURST_WINDOW_S,
    BurstMeter,
    gather_s,
)
from recorder.connection import MESSAGE_QUEUE_SIZE


@pytest.mark.parametrize(
    ("frames", "elapsed_s"),
    [(0, 0.0), (0, 1.0), (1, 1.0), (10, 0.5), (4_999, 1.0), (2_000, 15.0)],
)
def test_rates_below_a_burst_gather_nothing(frames: int, elapsed_s: float) -> None:
    assert gather_s(frames, elapsed_s) == 0.0


def test_a_burst_gathers_for_the_time_a_run_takes_to_arrive() -> None:
    # 60,000 frames a second on one connection: a run of BURST_RUN_FRAMES takes 2.1 ms.
    assert gather_s(600, 0.01) == pytest.approx(BURST_RUN_FRAMES / 60_000)
    # Four accounts sharing the burst (15,000 a second each) would need 8.5 ms: capped.
    assert gather_s(150, 0.01) == BURST_GATHER_MAX_S
    # Faster than the clock can tell: the shortest gather.
    assert gather_s(50, 0.0) == BURST_GATHER_MIN_S
    assert gather_s(5_000, 1.0) == BURST_GATHER_MAX_S  # the threshold itself is a burst


@given(
    frames=st.integers(min_value=0, max_value=1_000_000),
    elapsed_s=st.floats(min_value=0.0, max_value=100.0),
    faster=st.floats(min_value=1.0, max_value=100.0),
)
def test_a_gather_is_bounded_and_shorter_the_faster_frames_come(
    frames: int, elapsed_s: float, faster: float
) -> None:
    pause = gather_s(frames, elapsed_s)
    assert pause == 0.0 or BURST_GATHER_MIN_S <= pause <= BURST_GATHER_MAX_S
    assert (pause > 0) == (frames > 0 and frames >= elapsed_s * BURST_FRAMES_PER_S)
    if pause:
        assert gather_s(frames, elapsed_s / faster) <= pause


def test_frames_arriving_together_in_live_trading_are_not_delayed() -> None:
    """An order update, its fill and the position, microseconds apart, then quiet: each
    taken as it comes (the meter needs a whole window before it calls anything a burst)."""
    meter = BurstMeter(now=100.0)
    t = 100.0
    for _second in range(5):
        for _frame in range(3):
            t += 0.00002
            assert meter.pause_s(1, t) == 0.0
        t += 1.0  # the next cluster a second later
        assert meter.pause_s(0, t) == 0.0


def test_a_burst_is_recognised_within_a_window_and_left_when_it_ends() -> None:
    meter = BurstMeter(now=0.0)
    t, pauses = 0.0, []
    for _ in range(200):  # 60,000 frames a second, taken one at a time at first
        t += 1 / 60_000
        pauses.append(meter.pause_s(1, t))
    assert pauses[0] == 0.0  # no decision on the first frames
    assert t >= BURST_WINDOW_S
    assert pauses[-1] == pytest.approx(BURST_RUN_FRAMES / 60_000, rel=0.05)
    # The burst ends: the next window shows a trickle, and gathering stops.
    t += 0.5
    meter.pause_s(1, t)
    assert meter.pause_s(0, t + 0.001) == 0.0


@pytest.mark.parametrize("per_s", [5_000, 15_000, 60_000, 128_000])
def test_a_gathered_run_fits_half_of_trio_websockets_queue(per_s: int) -> None:
    """Up to 128,000 frames a second on one connection (twice the fastest measured), what
    queues during a gather stays within half the queue, so trio-websocket's reader does
    not stall on it. (Above 256,000 a second it would: a brief stall, nothing lost.)"""
    pause = gather_s(per_s, 1.0)
    assert pause > 0
    assert per_s * pause <= MESSAGE_QUEUE_SIZE / 2
