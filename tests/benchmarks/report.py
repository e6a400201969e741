"""The ingest benchmark's targets (issue 8; issue 16 for ``--burst``) and its tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: (name, target text, how to read the value from the result, test of the value)
_TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = [
    (
        "ingest SQLite / limit",
        ">= 0.75",
        lambda r: (r["recorder_sqlite"] or {}).get("ratio"),
        lambda v: v >= 0.75,
    ),
    (
        "ingest PostgreSQL / limit",
        ">= 0.75",
        lambda r: (r["recorder_postgresql"] or {}).get("ratio"),
        lambda v: v >= 0.75,
    ),
    (
        "p99 latency SQLite @2k fps",
        "<= 100 ms",
        lambda r: (r["latency_sqlite"] or {}).get("p99_ms"),
        lambda v: v <= 100,
    ),
    (
        "p99 latency PostgreSQL @2k fps",
        "<= 100 ms",
        lambda r: (r["latency_postgresql"] or {}).get("p99_ms"),
        lambda v: v <= 100,
    ),
    (
        "peak RSS ingest SQLite",
        "<= 250 MB",
        lambda r: (r["recorder_sqlite"] or {}).get("rss_peak_mb"),
        lambda v: v <= 250,
    ),
    (
        "peak RSS ingest PostgreSQL",
        "<= 250 MB",
        lambda r: (r["recorder_postgresql"] or {}).get("rss_peak_mb"),
        lambda v: v <= 250,
    ),
    (
        "peak RSS during store stall",
        "<= 250 MB",
        lambda r: (r["stall"] or {}).get("rss_peak_mb"),
        lambda v: v <= 250,
    ),
    (
        "export / DuckDB alone",
        ">= 0.5",
        lambda r: (r["export"] or {}).get("ratio"),
        lambda v: v >= 0.5,
    ),
    (
        "gaps + audit + reconcile",
        "<= 10 s",
        lambda r: (r["analytics"] or {}).get("total_s"),
        lambda v: v <= 10,
    ),
]


def _peak_rss_mb(result: dict[str, Any]) -> float | None:
    runs = [r for r in (result["burst"][s] for s in ("sqlite", "postgresql")) if r]
    return max(r["rss_peak_mb"] for r in runs) if runs else None


def _accounts(result: dict[str, Any]) -> str:
    n = result["params"]["accounts"]
    return "one account" if n == 1 else f"{n} accounts"


#: Issue 16's targets for ``--burst`` (its p99 target is the default mode's, with a new
#: threshold once the writer has its own process).
_BURST_TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = [
    (
        "{accounts}, SQLite / drain",
        ">= 0.85",
        lambda r: (r["burst"]["sqlite"] or {}).get("ratio"),
        lambda v: v >= 0.85,
    ),
    (
        "{accounts}, PostgreSQL / drain",
        ">= 0.85",
        lambda r: (r["burst"]["postgresql"] or {}).get("ratio"),
        lambda v: v >= 0.85,
    ),
    (
        "peak RSS, recorder processes summed",
        "<= 200 MB",
        _peak_rss_mb,
        lambda v: v <= 200,
    ),
]


def _evaluate(
    checks: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool]]],
    result: dict[str, Any],
) -> list[dict[str, Any]]:
    out = []
    for name, target, value_of, test in checks:
        value = value_of(result)
        out.append(
            {
                "name": name.format(accounts=_accounts(result)),
                "target": target,
                "value": value,
                "met": None if value is None else bool(test(value)),
            }
        )
    return out


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    return _evaluate(_TARGETS, result)


def burst_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's targets of a ``--burst`` result, as :func:`targets`."""
    return _evaluate(_BURST_TARGETS, result)


def _fmt(value: Any, spec: str = ",") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def table(result: dict[str, Any]) -> str:
    """A readable summary: rates, then every target with met/missed."""
    lines = []
    m = result["machine"]
    p = result["params"]
    lines.append(
        f"{p['frames']:,} frames of ~{_fmt(p['frame_bytes_avg'])} B to {p['accounts']} accounts; "
        f"{m['cpus']} CPUs ({m['cpu_model']}), load average {m['load_average_before']} before"
    )
    lines.append(
        f"{'run':<26}{'frames/s':>11}{'seconds':>9}{'ratio':>7}{'CPU us/frame':>14}"
        f"{'peak RSS MB':>13}"
    )
    for key, label in (
        ("limit", "limit (drain client)"),
        ("recorder_sqlite", "recorder, SQLite"),
        ("recorder_sqlite_signed", "recorder, SQLite, signing"),
        ("recorder_postgresql", "recorder, PostgreSQL"),
    ):
        r = result.get(key)
        if r is None:
            lines.append(f"{label:<26}{'skipped: ' + str(result['skipped'].get(key, '')):>11}")
            continue
        lines.append(
            f"{label:<26}{_fmt(r['fps']):>11}{r['seconds']:>9.2f}{_fmt(r.get('ratio'), '.2f'):>7}"
            f"{_fmt(r['cpu_us_per_frame'], '.1f'):>14}{_fmt(r.get('rss_peak_mb'), '.0f'):>13}"
        )
    signed = result.get("recorder_sqlite_signed")
    if signed:
        lines.append(
            f"signing: {signed['checkpoints']} checkpoints; time per frame "
            f"{signed['overhead']:+.1%} against the unsigned SQLite run"
        )
    server = result["limit"]
    lines.append(
        f"server alone: {_fmt(server['server_self_test_fps'])} frames/s into a "
        "discarding socket (so the server is not the limit)"
    )
    for key in ("latency_sqlite", "latency_postgresql"):
        r = result[key]
        if r:
            lines.append(
                f"{key}: {r['frames']:,} frames at {r['rate_fps']:g}/s: p50 {r['p50_ms']} "
                f"ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms"
            )
    s = result["stall"]
    if s:
        lines.append(
            f"store stall {s['stall_s']:g} s: RSS {s['rss_before_mb']} -> peak "
            f"{s['rss_peak_mb']} MB, {s['rows_committed_during_stall']} rows committed "
            f"meanwhile, all committed after: {s['all_committed']} "
            f"(caught up in {s['catch_up_s']} s)"
        )
    e = result["export"]
    if e:
        lines.append(
            f"export: {e['rows']:,} rows in {e['s']} s ({_fmt(e['rows_per_s'])} rows/s); "
            f"DuckDB alone {e['duckdb_alone_s']} s; ratio {e['ratio']} "
            f"({e['ratio_same_zstd_level']} at the export's zstd level)"
        )
    a = result["analytics"]
    if a:
        lines.append(
            f"analytics: gaps {a['gaps_s']} s, audit {a['audit_s']} s, reconcile "
            f"{a['reconcile_s']} s, total {a['total_s']} s "
            f"({_fmt(a['rows_per_s'])} rows/s)"
        )
    lines += _target_lines(result["targets"])
    return "\n".join(lines)


def _target_lines(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"{'target':<38}{'goal':>11}{'measured':>12}  result"]
    for t in checks:
        verdict = {None: "not measured", True: "met", False: "MISSED"}[t["met"]]
        lines.append(f"{t['name']:<38}{t['target']:>11}{_fmt(t['value']):>12}  {verdict}")
    return lines


def burst_table(result: dict[str, Any]) -> str:
    """The ``--burst`` summary: each round, the best of each, CPU per process, targets."""
    m, p, b = result["machine"], result["params"], result["burst"]
    lines = [
        f"{_accounts(result)}, {p['frames']:,} frames of ~{_fmt(p['frame_bytes_avg'])} B, "
        f"{p['repeat']} round(s); {m['cpus']} CPUs ({m['cpu_model']})",
        f"{'round':<7}{'load':>6}{'drain fps':>11}{'SQLite fps':>12}{'ratio':>7}"
        f"{'PostgreSQL fps':>16}{'ratio':>7}",
    ]
    for n, r in enumerate(b["rounds"], 1):
        sq, pg = r["sqlite"], r.get("postgresql") or {}
        lines.append(
            f"{n:<7}{r['load_average_before']:>6}{_fmt(r['drain']['fps']):>11}"
            f"{_fmt(sq['fps']):>12}{_fmt(sq['ratio'], '.2f'):>7}"
            f"{_fmt(pg.get('fps')):>16}{_fmt(pg.get('ratio'), '.2f'):>7}"
        )
    lines.append(
        f"best: drain {_fmt(b['drain']['fps'])} frames/s "
        f"({_fmt(b['drain']['cpu_us_per_frame'], '.1f')} us CPU/frame); read in runs as the "
        f"recorder does {_fmt(b['drain_in_runs']['fps'])} frames/s "
        f"({_fmt(b['drain_in_runs']['cpu_us_per_frame'], '.1f')} us CPU/frame)"
    )
    for store, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        r = b[store]
        if r is None:
            lines.append(f"{label}: skipped: {result['skipped'].get(store, '')}")
            continue
        per = ", ".join(
            f"{q['role']} {q['cpu_us_per_frame']:.1f} (main thread "
            f"{q['main_thread_us_per_frame']:.1f}, others {q['other_threads_us_per_frame']:.1f})"
            for q in r["processes"]
        )
        server = r.get("server_cpu_us_per_frame")
        if server is not None:
            per += f", PostgreSQL server {server:.1f}"
        lines.append(
            f"{label}: {_fmt(r['fps'])} frames/s, ratio {r['ratio']:.2f} (rounds "
            f"{', '.join(format(x, '.2f') for x in r['ratios'])}; to the drain read in runs "
            f"{r['ratio_in_runs']:.2f}); peak RSS summed "
            f"{r['rss_peak_mb']} MB; CPU us/frame: {per}"
        )
    for name, prof in (b["profiles"] or {}).items():
        top = "; ".join(f"{t['frame']} {t['share']:.0%}" for t in prof["top_self"][:5])
        lines.append(f"profile {name} ({prof['samples']} samples): {top}")
    lines += _target_lines(result["targets"])
    return "\n".join(lines)
