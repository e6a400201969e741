"""Reading a burst in runs: how long a session lets frames gather before it reads on.

In a replay burst frames arrive tens of thousands a second. Waking the session (and the
writer's forwarder) once per frame costs the event loop more than the frames themselves,
so in a burst the session sleeps a moment while trio-websocket queues a run, then takes
the run in one go. The price: a frame's receipt stamp is taken when the session takes it,
up to :data:`BURST_GATHER_MAX_S` plus the time to take the frames ahead of it after the
socket delivered it. Slower streams (live trading) are read frame by frame, stamped at
once: a burst is only recognised over at least :data:`BURST_WINDOW_S` of frames, so a
handful of frames arriving together never is.

Pure: :class:`BurstMeter` decides from what the session saw; the session does the sleeping.
"""

from __future__ import annotations

from typing import Final

#: Frames coming faster than this on one connection are a burst, read in runs.
BURST_FRAMES_PER_S: Final = 5000.0
#: The shortest stretch of time the rate is measured over: a few frames arriving together
#: (an order update, its fill and the position, microseconds apart) are not a burst.
BURST_WINDOW_S: Final = 0.002
#: The run a gather aims at: long enough that a wake-up's cost is spread thin, well short
#: of what trio-websocket may queue (recorder.connection.MESSAGE_QUEUE_SIZE; a test
#: holds the two apart), so its reader does not stall on a full queue.
BURST_RUN_FRAMES: Final = 128
#: Bounds of one gather. The upper one bounds how late a stamp can be: with four
#: accounts sharing a 60,000 frames/s burst (15,000 a second each) a 1 ms gather took
#: runs of about 14 frames, and the readers cost 2 us a frame more than at 4 ms
#: (tests/benchmarks/README.md).
BURST_GATHER_MIN_S: Final = 0.001
BURST_GATHER_MAX_S: Final = 0.004


def gather_s(frames: int, elapsed_s: float) -> float:
    """How long to let frames gather, given that ``frames`` came in the last ``elapsed_s``
    seconds: 0 when that is not a burst (fewer than :data:`BURST_FRAMES_PER_S`); else the
    time :data:`BURST_RUN_FRAMES` take to arrive at that rate, within
    [:data:`BURST_GATHER_MIN_S`, :data:`BURST_GATHER_MAX_S`]."""
    if frames <= 0 or frames < elapsed_s * BURST_FRAMES_PER_S:
        return 0.0
    wanted_s = BURST_RUN_FRAMES * max(elapsed_s, 0.0) / frames
    return min(max(wanted_s, BURST_GATHER_MIN_S), BURST_GATHER_MAX_S)


class BurstMeter:
    """One connection's rate, measured over windows of at least :data:`BURST_WINDOW_S`.

    The session calls :meth:`pause_s` whenever it finds no frame queued, with the frames it
    took since the last call and the time; it gets how long to gather before it waits for
    the next frame (0: not in a burst). The decision is renewed once a window has passed
    and holds in between, so it never rests on a single frame or two.
    """

    __slots__ = ("_began", "_frames", "_pause_s")

    def __init__(self, now: float) -> None:
        self._began = now
        self._frames = 0
        self._pause_s = 0.0

    def pause_s(self, frames: int, now: float) -> float:
        self._frames += frames
        elapsed_s = now - self._began
        if elapsed_s >= BURST_WINDOW_S:
            self._pause_s = gather_s(self._frames, elapsed_s)
            self._began, self._frames = now, 0
        return self._pause_s
