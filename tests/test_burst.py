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
    gather_s,
)
from recorder.connection import MESSAGE_QUEUE_SIZE


@pytest.mark.parametrize(
    ("frames", "elapsed_s"),
    [(0, 0.0), (0, 1.0), (1, 1.0), (10, 0.5), (4_999, 1.0), (2_000, 15.0)],
)
def test_slower_streams_are_read_frame_by_frame(frames: int, elapsed_s: float) -> None:
    """Live trading (or an empty run) never waits: each frame is stamped as it comes."""
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


def test_a_run_fits_trio_websockets_queue_with_room_to_spare() -> None:
    """While the session gathers, trio-websocket's reader must not stall on a full queue:
    at any burst rate a gather aims at BURST_RUN_FRAMES, half the queue at most."""
    assert BURST_RUN_FRAMES * 2 <= MESSAGE_QUEUE_SIZE
    # and the slowest burst still gathers more than one frame in the longest pause
    assert BURST_FRAMES_PER_S * BURST_GATHER_MAX_S > 1
