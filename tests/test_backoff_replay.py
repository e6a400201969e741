import random

import pytest

from recorder.backoff import Backoff
from recorder.envelope import Envelope
from recorder.replay import ReplayTracker


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3))
    delays = [backoff.next() for _ in range(10)]
    caps = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0
    assert backoff.attempt == 1
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(0, 1)


def env(msg_type: str, sequence: int | None = None) -> Envelope:
    return Envelope(msg_type, sequence, 1)


def test_replay_flags_only_sequenced_frames_before_replay_complete() -> None:
    tracker = ReplayTracker()
    flags = [
        tracker.observe(env("subscribe-activity-ack")),
        tracker.observe(env("order-update", 1)),
        tracker.observe(env("heartbeat")),
        tracker.observe(env("trade-notice", 2)),
        tracker.observe(env("replay-complete")),
        tracker.observe(env("order-update", 3)),
        tracker.observe(env("heartbeat")),
    ]
    assert flags == [False, True, False, True, False, False, False]
    assert tracker.replay_done


def test_live_holes_are_counted_after_the_replay_only() -> None:
    tracker = ReplayTracker()
    for frame in (
        env("order-update", 1),
        env("order-update", 5),
        env("replay-complete"),
        env("order-update", 6),
        env("order-update", 9),
        env("order-update", 10),
    ):
        tracker.observe(frame)
    assert tracker.live_holes == 1  # 6 → 9 skipped 7 and 8; the replay's 1 → 5 is not live
    assert tracker.last_sequence == 10
