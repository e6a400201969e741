"""The compliance audit of a trading day, per account.

Counts every frame as stored (duplicates from replays included: this is about what
the recorder received), by type, replayed or live, and unparseable; sessions,
unclean session ends and rejected subscribes from ``connection_log``; the
error-notices the server sent; the latency from the server's timestamp to receipt
over live frames (``quantile_disc``: nearest-rank percentiles, so every figure is a
latency that was actually observed); and whether the account's hash chain over the
day verifies (:mod:`queries.verify`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Final

from recorder.config import DEFAULT_LIVENESS_TIMEOUT_S
from recorder.instants import NS_PER_MS

from .conflicts import conflicting_duplicates, report_fields
from .datasource import DataSource
from .duck import Workspace
from .exportcheck import verify_export
from .render import iso_ns, table
from .sessions import Session, load_sessions
from .storecheck import verify_store
from .verify import ChainCheck, VerifyReport

#: The ``events`` columns audit reads (``open_store(..., payload=False, columns=COLUMNS)``).
COLUMNS = ("account_id", "session_id", "received_at_ns", "server_ts_ms", "sequence",
           "msg_type", "trading_day", "replayed")  # fmt: skip


def chain_check(
    ws: Workspace, accounts: Sequence[str], workers: int | None = None
) -> VerifyReport | None:
    """The day's chain verification of ``accounts`` (from the store or the export).

    Touches only the store or export, never the workspace's DuckDB: it may run in
    another thread.
    """
    if not accounts:
        return None
    if ws.export is not None:
        return verify_export(ws.export.root, day=ws.day, accounts=accounts)
    return verify_store(ws.source, day=ws.day, accounts=accounts, workers=workers)


def audit_source(source: DataSource, day: dt.date, accounts: Sequence[str] = ()) -> dict[str, Any]:
    """The audit report of ``day`` of a store or an export (see :func:`audit`).

    Hashing dominates an audit: on a store, the chain check starts (in worker processes)
    before the day is loaded, so both run at once. Raises QueryError as the reads do.
    """
    with ThreadPoolExecutor(max_workers=1) as background:
        chains = None
        if source.url is not None:
            chains = background.submit(source.verify, day, accounts).result
        with source.open(day, accounts, payload=False, columns=COLUMNS) as ws:
            return audit(ws, liveness_timeout_s=source.liveness_timeout_s, chains=chains)


def audit(
    ws: Workspace,
    *,
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S,
    chains: Callable[[], VerifyReport | None] | None = None,
) -> dict[str, Any]:
    """The audit report of the workspace's day (JSON-ready; see the README for its fields).

    A light workspace (``payload=False``) is enough. ``chains`` gives the day's chain
    verification (e.g. the result of a :func:`verify_store` started before the workspace
    was loaded, as :func:`audit_source` does); by default :func:`chain_check` runs in the
    background while the counts are computed.
    """
    if chains is None:
        with_frames = {str(r[0]) for r in ws.rows("SELECT DISTINCT account_id FROM _events")}
        scope = [a for a in ws.accounts if a in with_frames]
        chains = functools.partial(chain_check, ws, scope)
    with ThreadPoolExecutor(max_workers=1) as background:
        pending = background.submit(chains)
        facts = _Facts(
            counts=_frame_counts(ws),
            by_type=_frames_by_type(ws),
            latency=latencies(ws),
            notices=_error_notices(ws),
            sessions=load_sessions(ws, liveness_timeout_s),
            conflicts=conflicting_duplicates(ws),
        )
        verified = pending.result()
    checks = {c.account_id: c for c in verified.accounts} if verified else {}
    signed = verified is not None and verified.attestation
    accounts = [
        _account_report(
            ws, facts, account, checks.get(account, ChainCheck(account, ws.day)), signed=signed
        )
        for account in ws.accounts
    ]
    return {"trading_day": ws.day, "timezone": ws.tz.key, "accounts": accounts}


# -- facts: one query each ------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What the day's frames and log say, per account (each from one query)."""

    counts: dict[str, tuple[Any, ...]]
    by_type: dict[str, dict[str, int]]
    latency: dict[str, tuple[Any, ...]]
    notices: dict[str, list[dict[str, Any]]]
    sessions: dict[str, list[Session]]
    conflicts: dict[str, list[dict[str, Any]]]


def _frame_counts(ws: Workspace) -> dict[str, tuple[Any, ...]]:
    """Per account: frames, replayed, live, unparseable, live sequenced, first and last receipt."""
    rows = ws.rows(
        """
        SELECT account_id, count(*), count(*) FILTER (WHERE replayed),
               count(*) FILTER (WHERE NOT replayed),
               count(*) FILTER (WHERE msg_type IS NULL),
               count(*) FILTER (WHERE sequence IS NOT NULL AND NOT replayed),
               min(received_at_ns), max(received_at_ns)
        FROM _events GROUP BY account_id
        """
    )
    return {r[0]: r[1:] for r in rows}


def _frames_by_type(ws: Workspace) -> dict[str, dict[str, int]]:
    by_type: dict[str, dict[str, int]] = {}
    for account, msg_type, n in ws.rows(
        "SELECT account_id, msg_type, count(*) FROM _events WHERE msg_type IS NOT NULL "
        "GROUP BY account_id, msg_type ORDER BY account_id, msg_type"
    ):
        by_type.setdefault(account, {})[msg_type] = n
    return by_type


def latencies(ws: Workspace) -> dict[str, tuple[Any, ...]]:
    """Per account: p50, p99 and max (ns) of receipt minus server time over live frames, and
    their count (asked once per workspace: the evening's report draws them too)."""
    if "latencies" not in ws.memo:
        ws.memo["latencies"] = _latencies(ws)
    found: dict[str, tuple[Any, ...]] = ws.memo["latencies"]
    return found


#: The frames a latency is measured on — live ones with a server timestamp — and theirs
#: (``lat``, ns: receipt minus server time), per ``account_id``.
LATENCY_ROWS: Final = (
    "SELECT account_id, received_at_ns - server_ts_ms::HUGEINT * 1000000 AS lat "
    "FROM _events WHERE NOT replayed AND server_ts_ms IS NOT NULL"
)


def _latencies(ws: Workspace) -> dict[str, tuple[Any, ...]]:
    rows = ws.rows(
        "SELECT account_id, quantile_disc(lat, 0.5), quantile_disc(lat, 0.99), max(lat), "
        f"count(*) FROM ({LATENCY_ROWS}) GROUP BY account_id"
    )
    return {r[0]: r[1:] for r in rows}


def _error_notices(ws: Workspace) -> dict[str, list[dict[str, Any]]]:
    notices: dict[str, list[dict[str, Any]]] = {}
    for account, at, details in ws.rows(
        """
        SELECT account_id, received_at_ns,
               try(json_extract_string(CASE raw_kind WHEN 'text' THEN raw
                   ELSE try(decode(from_base64(raw))) END, '$.payload.details'))
        FROM _notices WHERE msg_type = 'error-notice' ORDER BY id
        """
    ):
        notices.setdefault(account, []).append({"at": iso_ns(at), "details": details})
    return notices


# -- the report -----------------------------------------------------------------------------


def _account_report(
    ws: Workspace, facts: _Facts, account: str, check: ChainCheck, *, signed: bool
) -> dict[str, Any]:
    start, end = ws.bounds_ns
    frames, replayed, live, unparseable, live_seq, first, last = facts.counts.get(
        account, (0, 0, 0, 0, 0, None, None)
    )
    p50, p99, worst, measured = facts.latency.get(account, (None, None, None, 0))
    sessions = facts.sessions[account]
    return {
        "account_id": account,
        "frames": frames,
        "by_type": facts.by_type.get(account, {}),
        "replayed_frames": replayed,
        "live_frames": live,
        "live_sequenced_frames": live_seq,
        "unparseable_frames": unparseable,
        **report_fields(facts.conflicts, account),
        "sessions": len(sessions),
        "unclean_sessions": sum(1 for s in sessions if not s.clean),
        "rejected_subscribes": sum(
            1 for s in sessions for at, _ in s.rejections if start <= at < end
        ),
        "error_notices": facts.notices.get(account, []),
        "latency_ms": {
            "p50": as_ms(p50),
            "p99": as_ms(p99),
            "max": as_ms(worst),
            "frames": measured,
        },
        "first_frame_at": iso_ns(first),
        "last_frame_at": iso_ns(last),
        "chain_ok": check.ok,
        "chain_rows": check.rows,
        "chain_problems": [asdict(p) for p in check.problems],
        # null when no public key was given: then nothing is known of signatures
        "attested": check.attested if signed else None,
        "unattested_rows": check.unattested_rows if signed else None,
        "session_list": [_session(s) for s in sessions],
    }


def as_ms(latency_ns: int | None) -> float | None:
    """A latency of :func:`latencies` (ns) in milliseconds, as the report gives it."""
    return None if latency_ns is None else int(latency_ns) / NS_PER_MS


def _session(s: Session) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "opened": iso_ns(s.opened_ns),
        "subscribed": iso_ns(s.subscribed_ns),
        "replay_complete": iso_ns(s.replay_complete_ns),
        "closed": iso_ns(s.closed_ns),
        "close_detail": s.close_detail,
        "subscribe_rejections": len(s.rejections),
        "frames": s.frames,
        "clean": s.clean,
        "running": s.running,
    }


def render_audit(report: dict[str, Any]) -> str:
    """The audit report as text for people."""
    lines = [f"Audit of {report['trading_day']} ({report['timezone']})"]
    lines.append(
        table(
            [
                "account",
                "frames",
                "replayed",
                "live",
                "unparseable",
                "sessions",
                "unclean",
                "rejected",
                "p50_ms",
                "p99_ms",
                "max_ms",
                "chain_ok",
                "attested",
            ],
            [
                (
                    a["account_id"],
                    a["frames"],
                    a["replayed_frames"],
                    a["live_frames"],
                    a["unparseable_frames"],
                    a["sessions"],
                    a["unclean_sessions"],
                    a["rejected_subscribes"],
                    a["latency_ms"]["p50"],
                    a["latency_ms"]["p99"],
                    a["latency_ms"]["max"],
                    a["chain_ok"],
                    a["attested"],
                )
                for a in report["accounts"]
            ],
        )
    )
    for a in report["accounts"]:
        lines.append("")
        lines.append(
            f"Account {a['account_id']}: frames {a['first_frame_at'] or '-'} "
            f"to {a['last_frame_at'] or '-'}"
        )
        lines.append(table(["msg_type", "frames"], sorted(a["by_type"].items())))
        if a["conflicting_duplicates"]:
            listed = ", ".join(str(c["sequence"]) for c in a["conflicts"])
            lines.append(
                f" CONFLICTING DUPLICATES: {a['conflicting_duplicates']} sequences stored with "
                f"different payloads: {listed}"
            )
        if a["error_notices"]:
            lines.append(" error notices:")
            lines.append(
                table(["at", "details"], [(n["at"], n["details"]) for n in a["error_notices"]])
            )
        lines.append(" sessions:")
        lines.append(
            table(
                ["session", "subscribed", "closed", "close_detail", "frames", "clean"],
                [
                    (
                        s["session_id"],
                        s["subscribed"],
                        s["closed"],
                        s["close_detail"],
                        s["frames"],
                        s["clean"],
                    )
                    for s in a["session_list"]
                ],
            )
        )
        for p in a["chain_problems"]:
            lines.append(f" CHAIN BROKEN at row {p['row_id']}: {p['what']}")
    return "\n".join(lines)


def audit_totals(reports: list[dict[str, Any]]) -> str:
    """The totals of several days' audit reports, per account, as text."""
    sums: dict[str, list[int]] = {}
    chains: dict[str, bool] = {}
    for report in reports:
        for a in report["accounts"]:
            total = sums.setdefault(a["account_id"], [0, 0, 0, 0])
            total[0] += a["frames"]
            total[1] += a["sessions"]
            total[2] += a["unclean_sessions"]
            total[3] += len(a["error_notices"])
            chains[a["account_id"]] = chains.get(a["account_id"], True) and a["chain_ok"]
    return f"Totals over {len(reports)} days\n" + table(
        ["account", "frames", "sessions", "unclean", "error_notices", "chain"],
        [
            (account, *t, "ok" if chains[account] else "FAILED")
            for account, t in sorted(sums.items())
        ],
    )
