"""A real simulator and a real recorder on a real store, both in the test's process."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import Engine

from recorder.config import Settings
from recorder.connection import Connect
from recorder.runtime import Recorder, run_recorder
from recorder.simulator import SimConfig, SimEndpoints, Simulator

from . import stores
from .config import SECRET, settings_for

#: What an in-process recorder is configured with unless a test says otherwise (the writer
#: in a thread: most of these tests drive time with trio's autojump clock, which a writer
#: process's real time would not follow; ``writer="process"`` where a test means it).
RECORDER_DEFAULTS = {
    "writer": "thread",
    "liveness_timeout_s": 60,
    "subscribe_timeout_s": 10,
    "backoff_initial_s": 1,
    "backoff_max_s": 60,
}


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
        return stores.frames(self.engine, account)

    def raws(self, account: str) -> list[str | bytes]:
        return stores.raws(self.frames(account))

    def log(self, account: str | None = None) -> list[dict[str, Any]]:
        return stores.log(self.engine, account)

    def events_of(self, account: str) -> list[str]:
        return [row["event"] for row in self.log(account)]


async def start(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    sim_config: SimConfig | None = None,
    accounts: tuple[str, ...] = ("100000", "100001"),
    engine: Engine | None = None,
    signing: dict[str, Any] | None = None,
    wall_clock_ms: Callable[[], int] | None = None,
    failed: list[BaseException] | None = None,
    connect: Connect | None = None,
    **recorder: Any,
) -> Running:
    """Start a simulator and a recorder in ``nursery``; returns once both run.

    The store is a fresh SQLite file in ``tmp_path`` unless ``engine`` names one; ``recorder``
    overrides :data:`RECORDER_DEFAULTS`; ``wall_clock_ms`` is the simulator's clock (its
    frames' server timestamps, hence their trading days). With ``failed``, a recorder that
    raises puts its error there (and its task ends) instead of failing the nursery.
    ``connect`` replaces the recorder's connect function.
    """
    config = sim_config or SimConfig(accounts=accounts, client_secret=SECRET)
    sim = Simulator(config, wall_clock_ms=wall_clock_ms)
    sim_scope = trio.CancelScope()

    async def serve_sim(task_status: trio.TaskStatus[SimEndpoints]) -> None:
        with sim_scope:
            await sim.serve(task_status=task_status)

    endpoints = await nursery.start(serve_sim)
    if engine is None:
        engine = stores.migrated(f"sqlite:///{tmp_path}/store.db")
    settings = settings_for(
        tmp_path,
        accounts,
        engine.url.render_as_string(False),
        endpoints=endpoints,
        recorder=RECORDER_DEFAULTS | recorder,
        signing=signing,
    )
    done = trio.Event()

    async def record(task_status: trio.TaskStatus[Recorder]) -> None:
        try:
            await run_recorder(
                settings,
                engine=engine,
                connect=connect,
                rng=random.Random(7),
                task_status=task_status,
            )
        except Exception as exc:
            if failed is None:
                raise
            failed.append(exc)
        finally:
            done.set()

    handle = await nursery.start(record)
    return Running(sim, handle, engine, settings, done, sim_scope)
