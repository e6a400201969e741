"""Sessions and recorded coverage, from the recorder's ``connection_log``.

A session is one WebSocket connection of one account: ``opened``, then
``subscribed`` (or ``subscribe-rejected``), ``replay-complete``, and ``closed``
with a detail (close code and reason, error-notice text, liveness timeout,
shutdown, ...). It *covers* the account from ``subscribed`` to ``closed``: every
sequenced frame of that time reaches the store, live or through a later replay.

A session without a ``closed`` row ended uncleanly (the recorder was killed) unless
it is still running: its coverage ends at the last sign of life (its last frame or
log row). It counts as running when no later session of the account exists and it
was heard from within the liveness timeout before "now"; then it covers until now.
Pure functions over plain values, apart from :func:`load_sessions` which reads the
workspace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from recorder.instants import NS_PER_S

from .duck import Workspace


@dataclass
class Session:
    """What the log (and the frames) say about one session."""

    session_id: str
    account_id: str
    opened_ns: int | None = None
    subscribed_ns: int | None = None
    replay_complete_ns: int | None = None
    closed_ns: int | None = None
    close_detail: str | None = None
    rejections: list[tuple[int, str | None]] = field(default_factory=list)
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    frames: int = 0
    running: bool = False  # no closed row, but alive at "now"

    @property
    def clean(self) -> bool:
        """Ended with a ``closed`` row (or is still running)."""
        return self.closed_ns is not None or self.running

    def coverage(self, now_ns: int) -> tuple[int, int] | None:
        """[subscribed, end) — None when it never subscribed."""
        if self.subscribed_ns is None:
            return None
        if self.closed_ns is not None:
            end = self.closed_ns
        elif self.running:
            end = max(now_ns, self.last_seen_ns)
        else:
            end = self.last_seen_ns
        return (self.subscribed_ns, max(end, self.subscribed_ns))


def load_sessions(ws: Workspace, liveness_timeout_s: float) -> dict[str, list[Session]]:
    """Sessions of every account in scope, in order of opening (log rows + frame counts)."""
    sessions: dict[str, Session] = {}
    for session_id, account, at_ns, event, detail in ws.rows(
        "SELECT session_id, account_id, at_ns, event, detail FROM _log ORDER BY at_ns, id"
    ):
        s = sessions.setdefault(session_id, Session(session_id, account, first_seen_ns=at_ns))
        s.last_seen_ns = max(s.last_seen_ns, at_ns)
        if event == "opened" and s.opened_ns is None:
            s.opened_ns = at_ns
        elif event == "subscribed" and s.subscribed_ns is None:
            s.subscribed_ns = at_ns
        elif event == "replay-complete" and s.replay_complete_ns is None:
            s.replay_complete_ns = at_ns
        elif event == "closed" and s.closed_ns is None:
            s.closed_ns, s.close_detail = at_ns, detail
        elif event == "subscribe-rejected":
            s.rejections.append((at_ns, detail))
    for session_id, account, first_ns, last_ns, count in ws.rows(
        "SELECT session_id, any_value(account_id), min(received_at_ns), max(received_at_ns), "
        "count(*) FROM _events GROUP BY session_id"
    ):
        s = sessions.setdefault(session_id, Session(session_id, account, first_seen_ns=first_ns))
        s.first_seen_ns = min(s.first_seen_ns, first_ns)
        s.last_seen_ns = max(s.last_seen_ns, last_ns)
        s.frames = int(count)
    by_account: dict[str, list[Session]] = {account: [] for account in ws.accounts}
    for s in sessions.values():
        if s.account_id in by_account:
            by_account[s.account_id].append(s)
    liveness_ns = int(liveness_timeout_s * NS_PER_S)
    for account_sessions in by_account.values():
        account_sessions.sort(key=lambda s: (s.opened_ns or s.first_seen_ns, s.session_id))
        if account_sessions:
            last = account_sessions[-1]
            last.running = last.closed_ns is None and last.last_seen_ns >= ws.now_ns - liveness_ns
    return by_account


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open intervals, sorted, overlapping and touching ones merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clip(intervals: Iterable[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``intervals`` inside [start, end)."""
    return [(max(a, start), min(b, end)) for a, b in intervals if min(b, end) > max(a, start)]


def complement(covered: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) minus the merged, clipped ``covered`` intervals."""
    holes = []
    cursor = start
    for a, b in covered:
        if a > cursor:
            holes.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        holes.append((cursor, end))
    return holes
