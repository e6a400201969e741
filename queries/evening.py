"""The evening: one trading day loaded once, checked four ways, written as one directory.

:func:`run_evening` starts the chain verification (in worker processes for a large day)
before it loads the day, loads the day into one workspace, and computes the gaps, audit
and reconcile reports over it while the chains are being hashed; audit takes its chain
results from that one verification. Each report is exactly what the single command
prints with ``--json`` for that day (the same functions over the same rows).

:func:`write_evening` writes them as ``verify.json``, ``gaps.json``, ``audit.json``,
``reconcile.json`` and ``summary.txt`` into a staging directory beside ``out`` and swaps
it into place in one step: a reader (or the next evening) sees the previous evening's
files or the new ones, never a mixture.

What "needs a look" (exit 1 of ``studio-query evening``), per account: a broken chain, an
unattested one where public keys are configured, a sequence gap or conflicting copies of
a sequence, an unclean session end, a reconciliation break.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from .activity import activity
from .audit import as_ms, audit, latencies
from .datasource import DataSource
from .errors import QueryError
from .gaps import coverage_failures, gaps
from .publish import create_private_file, describe, make_private_dirs, publish_directory
from .reconcile import reconcile
from .render import to_json
from .report import REPORT_FILE, Drawings, Page, draw, render
from .verify import VerifyReport

#: The reports of an evening, in the order they are written, each named as its command.
REPORTS: Final = ("verify", "gaps", "audit", "reconcile")
SUMMARY_FILE: Final = "summary.txt"
STAGING_PREFIX: Final = ".tmp-evening-"


def report_file(name: str) -> str:
    """The file an evening writes report ``name`` to: ``verify.json`` …"""
    return f"{name}.json"


def default_out(day: dt.date) -> Path:
    """Where an evening is written unless told: ``./evening-DAY``."""
    return Path(f"evening-{day.isoformat()}")


@dataclass(frozen=True)
class Evening:
    """The four reports of a day (JSON-ready, as the single commands print them) and what
    in them needs a look, one line each."""

    day: dt.date
    timezone: str
    source: str
    reports: dict[str, dict[str, Any]]
    findings: tuple[str, ...]
    #: the charts of ``report.html``
    drawings: Drawings
    generated_at_ns: int

    @property
    def clean(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        """A few lines a person reads first: the verdict, then per account, then findings."""
        verdict = "all clean" if self.clean else f"{len(self.findings)} to look at"
        lines = [f"Evening of {self.day.isoformat()} ({self.timezone}): {verdict}",
                 f"source: {self.source}"]  # fmt: skip
        gaps_by = _by_account(self.reports["gaps"])
        reconcile_by = _by_account(self.reports["reconcile"])
        for a in self.reports["audit"]["accounts"]:
            account = a["account_id"]
            g, r = gaps_by.get(account, {}), reconcile_by.get(account, {})
            uncovered = sum(c["seconds"] for c in g.get("coverage_gaps", []))
            chain = "chain ok" if a["chain_ok"] else "CHAIN BROKEN"
            if a["attested"] is not None:
                chain += ", attested" if a["attested"] else ", NOT ATTESTED"
            lines.append(
                f"  {account}: {a['frames']:,} frames, {a['sessions']} sessions "
                f"({a['unclean_sessions']} unclean), "
                f"{len(g.get('sequence_gaps', []))} sequence gaps, "
                f"{uncovered:,.0f} s not covered, {chain}, "
                f"{len(r.get('breaks', []))} reconciliation breaks"
            )
        lines.extend(f"  - {finding}" for finding in self.findings)
        return "\n".join(lines)


def _by_account(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["account_id"]: a for a in report["accounts"]}


def run_evening(
    source: DataSource,
    day: dt.date,
    accounts: Sequence[str] = (),
    *,
    positions_file: str | Path | None = None,
    silence_s: float | None = None,
) -> Evening:
    """Verify, gaps, audit and reconcile of ``day`` of ``source``, the day read once: the
    chains of a store are hashed from the rows the reports use, in a thread beside them
    (an export is verified from its files). Raises QueryError as the single commands do."""
    read: queue.SimpleQueue[pa.RecordBatch | None] = queue.SimpleQueue()

    def rows() -> Iterator[pa.RecordBatch]:
        while (batch := read.get()) is not None:
            yield batch

    with ThreadPoolExecutor(max_workers=2) as background:
        # The chains of a store are hashed from the rows as the workspace reads them (the
        # store is not read twice), while the reports run in DuckDB, which does not hold
        # the GIL; the exchange calendar is looked up meanwhile.
        on_store = source.url is not None
        verifying: Future[VerifyReport] | None = None
        try:
            verifying = background.submit(
                source.verify, day, accounts, loaded=rows() if on_store else None
            )
            hours = background.submit(source.hours, day)
            with source.open(day, accounts, tap=read.put if on_store else None) as ws:
                read.put(None)
                reports: dict[str, dict[str, Any]] = {
                    "gaps": gaps(
                        ws,
                        silence_s=silence_s,
                        liveness_timeout_s=source.liveness_timeout_s,
                        hours=hours.result(),
                    )
                }
                percentiles = {
                    account: (as_ms(p50), as_ms(p99))
                    for account, (p50, p99, *_) in latencies(ws).items()
                }
                # The charts are drawn (Python) while DuckDB reconciles (native threads).
                drawing = background.submit(draw, reports["gaps"], activity(ws), percentiles, ws.tz)
                reports["reconcile"] = reconcile(ws, positions_file=positions_file)
                reports["audit"] = audit(
                    ws, liveness_timeout_s=source.liveness_timeout_s, chains=verifying.result
                )
                drawings = drawing.result()
                timezone = ws.tz.key
                where = ws.source
        except BaseException:
            read.put(None)  # let the chain check end; its result (or error) is not wanted
            if verifying is not None:
                wait([verifying])
            raise
        verified = verifying.result()
    reports["verify"] = verified.as_dict()
    ordered = {name: reports[name] for name in REPORTS}
    return Evening(
        day, timezone, where, ordered, tuple(findings(ordered)), drawings, time.time_ns()
    )


def findings(reports: dict[str, dict[str, Any]]) -> list[str]:
    """What needs a look in an evening's reports, one line each (empty: all clean)."""
    found: list[str] = []
    verify = reports["verify"]
    attesting = bool(verify["signatures_checked"])
    for check in verify["accounts"]:
        if not check["ok"]:
            found.append(f"{check['account_id']}: chain broken ({check['problems'][0]['what']})")
        elif attesting and not check["attested"]:
            found.append(
                f"{check['account_id']}: not attested "
                f"({check['unattested_rows']} rows after the last signed checkpoint)"
            )
    found += [f"verify: {p['what']}" for p in verify["problems"]]
    for a in reports["gaps"]["accounts"]:
        if a["sequence_gaps"]:
            missing = sum(g["count"] for g in a["sequence_gaps"])
            found.append(
                f"{a['account_id']}: {len(a['sequence_gaps'])} sequence gaps "
                f"({missing} sequences missing)"
            )
        if a["conflicting_duplicates"]:
            found.append(
                f"{a['account_id']}: {a['conflicting_duplicates']} sequences stored with "
                "different payloads"
            )
    allowed = reports["gaps"].get("coverage", {}).get("max_uncovered_s")
    for account, seconds in coverage_failures(reports["gaps"]):
        found.append(
            f"{account}: {seconds:,.0f} s of the required hours not recorded "
            f"(at most {allowed:g} s)"
        )
    for a in reports["audit"]["accounts"]:
        if a["unclean_sessions"]:
            found.append(f"{a['account_id']}: {a['unclean_sessions']} sessions ended uncleanly")
    for a in reports["reconcile"]["accounts"]:
        if a["breaks"]:
            kinds = sorted({b["kind"] for b in a["breaks"]})
            found.append(
                f"{a['account_id']}: {len(a['breaks'])} reconciliation breaks ({', '.join(kinds)})"
            )
    return found


def write_evening(evening: Evening, out: Path) -> dict[str, Path]:
    """Write the evening's files into ``out`` (created 0700), replacing a previous evening
    there as a whole; the paths written, by file name. QueryError when ``out`` cannot be
    written (nothing of it is then changed)."""
    out = Path(os.path.abspath(out))
    texts = {report_file(name): to_json(evening.reports[name]) + "\n" for name in REPORTS}
    texts[SUMMARY_FILE] = evening.summary() + "\n"
    page = Page(evening.day, evening.timezone, evening.source, evening.generated_at_ns,
                evening.findings)  # fmt: skip
    json_files = {report_file(name): texts[report_file(name)].encode() for name in REPORTS}
    texts[REPORT_FILE] = render(page, evening.reports, json_files, evening.drawings)
    try:
        make_private_dirs(out.parent)
        staged = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out.parent))
    except OSError as exc:
        raise QueryError(f"cannot write to {out}: {describe(exc, out)}") from None
    try:
        for name, text in texts.items():
            path = staged / name
            create_private_file(path)
            path.write_text(text, encoding="utf-8")
        publish_directory(staged, out)
    except OSError as exc:
        raise QueryError(f"cannot write the evening to {out}: {describe(exc, out)}") from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return {name: out / name for name in texts}
