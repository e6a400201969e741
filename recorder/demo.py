"""``studio-recorder demo``: the simulator and the recorder together, on an embedded SQLite.

Records a local Studio look-alike for a few seconds, with one unclean disconnect
halfway through so the run shows a reconnect and the day replay, stops cleanly,
and summarises what the store holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from sqlalchemy import Engine, distinct, func, select

from . import migrate
from .chain import verify_chain
from .config import Settings, parse_config
from .runtime import Recorder, run_recorder
from .schema import connection_log, events
from .simulator import SimConfig, SimEndpoints, Simulator
from .state import RecorderState
from .store import open_engine

DEMO_ACCOUNTS: Final = ("100000", "100001")
DB_NAME: Final = "studio-events.db"
PROGRESS_EVERY_S: Final = 0.25


@dataclass(frozen=True)
class AccountSummary:
    account_id: str
    frames: int
    replayed_frames: int
    sessions: int
    first_sequence: int | None
    last_sequence: int | None
    distinct_sequences: int
    chain_ok: bool


@dataclass(frozen=True)
class DemoSummary:
    directory: Path
    database: Path
    seconds: float
    accounts: list[AccountSummary] = field(default_factory=list)


Progress = Callable[[float, float, RecorderState], None]


def demo_settings(endpoints: SimEndpoints, directory: Path, secret: str) -> Settings:
    document = {
        "studio": {
            "url": endpoints.ws_url,
            "token_url": endpoints.token_url,
            "client_id": "sim-client",
            "accounts": list(DEMO_ACCOUNTS),
        },
        "store": {"url": f"sqlite:///{directory / DB_NAME}"},
        "recorder": {"liveness_timeout_s": 10, "backoff_initial_s": 0.5, "backoff_max_s": 5},
        "metrics": {"listen": ""},
    }
    env = {"STUDIO_CLIENT_SECRET": secret}
    return parse_config(document, env, directory / "recorder.toml")


def write_demo_config(directory: Path) -> Path:
    """A config naming the demo's store, for ``status`` and ``studio-query`` afterwards."""
    path = directory / "recorder.toml"
    accounts = ", ".join(f'"{a}"' for a in DEMO_ACCOUNTS)
    path.write_text(
        "# Written by `studio-recorder demo`: the store of the demo run. The [studio] URLs\n"
        "# pointed at the demo's simulator, which is gone; use this file with `status` and\n"
        "# `studio-query`, or point [studio] at a real server to record for real.\n"
        f'[studio]\naccounts = [{accounts}]\n\n[store]\nurl = "sqlite:///{directory / DB_NAME}"\n'
    )
    return path


async def run_demo(
    directory: Path,
    seconds: float,
    *,
    rate_per_s: float = 50.0,
    on_progress: Progress | None = None,
) -> DemoSummary:
    """Record the simulator for ``seconds`` into ``directory``/studio-events.db; summarise."""
    engine = await trio.to_thread.run_sync(prepare_store, directory)
    secret = secrets.token_urlsafe(24)
    sim = Simulator(SimConfig(accounts=DEMO_ACCOUNTS, rate_per_s=rate_per_s, client_secret=secret))
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(sim.serve)
        settings = demo_settings(endpoints, directory, secret)
        done = trio.Event()

        async def record(task_status: trio.TaskStatus[Recorder]) -> None:
            try:
                await run_recorder(settings, engine=engine, task_status=task_status)
            finally:
                done.set()

        recorder: Recorder = await nursery.start(record)
        started = trio.current_time()
        dropped = False
        while (elapsed := trio.current_time() - started) < seconds:
            if not dropped and elapsed >= seconds / 2:
                sim.drop_connections(DEMO_ACCOUNTS[0], clean=False)  # show reconnect + replay
                dropped = True
            if on_progress is not None:
                on_progress(elapsed, seconds, recorder.state)
            await trio.sleep(min(PROGRESS_EVERY_S, max(0.0, seconds - elapsed)))
        recorder.shutdown()
        await done.wait()
        nursery.cancel_scope.cancel()
    write_demo_config(directory)
    summary = await trio.to_thread.run_sync(summarise, engine, directory, seconds)
    engine.dispose()
    return summary


def prepare_store(directory: Path) -> Engine:
    """Create ``directory`` (owner-only) and a migrated store in it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = open_engine(f"sqlite:///{directory / DB_NAME}")
    migrate.upgrade(engine)
    return engine


def summarise(engine: Engine, directory: Path, seconds: float) -> DemoSummary:
    """Per-account totals of the demo store, with each chain verified."""
    summary = DemoSummary(directory, directory / DB_NAME, seconds)
    with engine.connect() as conn:
        for account in DEMO_ACCOUNTS:
            mine = events.c.account_id == account
            frames, replayed, first, last, distinct_seq = conn.execute(
                select(
                    func.count(),
                    func.count().filter(events.c.replayed),
                    func.min(events.c.sequence),
                    func.max(events.c.sequence),
                    func.count(distinct(events.c.sequence)),
                ).where(mine)
            ).one()
            sessions = conn.execute(
                select(func.count())
                .where(connection_log.c.account_id == account)
                .where(connection_log.c.event == "opened")
            ).scalar_one()
            rows = conn.execute(select(events).where(mine).order_by(events.c.id)).mappings()
            broken, _, _ = verify_chain(rows)
            summary.accounts.append(
                AccountSummary(
                    account, frames, replayed, sessions, first, last, distinct_seq, broken is None
                )
            )
    return summary
