"""Pure per-session bookkeeping of replay and live sequence order."""

from __future__ import annotations

from .envelope import REPLAY_COMPLETE_TYPE, Envelope


class ReplayTracker:
    """Decides ``replayed`` for each frame of one session, and notices live sequence holes.

    Sequenced frames before the session's first ``replay-complete`` are replays;
    everything else is live. Unsequenced frames are never replayed. A live frame
    whose sequence skips ahead of the previous one is a hole in the live stream
    (the next day replay may fill it; only the query layer decides what is a gap).
    """

    __slots__ = ("last_sequence", "live_holes", "replay_done")

    def __init__(self) -> None:
        self.replay_done = False
        self.last_sequence: int | None = None
        self.live_holes = 0

    def observe(self, envelope: Envelope) -> bool:
        """Account for one frame; returns its ``replayed`` flag."""
        if envelope.msg_type == REPLAY_COMPLETE_TYPE:
            self.replay_done = True
            return False
        sequence = envelope.sequence
        if sequence is None:
            return False
        if self.replay_done:
            previous = self.last_sequence
            if previous is not None and sequence > previous + 1:
                self.live_holes += 1
            self.last_sequence = sequence if previous is None else max(previous, sequence)
            return False
        self.last_sequence = (
            sequence if self.last_sequence is None else max(self.last_sequence, sequence)
        )
        return True
