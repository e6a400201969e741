"""One account's day on the simulated server: sequence numbers and the replay log (pure).

The day log holds every sequenced frame of the account's day, exactly as first sent (original
timestamp kept), because a subscribe replays it verbatim. Sequences start at 1 and step by 1
per account per day — the most likely upstream behaviour, which the protocol leaves undocumented.

Skips model the two kinds of gap a recorder must tell apart:
* permanent — the sequence number is used up but the frame never exists (a real hole, never healed);
* healable — the frame is logged but not sent live, so the next replay fills the gap.
"""

from __future__ import annotations

from collections import deque

from recorder.simulator import frames
from recorder.simulator.flow import Record

__all__ = ["DayLedger"]


class DayLedger:
    """Sequence counter, pending skips and replay log of one account's day."""

    def __init__(self) -> None:
        """Start an empty day whose first frame gets sequence 1."""
        self._frames: list[str] = []
        self._next_sequence = 1
        self._skips: deque[bool] = deque()  # True = permanent, oldest request first

    @property
    def frames(self) -> list[str]:
        """Copy of the day's sequenced frames, in sequence order (what a replay sends)."""
        return list(self._frames)

    @property
    def next_sequence(self) -> int:
        """Sequence number the next appended record will get."""
        return self._next_sequence

    def skip(self, count: int, *, permanent: bool) -> None:
        """Withhold the next `count` records from live delivery (see the module docstring)."""
        if count < 0:
            raise ValueError(f"cannot skip a negative number of sequences ({count})")
        self._skips.extend([permanent] * count)

    def append(self, record: Record, timestamp_ms: int) -> str | None:
        """Give `record` the next sequence; return the frame to send live, or None if skipped."""
        sequence = self._next_sequence
        self._next_sequence += 1
        permanent = self._skips.popleft() if self._skips else None
        if permanent:
            return None
        frame = frames.sequenced(timestamp_ms, sequence, record.type, record.data)
        self._frames.append(frame)
        return None if permanent is False else frame

    def new_day(self) -> None:
        """Forget the day: empty log, next sequence 1 (pending skips are dropped too)."""
        self._frames.clear()
        self._next_sequence = 1
        self._skips.clear()
