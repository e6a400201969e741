"""How fast gaps, audit and reconcile answer on one realistic day of ~1 M frames.

Builds a SQLite store holding one trading day (2024-06-10, America/New_York) of four
accounts: per account a morning session that ends on "Auth expired" and an
afternoon session whose replay re-delivers the whole morning, heartbeats, ~20 k
orders with their order-updates, trade-notices and position-updates (so roughly a
third of the frames are replay duplicates), written with raw ``sqlite3`` in one
transaction and chained with :func:`recorder.chain.next_hash` exactly as the
recorder chains them. Then times each command through the real CLI (a fresh
``python -m queries`` process: imports, store read, DuckDB, output) and prints
JSON and a table.

Run: ``python -m tests.benchmarks.analytics_speed --rows 1000000`` (``--keep DIR``
keeps the store; ``--store PATH`` reuses one built before; ``--repeat N`` runs each
command N times and keeps the fastest, since other work on the machine only slows
runs down — the median is printed too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recorder.chain import GENESIS_HASH, chain_log_rows, next_hash
from recorder.migrate import upgrade
from recorder.store import open_engine

DAY = dt.date(2024, 6, 10)
ACCOUNTS = ("100000", "100001", "100002", "0042")
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY", "QQQ", "META")
T0_NS = 1_718_020_800_000_000_000  # 2024-06-10T12:00:00Z = 08:00 New York
MORNING_NS = int(4.5 * 3600e9)  # the first session lasts 4.5 h ...
DAY_LEN_NS = int(8.5 * 3600e9)  # ... the second ends 8.5 h after the first opened
REPLAY_STEP_NS = 10_000  # replayed frames arrive 10 µs apart
COMMANDS = ("gaps", "audit", "reconcile")
#: The one command that does what the three do (and verify), the day loaded once.
EVENING = "evening"

Frame = tuple[int, str, int | None, int | None, str, bool, str]  # at, session, ts, seq, ...


def _frame(ts_ms: int, payload: str, seq: int | None = None) -> str:
    sequence = "" if seq is None else f',"sequence":{seq}'
    return f'{{"timestamp":{ts_ms}{sequence},"payload":{payload}}}'


def _order_update(o: dict[str, Any], version: int, status: str, filled: int, pos: int,
                  when_ms: int) -> str:  # fmt: skip
    state = "open" if status in ("new", "partially-filled") else "closed"
    return (
        f'{{"type":"order-update","data":{{"created_at":{o["ms"]},"updated_at":{when_ms},'
        f'"order_id":"{o["id"]}","reference_id":"ref-{o["id"]}","version":{version},'
        f'"account_id":"{o["account"]}","account_number":"ACC{o["account"]}",'
        f'"state":"{state}","status":"{status}","symbol":"{o["symbol"]}",'
        f'"order_type":"limit","side":"{o["side"]}","quantity":"{o["qty"]}",'
        f'"price":"{o["price"]}","time_in_force":"day","average_price":{o["price"]},'
        f'"filled_quantity":"{filled}","order_update_reason":"execution-report",'
        f'"running_position":"{pos}"}}}}'
    )


def _trade_notice(o: dict[str, Any], part: int, quantity: int, pos: int, when_ms: int) -> str:
    return (
        f'{{"type":"trade-notice","data":{{"created_at":{when_ms},'
        f'"account_id":"{o["account"]}","account_number":"ACC{o["account"]}",'
        f'"trade_id":"{o["id"]}-t{part}","order_id":"{o["id"]}","symbol":"{o["symbol"]}",'
        f'"side":"{o["side"]}","quantity":"{quantity}","price":"{o["price"]}",'
        f'"running_position":"{pos}"}}}}'
    )


def _position_update(o: dict[str, Any], pos: int) -> str:
    return (
        f'{{"type":"position-update","data":{{"account_id":"{o["account"]}",'
        f'"account_number":"ACC{o["account"]}","symbol":"{o["symbol"]}",'
        f'"quantity":"{pos}","average_cost":{o["price"]}}}}}'
    )


def _orders(account: str, count: int, rng: random.Random) -> list[tuple[int, str, str]]:
    """(server time ns, msg_type, payload) of ``count`` orders spread over the day."""
    out: list[tuple[int, str, str]] = []
    position = dict.fromkeys(SYMBOLS, 0)
    starts = sorted(rng.randrange(2_000_000_000, DAY_LEN_NS - 2_000_000_000) for _ in range(count))
    for n, start in enumerate(starts):
        at = T0_NS + start
        o = {
            "account": account, "id": f"{account}-{n}", "symbol": rng.choice(SYMBOLS),
            "side": "buy" if rng.random() < 0.55 else "sell", "qty": rng.randrange(10, 500, 10),
            "price": f"{rng.randrange(10_000, 50_000) / 100:.2f}", "ms": at // 1_000_000,
        }  # fmt: skip
        symbol, qty = o["symbol"], o["qty"]
        sign = 1 if o["side"] == "buy" else -1
        out.append((at, "order-update", _order_update(o, 1, "new", 0, position[symbol], o["ms"])))
        if rng.random() < 0.2:
            cancel = _order_update(o, 2, "canceled", 0, position[symbol], o["ms"] + 1)
            out.append((at + 1_000_000, "order-update", cancel))
            continue
        filled = 0
        steps = (("partially-filled", qty // 2), ("filled", qty - qty // 2))
        for part, (status, step) in enumerate(steps):
            when = at + (part + 1) * 2_000_000
            wms = when // 1_000_000
            filled += step
            position[symbol] += sign * step
            pos = position[symbol]
            out.append((when, "order-update", _order_update(o, part + 2, status, filled, pos, wms)))
            out.append((when + 100_000, "trade-notice", _trade_notice(o, part, step, pos, wms)))
            out.append((when + 200_000, "position-update", _position_update(o, pos)))
    out.sort(key=lambda item: item[0])
    return out


def _account_day(
    account: str, offset_ns: int, orders: int, heartbeat_ns: int, rng: random.Random
) -> tuple[list[Frame], list[tuple[str, str, int, str, str | None]]]:
    """Frames and connection_log rows of one account's day (two sessions, one replay)."""
    s1, s2 = f"{account}-s1", f"{account}-s2"
    t0 = T0_NS + offset_ns
    close1 = t0 + MORNING_NS
    open2 = close1 + 2_000_000_000
    close2 = t0 + DAY_LEN_NS
    log = [
        (s1, account, t0, "opened", None),
        (s1, account, t0 + 200_000_000, "subscribed", None),
        (s1, account, t0 + 300_000_000, "replay-complete", None),
        (s1, account, close1, "closed", "1000: Auth expired; please reconnect"),
        (s2, account, open2, "opened", None),
        (s2, account, open2 + 200_000_000, "subscribed", None),
    ]
    frames: list[Frame] = []
    ack = '{"type":"subscribe-activity-ack","account_id":"%s","success":true,"details":"ok"}'
    frames.append(
        (
            t0 + 200_000_000,
            s1,
            (t0 + 150_000_000) // 10**6,
            None,
            "subscribe-activity-ack",
            False,
            _frame((t0 + 150_000_000) // 10**6, ack % account),
        )
    )
    frames.append(
        (
            t0 + 300_000_000,
            s1,
            t0 // 10**6 + 250,
            None,
            "replay-complete",
            False,
            _frame(t0 // 10**6 + 250, '{"type":"replay-complete"}'),
        )
    )
    morning: list[Frame] = []
    for seq, (server_at, msg_type, payload) in enumerate(_orders(account, orders, rng), start=1):
        at = server_at + offset_ns
        ts = at // 1_000_000
        latency = rng.randrange(200_000, 5_000_000)
        session = s1 if at < close1 else s2
        if close1 <= at < open2 + 1_000_000_000:  # nothing is live while reconnecting
            at = open2 + 1_000_000_000 + seq * 1_000
        row = (at + latency, session, ts, seq, msg_type, False, _frame(ts, payload, seq))
        (morning if session == s1 else frames).append(row)
    frames.extend(morning)
    # The afternoon session's replay re-delivers every morning frame, then goes live.
    replay_at = open2 + 300_000_000
    for n, row in enumerate(morning):
        frames.append((replay_at + n * REPLAY_STEP_NS, s2, row[2], row[3], row[4], True, row[6]))
    done = replay_at + len(morning) * REPLAY_STEP_NS
    frames.append(
        (
            done,
            s2,
            done // 10**6,
            None,
            "replay-complete",
            False,
            _frame(done // 10**6, '{"type":"replay-complete"}'),
        )
    )
    log.append((s2, account, done, "replay-complete", None))
    for start, end, session in ((t0 + 1_000_000_000, close1, s1), (done + 1, close2, s2)):
        for at in range(start, end, heartbeat_ns):
            ts = at // 1_000_000
            frames.append(
                (
                    at + 300_000,
                    session,
                    ts,
                    None,
                    "heartbeat",
                    False,
                    _frame(ts, '{"type":"heartbeat"}'),
                )
            )
    frames.append(
        (
            close1 - 1_000_000,
            s1,
            (close1 - 1_000_000) // 10**6,
            None,
            "error-notice",
            False,
            _frame(
                (close1 - 1_000_000) // 10**6,
                '{"type":"error-notice","details":"Auth expired; please reconnect"}',
            ),
        )
    )
    log.append((s2, account, close2, "closed", "shutdown"))
    return frames, log


def build_store(path: Path, rows: int, *, seed: int = 7) -> int:
    """Create a migrated SQLite store at ``path`` with about ``rows`` frames; returns the count."""
    engine = open_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    rng = random.Random(seed)
    per_account = rows / len(ACCOUNTS)
    heartbeats = max(1, int(per_account * 0.12))
    heartbeat_ns = max(1_000_000, DAY_LEN_NS // heartbeats)
    # ~6 frames per order, ~half of them replayed once more.
    orders = max(1, int((per_account - DAY_LEN_NS / heartbeat_ns) / (6 * 1.53)))
    frames: list[tuple[str, Frame]] = []
    logs: list[tuple[str, str, int, str, str | None]] = []
    for n, account in enumerate(ACCOUNTS):
        account_frames, account_log = _account_day(
            account, n * 1_000_000, orders, heartbeat_ns, rng
        )
        frames.extend((account, frame) for frame in account_frames)
        logs.extend(account_log)
    frames.sort(key=lambda item: item[1][0])
    heads = dict.fromkeys(ACCOUNTS, GENESIS_HASH)
    params: list[tuple[Any, ...]] = []
    for account, (at, session, ts, seq, msg_type, replayed, raw) in frames:
        row = {
            "account_id": account,
            "session_id": session,
            "received_at_ns": at,
            "server_ts_ms": ts,
            "sequence": seq,
            "msg_type": msg_type,
            "trading_day": DAY,
            "replayed": replayed,
            "raw_kind": "text",
            "raw": raw,
        }
        heads[account] = next_hash(heads[account], row)
        params.append(
            (
                account,
                session,
                at,
                ts,
                seq,
                msg_type,
                DAY.isoformat(),
                int(replayed),
                "text",
                raw,
                heads[account],
            )
        )
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")
        with db:
            db.executemany(
                "INSERT INTO events (account_id, session_id, received_at_ns, server_ts_ms, "
                "sequence, msg_type, trading_day, replayed, raw_kind, raw, chain_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            db.executemany(
                "INSERT INTO connection_log (session_id, account_id, at_ns, event, detail, "
                "chain_hash) VALUES (?, ?, ?, ?, ?, ?)",
                chain_log_rows(sorted(logs, key=lambda row: row[2])),
            )
    finally:
        db.close()
    return len(params)


def time_command(command: str, store: Path, scratch: Path) -> dict[str, Any]:
    """Run one command through the CLI in a fresh process; wall time and a check of its output
    (``evening`` writes its reports to ``scratch``; the accounts are counted in its gaps)."""
    args = [
        sys.executable,
        "-m",
        "queries",
        command,
        "--db",
        f"sqlite:///{store}",
        "--day",
        DAY.isoformat(),
        "--json",
        *(["--out", str(scratch / "evening")] if command == "evening" else []),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The evening exits 1 for what needs a look: this day covers 8.5 of the 16 required hours.
    if result.returncode not in ((0, 1) if command == EVENING else (0,)):
        raise SystemExit(f"{command} failed ({result.returncode}): {result.stderr.strip()}")
    report = json.loads(result.stdout)
    if command == "evening":
        report = json.loads((scratch / "evening" / "gaps.json").read_text())
    return {"command": command, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "accounts": len(report["accounts"])}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (best is kept)")
    parser.add_argument("--store", type=Path, help="reuse this store instead of building one")
    parser.add_argument("--keep", type=Path, help="build the store in this directory and keep it")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        built_s = None
        store = options.store
        if store is None:
            store = (options.keep or Path(scratch)) / "analytics-speed.db"
            store.unlink(missing_ok=True)
            started = time.perf_counter()
            build_store(store, options.rows)
            built_s = round(time.perf_counter() - started, 1)
        db = sqlite3.connect(store)
        frames = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        db.close()
        load = os.getloadavg()[0]
        results = []
        for command in (*COMMANDS, EVENING):
            runs = [
                time_command(command, store, Path(scratch)) for _ in range(max(1, options.repeat))
            ]
            best = min(runs, key=lambda r: r["seconds"])
            walls = sorted(r["seconds"] for r in runs)
            results.append({**best, "median_s": walls[len(walls) // 2]})
        separate, evening = results[: len(COMMANDS)], results[len(COMMANDS)]
        total = round(sum(r["seconds"] for r in separate), 2)
        summary = {"frames": frames, "build_s": built_s, "cpus": os.cpu_count(),
                   "load_average_before": load, "results": results, "total_s": total,
                   "evening_s": evening["seconds"],
                   "evening_over_separate": round(evening["seconds"] / total, 3)}  # fmt: skip
        print(json.dumps(summary))
        print(f"{frames} frames, {os.cpu_count()} CPUs, load average {load:.2f} before; "
              f"best of {options.repeat} runs (CPU includes worker processes)")  # fmt: skip
        print(f"{'command':<10} {'wall s':>8} {'median s':>9} {'CPU s':>7}")
        for r in separate:
            print(
                f"{r['command']:<10} {r['seconds']:>8.2f} {r['median_s']:>9.2f} {r['cpu_s']:>7.2f}"
            )
        cpu = sum(r["cpu_s"] for r in separate)
        median = sum(r["median_s"] for r in separate)
        print(f"{'total':<10} {total:>8.2f} {median:>9.2f} {cpu:>7.2f}")
        e = evening
        print(f"{EVENING:<10} {e['seconds']:>8.2f} {e['median_s']:>9.2f} {e['cpu_s']:>7.2f}"
              f"   ({e['seconds'] / total:.2f} of the three separate commands)")  # fmt: skip


if __name__ == "__main__":
    main()
