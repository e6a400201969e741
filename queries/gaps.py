"""Gap detection: what the store may be missing for a trading day, per account.

Three kinds of gap, because each has a different cause and remedy:

* **sequence gaps** — holes in the account's sequence numbers, computed after
  de-duplication on (account, day, sequence): a hole in one session's live stream
  that a later session's replay filled is *not* a gap. Sequences are assumed to step
  by one (the protocol documents only "monotonic"); nothing is inferred before the
  first sequence seen, so ``first_sequence`` is reported for a human to judge.
* **coverage gaps** — time of the day not covered by any subscribed session (from
  ``connection_log``, see :mod:`queries.sessions`), with a reason: ``not recording``
  (no earlier session), ``unclean end`` (the previous session has no ``closed`` row:
  the recorder was killed), ``stopped (shutdown)`` (the recorder was stopped on purpose
  and started again later), ``not recording since <time>`` (stopped on purpose, and
  nothing has recorded since), or ``reconnecting after: <close detail>`` (the recorder
  was running and trying to reconnect). The day is clipped to "now", so the future of
  today is not a gap.
* **silences** — stretches of covered time longer than a threshold with no frame at
  all (heartbeats included): a connection that was up but said nothing.
"""

from __future__ import annotations

from typing import Any, Final

from recorder.config import DEFAULT_LIVENESS_TIMEOUT_S
from recorder.instants import NS_PER_S
from recorder.records import SHUTDOWN_DETAIL

from .conflicts import conflicting_duplicates, report_fields
from .duck import Workspace
from .hours import TradingHours, intervals
from .render import iso_ns, table
from .sessions import Session, clip, complement, load_sessions, merge

#: Coverage-gap reasons of a gap while a recorder was meant to be recording: it was killed,
#: or it was trying to reconnect (then followed by what closed the connection).
UNCLEAN_END: Final = "unclean end"
RECONNECTING_AFTER: Final = "reconnecting after: "


def is_outage(reason: str) -> bool:
    """A coverage gap while a recorder was meant to be recording (an outage), not time when
    nothing was running."""
    return reason == UNCLEAN_END or reason.startswith(RECONNECTING_AFTER)


#: The ``events`` columns gaps reads (``open_store(..., payload=False, columns=COLUMNS)``).
COLUMNS = ("account_id", "session_id", "received_at_ns", "sequence", "trading_day")


def gaps(
    ws: Workspace,
    *,
    silence_s: float | None = None,
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S,
    hours: TradingHours | None = None,
) -> dict[str, Any]:
    """The gaps report of the workspace's day (JSON-ready; see the README for its fields).

    ``silence_s`` defaults to twice ``liveness_timeout_s`` (the recorder's setting). With
    ``hours`` (:func:`queries.hours.trading_hours`), also the time of the day's required
    hours that no session covered, per account (``uncovered_in_hours_s``,
    ``uncovered_in_hours``) and the rule (``coverage``).
    """
    threshold_s = 2 * liveness_timeout_s if silence_s is None else silence_s
    threshold_ns = int(threshold_s * NS_PER_S)
    start, end = ws.bounds_ns
    until = max(start, min(end, ws.now_ns))
    summary = {
        row[0]: row[1:]
        for row in ws.rows(
            "SELECT account_id, min(sequence), max(sequence), count(DISTINCT sequence), "
            "count(*) - count(DISTINCT sequence) FROM _events "
            "WHERE sequence IS NOT NULL AND trading_day = ? GROUP BY account_id",
            [ws.day],
        )
    }
    holes: dict[str, list[dict[str, Any]]] = {}
    for account, first, last, count in ws.rows(
        """
        SELECT account_id, prev + 1, sequence - 1, sequence - prev - 1 FROM (
            SELECT account_id, sequence,
                   lag(sequence) OVER (PARTITION BY account_id ORDER BY sequence) AS prev
            FROM (SELECT DISTINCT account_id, sequence FROM _events
                  WHERE sequence IS NOT NULL AND trading_day = ?))
        WHERE sequence - prev > 1 ORDER BY account_id, prev
        """,
        [ws.day],
    ):
        holes.setdefault(account, []).append(
            {"first_missing": first, "last_missing": last, "count": count}
        )
    quiet = _quiet_stretches(ws, threshold_ns)
    sessions = load_sessions(ws, liveness_timeout_s)
    conflicts = conflicting_duplicates(ws)
    accounts = []
    for account in ws.accounts:
        first_seq, last_seq, distinct, duplicates = summary.get(account, (None, None, 0, 0))
        covered = clip(merge(_coverage(sessions[account], ws.now_ns)), start, until)
        in_hours: dict[str, Any] = {}
        if hours is not None:
            uncovered = hours.uncovered(covered, until)
            in_hours = {
                "uncovered_in_hours_s": sum(b - a for a, b in uncovered) / NS_PER_S,
                "uncovered_in_hours": intervals(uncovered),
            }
        accounts.append(
            {
                "account_id": account,
                "first_sequence": first_seq,
                "last_sequence": last_seq,
                "distinct_sequences": distinct,
                "duplicates": duplicates,
                **report_fields(conflicts, account),
                "sequence_gaps": holes.get(account, []),
                "coverage_gaps": [
                    _coverage_gap(hole, sessions[account], ws.now_ns)
                    for hole in complement(covered, start, until)
                ],
                "silences": _silences(quiet.get(account, [(None, None)]), covered, threshold_ns),
                **in_hours,
            }
        )
    return {
        "trading_day": ws.day,
        "timezone": ws.tz.key,
        "window": {"start": iso_ns(start), "end": iso_ns(until)},
        "silence_threshold_s": threshold_s,
        **({} if hours is None else {"coverage": hours.as_dict()}),
        "accounts": accounts,
    }


def coverage_failures(report: dict[str, Any]) -> list[tuple[str, float]]:
    """(account, seconds) of every account of a gaps report with more of the required hours
    uncovered than ``[coverage] max_uncovered_s`` allows (``--fail-on-coverage``)."""
    if "coverage" not in report:
        return []
    allowed = report["coverage"]["max_uncovered_s"]
    return [
        (a["account_id"], a["uncovered_in_hours_s"])
        for a in report["accounts"]
        if a["uncovered_in_hours_s"] > allowed
    ]


def has_sequence_gaps(report: dict[str, Any]) -> bool:
    """True when any account of a gaps report has a sequence gap or stored copies of one
    sequence that disagree (``--fail-on-gaps``)."""
    return any(
        account["sequence_gaps"] or account["conflicting_duplicates"]
        for account in report["accounts"]
    )


def _coverage(sessions: list[Session], now_ns: int) -> list[tuple[int, int]]:
    return [c for c in (s.coverage(now_ns) for s in sessions) if c is not None]


def _coverage_gap(hole: tuple[int, int], sessions: list[Session], now_ns: int) -> dict[str, Any]:
    start, end = hole
    before = [
        (cov[1], s) for s in sessions if (cov := s.coverage(now_ns)) is not None and cov[1] <= start
    ]
    previous = max(before, key=lambda item: item[0])[1] if before else None
    if previous is None:
        reason = "not recording"
    elif not previous.clean:
        reason = UNCLEAN_END
    elif previous.close_detail == SHUTDOWN_DETAIL:
        resumed = any(s.opened_ns is not None and s.opened_ns >= start for s in sessions)
        reason = "stopped (shutdown)" if resumed else f"not recording since {iso_ns(start)}"
    else:
        reason = f"{RECONNECTING_AFTER}{previous.close_detail or 'closed'}"
    return {
        "start": iso_ns(start),
        "end": iso_ns(end),
        "seconds": (end - start) / NS_PER_S,
        "reason": reason,
        "after_session": previous.session_id if previous else None,
        "attempts": sum(
            1 for s in sessions if s.opened_ns is not None and start <= s.opened_ns < end
        ),
        "rejected_subscribes": sum(
            1 for s in sessions for at, _ in s.rejections if start <= at < end
        ),
    }


def _quiet_stretches(
    ws: Workspace, threshold_ns: int
) -> dict[str, list[tuple[int | None, int | None]]]:
    """Per account, (previous frame, next frame) pairs further apart than the threshold.

    ``None`` stands for "no frame before" / "no frame after": every silence lies in
    one of these stretches, so only they need intersecting with coverage.
    """
    out: dict[str, list[tuple[int | None, int | None]]] = {}
    for account, prev, at in ws.rows(
        """
        SELECT account_id, prev, received_at_ns FROM (
            SELECT account_id, received_at_ns,
                   lag(received_at_ns) OVER (PARTITION BY account_id ORDER BY received_at_ns)
                   AS prev
            FROM _events)
        WHERE prev IS NULL OR received_at_ns - prev > ?
        UNION ALL
        SELECT account_id, max(received_at_ns), NULL FROM _events GROUP BY account_id
        """,
        [threshold_ns],
    ):
        out.setdefault(account, []).append((prev, at))
    return out


def _silences(
    stretches: list[tuple[int | None, int | None]],
    covered: list[tuple[int, int]],
    threshold_ns: int,
) -> list[dict[str, Any]]:
    found = []
    for a, b in covered:
        for prev, following in stretches:
            start = a if prev is None else max(prev, a)
            end = b if following is None else min(following, b)
            if end - start > threshold_ns:
                found.append((start, end))
    return [
        {"start": iso_ns(s), "end": iso_ns(e), "seconds": (e - s) / NS_PER_S}
        for s, e in sorted(found)
    ]


def render_gaps(report: dict[str, Any]) -> str:
    """The gaps report as text for people."""
    lines = [
        f"Gaps on {report['trading_day']} ({report['timezone']}), "
        f"{report['window']['start']} to {report['window']['end']}; "
        f"silence threshold {report['silence_threshold_s']:g} s"
    ]
    for acc in report["accounts"]:
        lines.append("")
        span = (
            f"sequences {acc['first_sequence']}..{acc['last_sequence']}"
            if acc["first_sequence"] is not None
            else "no sequenced frames"
        )
        lines.append(
            f"Account {acc['account_id']}: {span}, {acc['distinct_sequences']} distinct, "
            f"{acc['duplicates']} duplicates"
        )
        if acc["conflicting_duplicates"]:
            lines.append(
                f" CONFLICTING DUPLICATES: {acc['conflicting_duplicates']} sequences stored "
                "with different payloads (the first copy is used):"
            )
            lines.append(
                table(
                    ["sequence", "copies", "distinct_payloads", "ids"],
                    [(c["sequence"], c["copies"], c["distinct_payloads"],
                      " ".join(map(str, c["ids"]))) for c in acc["conflicts"]],
                )
            )  # fmt: skip
        lines.append(" sequence gaps:")
        lines.append(
            table(
                ["first_missing", "last_missing", "count"],
                [(g["first_missing"], g["last_missing"], g["count"]) for g in acc["sequence_gaps"]],
            )
        )
        lines.append(" coverage gaps:")
        lines.append(
            table(
                ["start", "end", "seconds", "reason"],
                [(g["start"], g["end"], g["seconds"], g["reason"]) for g in acc["coverage_gaps"]],
            )
        )
        if "uncovered_in_hours_s" in acc:
            rule = report["coverage"]
            hours = f"{rule['start']} to {rule['end']}" if rule["start"] else "no session"
            lines.append(
                f" required hours ({rule['calendar']}, {hours}) not recorded: "
                f"{acc['uncovered_in_hours_s']:,.3f} s (at most {rule['max_uncovered_s']:g} s)"
            )
        lines.append(" silences:")
        lines.append(
            table(
                ["start", "end", "seconds"],
                [(g["start"], g["end"], g["seconds"]) for g in acc["silences"]],
            )
        )
    return "\n".join(lines)


def gaps_totals(reports: list[dict[str, Any]]) -> str:
    """The totals of several days' gaps reports, per account, as text."""
    sums: dict[str, list[float]] = {}
    for report in reports:
        for a in report["accounts"]:
            total = sums.setdefault(a["account_id"], [0, 0, 0.0, 0.0])
            total[0] += len(a["sequence_gaps"])
            total[1] += sum(g["count"] for g in a["sequence_gaps"])
            total[2] += sum(g["seconds"] for g in a["coverage_gaps"])
            total[3] += a.get("uncovered_in_hours_s", 0.0)
    return f"Totals over {len(reports)} days\n" + table(
        ["account", "sequence_gaps", "missing", "not_covered_s", "hours_not_recorded_s"],
        [(account, int(t[0]), int(t[1]), t[2], t[3]) for account, t in sorted(sums.items())],
    )
