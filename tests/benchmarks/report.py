"""The ingest benchmark's targets (issue 8) and its readable table."""

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


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    out = []
    for name, target, value_of, test in _TARGETS:
        value = value_of(result)
        out.append(
            {
                "name": name,
                "target": target,
                "value": value,
                "met": None if value is None else bool(test(value)),
            }
        )
    return out


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
    lines.append("")
    lines.append(f"{'target':<34}{'goal':>11}{'measured':>12}  result")
    for t in result["targets"]:
        verdict = {None: "not measured", True: "met", False: "MISSED"}[t["met"]]
        lines.append(f"{t['name']:<34}{t['target']:>11}{_fmt(t['value']):>12}  {verdict}")
    return "\n".join(lines)
