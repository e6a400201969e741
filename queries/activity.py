"""What the evening report draws that the four JSON reports do not hold, from the workspace,
and the shape of a timeline lane (:class:`Lane`, drawn by :mod:`queries.charts`).

Per account: frames per minute by message type, the receipt-latency distribution (as a
histogram on a log scale, over the frames audit measures its percentiles on: live frames
with a server timestamp), the receipt time of the last frame before each sequence gap (to
mark the gap on the timeline), and the times sessions were opened and subscribes were
rejected. Only light columns are read: a workspace opened with ``payload=False`` will do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from recorder.instants import NS_PER_S

from .audit import LATENCY_ROWS
from .duck import Workspace

MINUTE_NS: Final = 60 * NS_PER_S
#: Latency histogram: bins per decade, and the range (ms) outside which values are clamped
#: into the first or last bin (a negative latency, a clock behind the server's, goes first).
LATENCY_BINS_PER_DECADE: Final = 10
#: Bin k holds [10 ** (k / 10), 10 ** ((k + 1) / 10)) ms: from 0.1 ms to 100 s.
LATENCY_BINS: Final = range(-10, 50)
LATENCY_MIN_MS: Final = 10 ** (LATENCY_BINS[0] / LATENCY_BINS_PER_DECADE)
#: The label of frames that did not parse (no message type).
UNPARSED: Final = "(unparseable)"


@dataclass(frozen=True)
class AccountActivity:
    """One account's activity on the day."""

    #: msg_type -> {minute (UTC epoch ns of its start): frames}
    per_minute: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (lower edge ms, upper edge ms, frames) of each non-empty latency bin, ascending
    latency_bins: list[tuple[float, float, int]] = field(default_factory=list)
    #: first missing sequence of each gap -> receipt time of the last frame before it
    gap_after_ns: dict[int, int] = field(default_factory=dict)
    opened_ns: list[int] = field(default_factory=list)
    rejected_ns: list[int] = field(default_factory=list)


def activity(ws: Workspace) -> dict[str, AccountActivity]:
    """The activity of every account in the workspace's scope (empty for one without frames)."""
    per_minute: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for account, msg_type, minute, n in ws.rows(
        "SELECT account_id, coalesce(msg_type, ?), received_at_ns // ? * ?, count(*) "
        "FROM _events WHERE trading_day = ? GROUP BY ALL ORDER BY ALL",
        [UNPARSED, MINUTE_NS, MINUTE_NS, ws.day],
    ):
        per_minute[account][msg_type][int(minute)] = int(n)
    bins: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for account, k, n in ws.rows(
        f"""
        SELECT account_id, least(greatest(floor(log10(greatest(lat / 1e6, ?)) * ?), ?), ?)::INT,
               count(*)
        FROM ({LATENCY_ROWS})
        GROUP BY ALL ORDER BY ALL
        """,
        [LATENCY_MIN_MS, LATENCY_BINS_PER_DECADE, LATENCY_BINS[0], LATENCY_BINS[-1]],
    ):
        edges = (10 ** (k / LATENCY_BINS_PER_DECADE), 10 ** ((k + 1) / LATENCY_BINS_PER_DECADE))
        bins[account].append((*edges, int(n)))
    gap_after: dict[str, dict[int, int]] = defaultdict(dict)
    for account, first_missing, at in ws.rows(
        """
        SELECT account_id, prev + 1, prev_at FROM (
            SELECT account_id, sequence,
                   lag(sequence) OVER w AS prev, lag(first_at) OVER w AS prev_at
            FROM (SELECT account_id, sequence, min(received_at_ns) AS first_at FROM _events
                  WHERE sequence IS NOT NULL AND trading_day = ? GROUP BY ALL)
            WINDOW w AS (PARTITION BY account_id ORDER BY sequence))
        WHERE sequence - prev > 1
        """,
        [ws.day],
    ):
        gap_after[account][int(first_missing)] = int(at)
    events: dict[tuple[str, str], list[int]] = defaultdict(list)
    for account, event, at in ws.rows(
        "SELECT account_id, event, at_ns FROM _log "
        "WHERE event IN ('opened', 'subscribe-rejected') ORDER BY at_ns, id"
    ):
        events[account, event].append(int(at))
    return {
        account: AccountActivity(
            per_minute={t: dict(m) for t, m in per_minute.get(account, {}).items()},
            latency_bins=bins.get(account, []),
            gap_after_ns=gap_after.get(account, {}),
            opened_ns=events.get((account, "opened"), []),
            rejected_ns=events.get((account, "subscribe-rejected"), []),
        )
        for account in ws.accounts
    }


@dataclass(frozen=True)
class Lane:
    """One account's row of the timeline. Intervals are [start, end) in ns."""

    key: str  # an id-safe name for the lane's elements
    label: str  # the account
    recorded: Sequence[tuple[int, int]] = ()
    outages: Sequence[tuple[int, int]] = ()  # not recorded while it should have been
    stopped: Sequence[tuple[int, int]] = ()  # not recorded: nothing was running
    silences: Sequence[tuple[int, int]] = ()  # recorded, but no frame for a long while
    reconnects: Sequence[int] = ()  # a session opened after the first
    rejected: Sequence[int] = ()  # a subscribe refused
    sequence_gaps: Sequence[tuple[int, str]] = ()  # (at, "12-13")
