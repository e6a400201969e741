"""Reading a burst in runs: how long a session lets frames gather before it reads on.

In a replay burst frames arrive tens of thousands a second. Waking the session (and the
writer's forwarder) once per frame costs the event loop more than the frames themselves,
so in a burst the session sleeps a moment while trio-websocket queues a run, then takes
the run in one go. The price: a frame's receipt stamp is taken when the session takes it,
up to :data:`BURST_GATHER_MAX_S` after the socket delivered it. Slower streams (live
trading) are read frame by frame, stamped at once.

Pure: :func:`gather_s` decides from what the session saw since it last found nothing
queued; the session does the sleeping.
"""

from __future__ import annotations

from typing import Final

#: Frames coming faster than this on one connection are a burst, read in runs.
BURST_FRAMES_PER_S: Final = 5000.0
#: The run a gather aims at: long enough that a wake-up's cost is spread thin, well short
#: of what trio-websocket may queue (recorder.connection.MESSAGE_QUEUE_SIZE; a test
#: holds the two apart), so its reader never stalls on a full queue.
BURST_RUN_FRAMES: Final = 128
#: Bounds of one gather. The upper one bounds how late a stamp can be: with four
#: accounts sharing a 60,000 frames/s burst (15,000 a second each) a 1 ms gather took
#: runs of about 14 frames, and the readers cost 2 us a frame more than at 4 ms
#: (tests/benchmarks/README.md).
BURST_GATHER_MIN_S: Final = 0.001
BURST_GATHER_MAX_S: Final = 0.004


def gather_s(frames: int, elapsed_s: float) -> float:
    """How long to let frames gather before reading on, given that ``frames`` were taken
    over the last ``elapsed_s`` seconds (since the session last found nothing queued).

    0 when that is not a burst (fewer than :data:`BURST_FRAMES_PER_S`); else the time
    :data:`BURST_RUN_FRAMES` take to arrive at that rate, within
    [:data:`BURST_GATHER_MIN_S`, :data:`BURST_GATHER_MAX_S`].
    """
    if frames <= 0 or frames < elapsed_s * BURST_FRAMES_PER_S:
        return 0.0
    wanted_s = BURST_RUN_FRAMES * max(elapsed_s, 0.0) / frames
    return min(max(wanted_s, BURST_GATHER_MIN_S), BURST_GATHER_MAX_S)
