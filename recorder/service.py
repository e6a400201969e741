"""The recorder's conversation with its supervisor: systemd notifications.

``READY=1`` once the store is open and every account has had its first subscribe
attempt; ``STATUS=`` a one-line summary every few seconds; ``WATCHDOG=1`` at half
the watchdog interval, but only while the writer is not hung (so a hung writer
gets the service restarted); ``STOPPING=1`` when shutdown begins.
"""

from __future__ import annotations

import time
from typing import Final

import trio

from .health import writer_hung
from .notify import Notifier
from .state import RecorderState

STATUS_EVERY_S: Final = 5.0


def status_line(state: RecorderState, frames_per_s: float) -> str:
    subscribed = sum(1 for a in state.accounts.values() if a.subscribed)
    line = f"{subscribed}/{len(state.accounts)} accounts subscribed, {frames_per_s:.0f} frames/s"
    line += f", {state.writer.rows_written} rows written"
    if state.writer.failing:
        line += f", store failing: {state.writer.failing}"
    return line


async def notify_systemd(
    state: RecorderState, notifier: Notifier, ready: trio.Event, stopping: trio.Event
) -> None:
    """Run until cancelled: READY, then STATUS and WATCHDOG pings; STOPPING on shutdown."""
    await ready.wait()
    notifier.notify(READY="1", STATUS=status_line(state, 0.0))
    interval = STATUS_EVERY_S
    if notifier.watchdog_s is not None:
        interval = min(interval, notifier.watchdog_s / 2)
    last_frames = sum(a.frames for a in state.accounts.values())
    last_at = trio.current_time()
    next_status = last_at + STATUS_EVERY_S
    async with trio.open_nursery() as nursery:

        async def announce_stop() -> None:
            await stopping.wait()
            notifier.notify(STOPPING="1", STATUS="stopping: committing what was read")

        nursery.start_soon(announce_stop)
        while not stopping.is_set():
            await trio.sleep(interval)
            now = trio.current_time()
            if notifier.watchdog_s is not None and writer_hung(state, time.monotonic()) is None:
                notifier.notify(WATCHDOG="1")
            if now >= next_status:
                frames = sum(a.frames for a in state.accounts.values())
                rate = (frames - last_frames) / max(now - last_at, 1e-9)
                notifier.notify(STATUS=status_line(state, rate))
                last_frames, last_at, next_status = frames, now, now + STATUS_EVERY_S
