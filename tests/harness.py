"""Test harness: a real simulator and a real recorder on a real SQLite store, in-process."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import Engine, select

from recorder import migrate
from recorder.config import Settings, parse_config
from recorder.envelope import decode_raw
from recorder.runtime import Recorder, run_recorder
from recorder.schema import connection_log, events
from recorder.simulator import SimConfig, SimEndpoints, Simulator
from recorder.store import open_engine

SECRET = "sim-secret-value-9f2c"


def make_settings(
    endpoints: SimEndpoints,
    db_url: str,
    accounts: tuple[str, ...],
    tmp_path: Path,
    **recorder: Any,
) -> Settings:
    document = {
        "studio": {
            "url": endpoints.ws_url,
            "token_url": endpoints.token_url,
            "client_id": "sim-client",
            "accounts": list(accounts),
        },
        "store": {"url": db_url},
        "recorder": {
            "liveness_timeout_s": 60,
            "subscribe_timeout_s": 10,
            "backoff_initial_s": 1,
            "backoff_max_s": 60,
            **recorder,
        },
        "metrics": {"listen": ""},
    }
    return parse_config(document, {"STUDIO_CLIENT_SECRET": SECRET}, tmp_path / "recorder.toml")


@dataclass
class Running:
    sim: Simulator
    recorder: Recorder
    engine: Engine
    settings: Settings
    recorder_done: trio.Event
    sim_scope: trio.CancelScope

    async def stop(self) -> None:
        """Shut the recorder down as SIGTERM would, wait for it, then stop the simulator."""
        self.recorder.shutdown()
        with trio.fail_after(60):
            await self.recorder_done.wait()
        self.sim_scope.cancel()

    def frames(self, account: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(events).where(events.c.account_id == account).order_by(events.c.id)
            return [dict(r._mapping) for r in conn.execute(query)]

    def raws(self, account: str) -> list[str | bytes]:
        return [decode_raw(r["raw_kind"], r["raw"]) for r in self.frames(account)]

    def log(self, account: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(connection_log).order_by(connection_log.c.id)
            if account is not None:
                query = query.where(connection_log.c.account_id == account)
            return [dict(r._mapping) for r in conn.execute(query)]

    def events_of(self, account: str) -> list[str]:
        return [row["event"] for row in self.log(account)]


async def start(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    sim_config: SimConfig | None = None,
    accounts: tuple[str, ...] = ("100000", "100001"),
    engine: Engine | None = None,
    **recorder: Any,
) -> Running:
    """Start a simulator and a recorder in ``nursery``; returns once both run."""
    sim = Simulator(sim_config or SimConfig(accounts=accounts, client_secret=SECRET))
    sim_scope = trio.CancelScope()

    async def serve_sim(task_status: trio.TaskStatus[SimEndpoints]) -> None:
        with sim_scope:
            await sim.serve(task_status=task_status)

    endpoints = await nursery.start(serve_sim)
    if engine is None:
        engine = open_engine(f"sqlite:///{tmp_path}/store.db")
        migrate.upgrade(engine)
    settings = make_settings(
        endpoints, engine.url.render_as_string(False), accounts, tmp_path, **recorder
    )
    done = trio.Event()

    async def record(task_status: trio.TaskStatus[Recorder]) -> None:
        try:
            await run_recorder(
                settings, engine=engine, rng=random.Random(7), task_status=task_status
            )
        finally:
            done.set()

    handle = await nursery.start(record)
    return Running(sim, handle, engine, settings, done, sim_scope)


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float = 600.0, poll_s: float = 0.25
) -> None:
    """Poll ``condition`` (trio time) until true; fail the test after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(poll_s)
