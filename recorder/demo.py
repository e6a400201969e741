"""``studio-recorder demo``: the simulator and the recorder together, on an embedded SQLite.

Records a local Studio look-alike for a few seconds, with one unclean disconnect
halfway through so the run shows a reconnect and the day replay, stops cleanly,
and summarises what the store holds. It signs checkpoints with a key of its own
(made in the demo directory on first use), so the summary shows each account
attested through its last row, and ``studio-query verify --config`` checks it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from sqlalchemy import Connection, Engine, distinct, func, select

from . import migrate
from .chain import verify_chain
from .checkpoint import Checkpoint
from .config import Settings, parse_config
from .runtime import Recorder, run_recorder
from .schema import checkpoints, connection_log, events
from .signing import Verifier, open_note, parse_verifier, write_new_key
from .simulator import SimConfig, SimEndpoints, Simulator
from .state import RecorderState
from .store import open_engine
from .texttable import table

DEMO_ACCOUNTS: Final = ("100000", "100001")
DB_NAME: Final = "studio-events.db"
#: Relative to the demo configuration's directory, where the store is (see recorder.config).
STORE_URL: Final = f"sqlite:///{DB_NAME}"
KEY_NAME: Final = "signing-key"  # and its verifier key, signing-key.pub
NOTES_DIR: Final = "checkpoints"
PROGRESS_EVERY_S: Final = 0.25
CHECKPOINT_INTERVAL_S: Final = 2.0


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
    #: The account's last checkpoint verifies under the demo's key and covers its last row.
    attested: bool


@dataclass(frozen=True)
class DemoSummary:
    directory: Path
    database: Path
    seconds: float
    accounts: list[AccountSummary] = field(default_factory=list)


Progress = Callable[[float, float, RecorderState], None]


def signing_table(directory: Path) -> dict[str, object]:
    """``[signing]`` of the demo: its key (made on first use), copies, and trust in it."""
    key = directory / KEY_NAME
    if not key.exists():
        write_new_key(key)
    verifier = Path(f"{key}.pub").read_text(encoding="ascii").strip()
    return {
        "key_file": KEY_NAME,
        "checkpoint_dir": NOTES_DIR,
        "checkpoint_interval_s": CHECKPOINT_INTERVAL_S,
        "public_keys": [verifier],
    }


def demo_settings(endpoints: SimEndpoints, directory: Path, secret: str) -> Settings:
    document = {
        "studio": {
            "url": endpoints.ws_url,
            "token_url": endpoints.token_url,
            "client_id": "sim-client",
            "accounts": list(DEMO_ACCOUNTS),
        },
        "store": {"url": STORE_URL},
        "recorder": {"liveness_timeout_s": 10, "backoff_initial_s": 0.5, "backoff_max_s": 5},
        "metrics": {"listen": ""},
        "signing": signing_table(directory),
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
        f'[studio]\naccounts = [{accounts}]\n\n[store]\nurl = "{STORE_URL}"\n'
        f"\n[signing]\n"
        + "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in signing_table(directory).items()
        )
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
    """Per-account totals of the demo store, with each chain and last checkpoint verified."""
    summary = DemoSummary(directory, directory / DB_NAME, seconds)
    verifier = parse_verifier(f"{directory / KEY_NAME}.pub")
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
            broken, head, _ = verify_chain(rows)
            summary.accounts.append(
                AccountSummary(
                    account_id=account,
                    frames=frames,
                    replayed_frames=replayed,
                    sessions=sessions,
                    first_sequence=first,
                    last_sequence=last,
                    distinct_sequences=distinct_seq,
                    chain_ok=broken is None,
                    attested=_attested(conn, account, verifier, (frames, head)),
                )
            )
    return summary


def _attested(conn: Connection, account: str, verifier: Verifier, events: tuple[int, str]) -> bool:
    """Whether the account's last checkpoint is signed by ``verifier`` and covers ``events``
    (its row count and chain head)."""
    note = conn.execute(
        select(checkpoints.c.note)
        .where(checkpoints.c.account_id == account)
        .order_by(checkpoints.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if note is None:
        return False
    text, signers = open_note(note, [verifier])
    state = Checkpoint.parse(text).events
    return bool(signers) and (state.count, state.head) == events


def render_summary(summary: DemoSummary) -> str:
    """What the demo recorded, per account, as a table for people."""
    headers = ["account", "frames", "replayed", "sessions", "sequences", "chain", "attested"]
    rows = [
        [
            a.account_id,
            a.frames,
            a.replayed_frames,
            a.sessions,
            f"{a.first_sequence}..{a.last_sequence} ({a.distinct_sequences} distinct)",
            "verified" if a.chain_ok else "BROKEN",
            "signed through the last row" if a.attested else "NO",
        ]
        for a in summary.accounts
    ]
    return table(headers, rows)
