"""``report.html``: the evening as one self-contained page a person looks at.

Built from the four reports of an evening (the JSON the single commands print) and the
day's :mod:`activity <queries.activity>`; charts from :mod:`queries.charts` are inlined
as SVG, styles inline, and a Content-Security-Policy forbids every fetch: the page opens
the same offline, printed to PDF, or attached to an email. Its footer gives the SHA-256
of the four JSON files written beside it, so the page can be matched to them.

Per account: a status line (recorded, gaps, attested, reconciled), a lane of the timeline
(sessions, reconnects, outages, silences, sequence gaps; the required hours shaded),
frames per minute by type, receipt latency with p50/p99, the reconciliation table with
breaks highlighted, and the chain verification with the checkpoint heads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any, Final
from zoneinfo import ZoneInfo

from recorder import __version__
from recorder.instants import NS_PER_S, iso_ns, ns_from_iso

from .activity import MINUTE_NS, AccountActivity, Lane
from .gaps import is_outage
from .reconcile import SYMBOL_COLUMNS
from .render import cell
from .sessions import complement

REPORT_FILE: Final = "report.html"
#: How much of the day the timeline shows around the required hours and what was recorded.
_MARGIN_NS: Final = 15 * 60 * NS_PER_S
#: More findings than this are folded away in the header (the accounts table shows where).
_LISTED_FINDINGS: Final = 12
#: A detail of the timeline is drawn when what was recorded spans less than 1/3 of it.
_DETAIL_BELOW: Final = 3

_CSS: Final = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
       margin: 0 auto; max-width: 1000px; padding: 16px 20px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 6px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: 0 12px; margin: 8px 0; }
header dt { color: #555; } header dd { margin: 0; }
.verdict { font-weight: 700; padding: 6px 10px; border: 2px solid #111; display: inline-block; }
.verdict.clean { border-style: solid; } .verdict.look { border-style: double; border-width: 4px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 12.5px; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.break td, td.bad { background: #fde0dd; font-weight: 700; }
.status span { display: inline-block; margin-right: 14px; }
.ok::before { content: "\\2714\\00a0"; } .bad::before { content: "\\2718\\00a0"; }
.none::before { content: "\\2013\\00a0"; }
.chart svg { width: 100%; height: auto; }
code, .hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px;
              word-break: break-all; }
section.account { border-top: 2px solid #111; page-break-inside: avoid; }
footer { margin-top: 32px; border-top: 1px solid #999; font-size: 12px; }
@media print { body { max-width: none; } section.account { page-break-before: always; } }
"""


@dataclass(frozen=True)
class _Entries:
    """The reports' entries by report and account, and what holds for every account."""

    of: dict[str, dict[str, dict[str, Any]]]
    max_uncovered_s: float | None
    signatures_checked: bool

    def entry(self, report: str, account: str) -> dict[str, Any]:
        return self.of[report].get(account, {})


@dataclass(frozen=True)
class Page:
    """What the page is about (its header)."""

    day: dt.date
    timezone: str
    source: str
    generated_at_ns: int
    findings: Sequence[str]


@dataclass(frozen=True)
class Drawings:
    """The page's charts, as SVG: drawn while the rest of the evening runs (:func:`draw`)."""

    keys: dict[str, str]  # account -> the id of its section (its charts' ids start with it)
    timelines: list[tuple[str, str, str]]  # (element id, heading or "", svg)
    frames: dict[str, str]  # account -> frames per minute
    latency: dict[str, str]  # account -> receipt latency


def draw(
    gaps: Mapping[str, Any],
    activity: Mapping[str, AccountActivity],
    percentiles_ms: Mapping[str, tuple[float | None, float | None]],
    tz: ZoneInfo,
) -> Drawings:
    """The charts of the accounts of a gaps report: the timeline (and a detail of it when
    the recorded part is short), and per account frames per minute and receipt latency
    (``percentiles_ms``: its p50 and p99, as audit reports them)."""
    from . import charts  # matplotlib: only the evening pays for importing it

    accounts = [a["account_id"] for a in gaps["accounts"]]
    keys = {account: f"acct{i}" for i, account in enumerate(accounts)}
    entries = {a["account_id"]: a for a in gaps["accounts"]}
    empty = AccountActivity()
    window = _interval(gaps["window"])
    lanes = [_lane(keys[a], a, entries[a], activity.get(a, empty), window) for a in accounts]
    hours = _hours(gaps)
    recorded = [i for lane in lanes for i in lane.recorded]
    span = _span(window, recorded + ([hours] if hours else []))
    focus = _span(window, recorded)
    if (focus[1] - focus[0]) * _DETAIL_BELOW >= span[1] - span[0]:
        focus = span  # what was recorded fills the chart: no detail needed
    timelines = []
    if accounts:
        timelines.append(("chart-timeline", "", charts.timeline(lanes, span, tz, hours)))
        if focus != span:
            heading = f"Detail: {_local(focus[0], tz)}–{_local(focus[1], tz)}, when recorded"
            detail = charts.timeline(lanes, focus, tz, hours, id_prefix="detail-")
            timelines.append(("chart-timeline-detail", heading, detail))
    frames, latency = {}, {}
    for a in accounts:
        act = activity.get(a, empty)
        frames[a] = charts.frames_per_minute(act.per_minute, focus, tz)
        latency[a] = charts.latency(act.latency_bins, *percentiles_ms.get(a, (None, None)))
    return Drawings(keys, timelines, frames, latency)


def render(
    page: Page,
    reports: Mapping[str, dict[str, Any]],
    json_files: Mapping[str, bytes],
    drawings: Drawings,
) -> str:
    """The page (HTML text) for an evening's ``reports`` (verify, gaps, audit, reconcile),
    ``json_files`` (file name -> the bytes written) and its ``drawings``."""
    gaps, audit = reports["gaps"], reports["audit"]
    accounts = [a["account_id"] for a in audit["accounts"]]
    by = _Entries(
        {name: {a["account_id"]: a for a in reports[name]["accounts"]} for name in reports},
        (gaps.get("coverage") or {}).get("max_uncovered_s"),
        reports["verify"]["signatures_checked"],
    )
    timelines = [
        (f"<h3>{_e(heading)}</h3>" if heading else "")
        + f'<div class="chart" id="{element}">{svg}</div>'
        for element, heading, svg in drawings.timelines
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evening of {page.day.isoformat()}</title><style>{_CSS}</style></head><body>",
        _header(page, reports, _hours(gaps)),
        _overview(accounts, by, drawings.keys),
        '<h2 id="timeline">Timeline</h2>',
        *(timelines or ["<p>No account to show.</p>"]),
    ]
    parts.extend(_account(account, by, drawings) for account in accounts)
    parts.append(_footer(json_files))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- the timeline's data ---------------------------------------------------------------------


def _interval(entry: Mapping[str, Any]) -> tuple[int, int]:
    return ns_from_iso(entry["start"]), ns_from_iso(entry["end"])


def _lane(
    key: str, account: str, gaps: Mapping[str, Any], act: AccountActivity, window: tuple[int, int]
) -> Lane:
    holes = [(_interval(g), g["reason"]) for g in gaps["coverage_gaps"]]
    return Lane(
        key=key,
        label=account,
        # the window minus the coverage gaps: what the sessions covered
        recorded=complement([h for h, _ in holes], *window),
        outages=[h for h, reason in holes if is_outage(reason)],
        stopped=[h for h, reason in holes if not is_outage(reason)],
        silences=[_interval(s) for s in gaps["silences"]],
        reconnects=act.opened_ns[1:],
        rejected=act.rejected_ns,
        sequence_gaps=[
            (act.gap_after_ns[g["first_missing"]], _seq_label(g))
            for g in gaps["sequence_gaps"]
            if g["first_missing"] in act.gap_after_ns
        ],
    )


def _seq_label(gap: Mapping[str, Any]) -> str:
    first, last = gap["first_missing"], gap["last_missing"]
    return str(first) if first == last else f"{first}–{last}"


def _hours(gaps: Mapping[str, Any]) -> tuple[int, int] | None:
    rule = gaps.get("coverage")
    if not rule or rule["start"] is None:
        return None
    return ns_from_iso(rule["start"]), ns_from_iso(rule["end"])


def _span(window: tuple[int, int], busy: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """What a chart shows: the ``busy`` intervals with a margin, inside the day's window
    (the whole window when nothing is busy)."""
    start, end = window
    if not busy or end <= start:
        return start, max(end, start + MINUTE_NS)
    return (
        max(start, min(a for a, _ in busy) - _MARGIN_NS),
        min(end, max(b for _, b in busy) + _MARGIN_NS),
    )


# -- HTML ------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _header(
    page: Page, reports: Mapping[str, dict[str, Any]], hours: tuple[int, int] | None
) -> str:
    rule = reports["gaps"].get("coverage")
    tz = ZoneInfo(page.timezone)
    if rule is None:
        required = "not configured (no [coverage] rule)"
    elif hours is None:
        required = f"none: not a trading day on the {rule['calendar']} calendar"
    else:
        required = (
            f"{_local(hours[0], tz)}–{_local(hours[1], tz)} "
            f"({rule['calendar']}; at most {rule['max_uncovered_s']:g} s may go unrecorded)"
        )
    listed = "".join(f"<li>{_e(f)}</li>" for f in page.findings)
    if not page.findings:
        verdict = '<p class="verdict clean">All clean</p>'
    elif len(page.findings) <= _LISTED_FINDINGS:
        verdict = f'<p class="verdict look">{len(page.findings)} to look at</p><ul>{listed}</ul>'
    else:  # many: the accounts table says where; the whole list one click away
        verdict = (
            f'<p class="verdict look">{len(page.findings)} to look at</p>'
            f"<details><summary>every finding</summary><ul>{listed}</ul></details>"
        )
    return (
        f"<header><h1>Evening of {page.day.isoformat()}</h1><dl>"
        f"<dt>Trading day</dt><dd>{page.day.isoformat()} ({_e(page.timezone)})</dd>"
        f"<dt>Required hours</dt><dd>{_e(required)}</dd>"
        f"<dt>Store</dt><dd><code>{_e(page.source)}</code></dd>"
        f"<dt>Software</dt><dd>studio-recorder {_e(__version__)}</dd>"
        f"<dt>Generated</dt><dd>{iso_ns(page.generated_at_ns, 0)}</dd>"
        f"</dl>{verdict}</header>"
    )


def _local(instant_ns: int, tz: ZoneInfo) -> str:
    return f"{dt.datetime.fromtimestamp(instant_ns / NS_PER_S, tz):%H:%M}"


def _status(account: str, by: _Entries) -> list[tuple[str, str, str]]:
    """(what, class, text) of the account's four verdicts: recorded, gaps, attested, reconciled."""
    g, a, v, r = (by.entry(name, account) for name in ("gaps", "audit", "verify", "reconcile"))
    uncovered = g.get("uncovered_in_hours_s")
    allowed = by.max_uncovered_s
    if uncovered is None or allowed is None:
        recorded = ("none", f"{a.get('frames', 0):,} frames, hours not checked")
    elif uncovered > allowed:
        recorded = ("bad", f"{uncovered:,.0f} s of the required hours not recorded")
    else:
        recorded = ("ok", f"recorded ({uncovered:,.0f} s of the hours missed)")
    unclean = a.get("unclean_sessions", 0)
    seq = g.get("sequence_gaps", [])
    conflicts = g.get("conflicting_duplicates", 0)
    gap_text = (
        f"{len(seq)} sequence gaps ({sum(x['count'] for x in seq)} missing)"
        if seq
        else "no sequence gaps"
    )
    if conflicts:
        gap_text += f", {conflicts} conflicting copies"
    if unclean:
        gap_text += f", {unclean} unclean session ends"
    gaps_status = ("bad" if seq or conflicts or unclean else "ok", gap_text)
    if not v.get("ok", True):
        attested = ("bad", "chain broken")
    elif not by.signatures_checked:
        attested = ("none", "chain intact; signatures not checked")
    elif v["attested"]:
        attested = ("ok", "chain intact, attested")
    else:
        attested = ("bad", f"chain intact, {v.get('unattested_rows', 0)} rows not attested")
    breaks = r.get("breaks", [])
    reconciled = ("bad", f"{len(breaks)} breaks") if breaks else ("ok", "reconciled")
    return [("recorded", *recorded), ("gaps", *gaps_status), ("attested", *attested),
            ("reconciled", *reconciled)]  # fmt: skip


def _overview(accounts: Sequence[str], by: _Entries, keys: Mapping[str, str]) -> str:
    rows = []
    for account in accounts:
        cells = "".join(
            f'<td class="{cls}">{_e(text)}</td>' for _, cls, text in _status(account, by)
        )
        rows.append(f'<tr><td><a href="#{keys[account]}">{_e(account)}</a></td>{cells}</tr>')
    if not rows:
        return "<p>No account has data or sessions on this day.</p>"
    return (
        '<h2 id="accounts">Accounts</h2><table class="overview"><thead><tr><th>account</th>'
        "<th>recorded</th><th>gaps</th><th>attested</th><th>reconciled</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _table(header: Sequence[str], rows: Iterable[tuple[Sequence[Any], str]]) -> str:
    body = "".join(
        f'<tr class="{cls}">' + "".join(_cell(v) for v in values) + "</tr>" for values, cls in rows
    )
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    """A table cell: numbers right-aligned (integers with thousands separators, decimals
    exactly as in the JSON), None as a dash."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, float | Decimal):
        return f'<td class="n">{_e(cell(value))}</td>'
    return f"<td>{_e(cell(value))}</td>"


def _account(account: str, by: _Entries, drawings: Drawings) -> str:
    key = drawings.keys[account]
    a, v, r = (by.entry(name, account) for name in ("audit", "verify", "reconcile"))
    status = "".join(
        f'<span class="{cls}"><b>{_e(what)}:</b> {_e(text)}</span>'
        for what, cls, text in _status(account, by)
    )
    lat = a.get("latency_ms", {})
    parts = [
        f'<section class="account" id="{key}" data-account="{_e(account)}">',
        f"<h2>Account {_e(account)}</h2>",
        f'<p class="status">{status}</p>',
        f"<p>{a.get('frames', 0):,} frames ({a.get('live_frames', 0):,} live, "
        f"{a.get('replayed_frames', 0):,} replayed, {a.get('unparseable_frames', 0):,} "
        f"unparseable) in {a.get('sessions', 0)} sessions; "
        f'<a href="#timeline">timeline</a></p>',
        "<h3>Frames per minute</h3>",
        f'<div class="chart" id="{key}-frames">{drawings.frames[account]}</div>',
        "<h3>Receipt latency</h3>",
        f"<p>p50 {_ms(lat.get('p50'))}, p99 {_ms(lat.get('p99'))}, max {_ms(lat.get('max'))} "
        f"over {lat.get('frames', 0):,} live frames</p>",
        f'<div class="chart" id="{key}-latency">{drawings.latency[account]}</div>',
        "<h3>Reconciliation</h3>",
        _reconciliation(r),
        "<h3>Verification</h3>",
        _verification(v, by.signatures_checked),
        "</section>",
    ]
    return "\n".join(parts)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.3f} ms"


def _reconciliation(r: Mapping[str, Any]) -> str:
    if not r:
        return "<p>Nothing to reconcile.</p>"
    broken = {b.get("symbol") for b in r.get("breaks", [])}
    symbols = _table(
        [header for header, _ in SYMBOL_COLUMNS],
        (
            (
                [s[key] for _, key in SYMBOL_COLUMNS],
                "break" if s["symbol"] in broken or not s["consistent"] else "",
            )
            for s in r.get("symbols", [])
        ),
    )
    breaks = r.get("breaks", [])
    listed = (
        _table(
            ["break", "symbol", "order", "detail"],
            (
                ([b["kind"], b.get("symbol"), b.get("order_id"), b["detail"]], "break")
                for b in breaks
            ),
        )
        if breaks
        else '<p class="ok">No breaks.</p>'
    )
    return symbols + listed


def _verification(v: Mapping[str, Any], signed: bool) -> str:
    """The account's chain check: rows, ids, signed checkpoints, the head and its anchor."""
    if not v:
        return "<p>No rows to verify.</p>"
    problems = "".join(f"<li>{_e(p.get('what'))}</li>" for p in v.get("problems", []))
    if not signed:
        attestation = "No public key was given: signatures were not checked."
    elif v["attested"]:
        attestation = "Every row is covered by a valid signed checkpoint: the head is attested."
    else:
        attestation = (
            f"{v['unattested_rows']:,} rows after the last valid signed checkpoint "
            f"(through id {cell(v['attested_through_id'])}) are not attested."
        )
    return (
        _table(
            ["chain", "rows", "ids", "checkpoints", "attested through id", "unattested rows"],
            [
                (
                    [
                        "intact" if v["ok"] else "BROKEN",
                        v["rows"],
                        f"{v['first_id']}–{v['last_id']}",
                        v["checkpoints"],
                        v["attested_through_id"],
                        v["unattested_rows"],
                    ],
                    "" if v["ok"] and (v["attested"] or not signed) else "break",
                )
            ],
        )
        + f"<p>{_e(attestation)}<br>"
        f'Chain head: <span class="hash">{_e(v["head"])}</span><br>'
        f'Anchor (before the first row): <span class="hash">{_e(v["anchor"])}</span></p>'
        + (f"<ul>{problems}</ul>" if problems else "")
    )


def _footer(json_files: Mapping[str, bytes]) -> str:
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="hash">{hashlib.sha256(data).hexdigest()}</td></tr>'
        for name, data in json_files.items()
    )
    return (
        "<footer><p>SHA-256 of the reports written beside this page (compare with "
        "<code>sha256sum *.json</code>):</p>"
        f'<table class="digests"><thead><tr><th>file</th><th>SHA-256</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></footer>"
    )
