"""``studio-recorder run/status/sim/demo``: ``run`` and ``sim`` as real processes (signals),
the rest through the console script's ``main()``."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from recorder.chain import verify_chain
from recorder.simulator import SimConfig, Simulator
from tests.support import ROOT
from tests.support.cli import PROGRAMS, cli_env, command_paths, documented, run_process
from tests.support.cli import run as run_module
from tests.support.config import SECRET, write_config
from tests.support.processes import recorder_process
from tests.support.stores import frames, log, migrated, raws

run_cli = functools.partial(run_module, "recorder")


def store_config(tmp_path: Path, ws_url: str, token_url: str, accounts: list[str]) -> Path:
    """A config for the simulator at ``ws_url``, the store in ``tmp_path``, default timings."""
    return write_config(tmp_path / "recorder.toml", accounts, f"sqlite:///{tmp_path}/store.db",
                        url=ws_url, token_url=token_url)  # fmt: skip


async def test_run_records_and_sigterm_exits_0_with_nothing_lost(tmp_path: Path) -> None:
    accounts = ["100000", "0042"]
    sim = Simulator(SimConfig(accounts=tuple(accounts), client_secret=SECRET, rate_per_s=200))
    engine = migrated(f"sqlite:///{tmp_path}/store.db")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = store_config(tmp_path, endpoints.ws_url, endpoints.token_url, accounts)
            async with recorder_process(config, tmp_path / "run.log") as process:
                while len(sim.sent_log("0042")) < 300 or len(sim.sent_log("100000")) < 300:
                    await trio.sleep(0.05)
                sim.drop_connections("100000", clean=False)  # one reconnect mid-run
                while [r["event"] for r in log(engine) if r["account_id"] == "100000"].count(
                    "subscribed"
                ) < 2:  # back (the backoff's jitter can take a second; more under load)
                    await trio.sleep(0.05)
                await trio.sleep(0.5)
                signalled = time.monotonic()
                code = await process.terminate()
                elapsed = time.monotonic() - signalled
                stderr = process.log_path.read_bytes()
            nursery.cancel_scope.cancel()
    assert code == 0, stderr.decode()
    assert elapsed < 5
    lines = [json.loads(line) for line in stderr.decode().splitlines()]
    assert any(line.get("event") == "stopped" for line in lines)
    assert SECRET not in stderr.decode()
    journal = log(engine)
    for account in accounts:
        rows = frames(engine, account)
        stored = raws(rows)
        sent = sim.sent_log(account)
        # Everything read before shutdown is stored, in order: a prefix of what was sent
        # (frames in flight after the recorder stopped reading may be missing; the next
        # day replay re-delivers sequenced ones).
        assert len(stored) >= 300
        assert stored == sent[: len(stored)]
        assert verify_chain(rows)[0] is None
        sessions = {r["session_id"] for r in journal if r["account_id"] == account}
        closed = [r for r in journal if r["account_id"] == account and r["event"] == "closed"]
        assert len(closed) == len(sessions)  # every session has its closed row
        assert closed[-1]["detail"] == "shutdown"


def test_run_without_secret_is_exit_2(tmp_path: Path) -> None:
    config = store_config(tmp_path, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/t", ["1"])
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_CLIENT_SECRET"}
    result = run_cli("run", "--config", str(config), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"studio-recorder: error: {config}: no client secret: set STUDIO_CLIENT_SECRET "
        "or [studio] client_secret_file"
    ]


def test_run_without_schema_is_one_line_exit_1(tmp_path: Path) -> None:
    config = store_config(tmp_path, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/t", ["1"])
    (tmp_path / "store.db").touch()  # a database without the recorder's tables
    result = run_cli(
        "run", "--config", str(config), env={**os.environ, "STUDIO_CLIENT_SECRET": "x"}
    )
    assert result.returncode == 1
    assert "run `studio-recorder db upgrade`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_then_status(tmp_path: Path) -> None:
    demo = run_cli("demo", "--seconds", "3", "--dir", str(tmp_path / "d"))
    assert demo.returncode == 0, demo.stderr
    assert "verified" in demo.stdout
    assert "BROKEN" not in demo.stdout
    assert demo.stderr == ""
    status = run_cli("status", "--config", str(tmp_path / "d" / "recorder.toml"), "--json")
    assert status.returncode == 0, status.stderr
    accounts = json.loads(status.stdout)["accounts"]
    assert [a["account_id"] for a in accounts] == ["100000", "100001"]
    first = accounts[0]
    assert first["session_state"] == "closed"
    assert first["last_close_reason"] == "shutdown"
    assert first["reconnects_today"] == 1  # the demo drops the first account once
    assert first["frames_today"] > 0
    assert (tmp_path / "d" / "studio-events.db").stat().st_mode & 0o077 == 0
    table = run_cli("status", "--config", str(tmp_path / "d" / "recorder.toml"))
    assert table.stdout.splitlines()[0].split()[:3] == ["account", "last", "frame"]


def test_status_on_missing_store_is_one_line(tmp_path: Path) -> None:
    config = store_config(tmp_path, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/t", ["1"])
    result = run_cli("status", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"studio-recorder: error: database file not found: {tmp_path}/store.db: "
        "create it with `studio-recorder db upgrade`"
    )


def test_run_on_a_missing_store_refuses_before_creating_anything(tmp_path: Path) -> None:
    config = store_config(tmp_path, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/t", ["1"])
    result = run_cli(
        "run", "--config", str(config), env={**cli_env(), "STUDIO_CLIENT_SECRET": SECRET}
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"studio-recorder: error: database file not found: {tmp_path}/store.db: "
        "create it with `studio-recorder db upgrade`"
    )
    assert not (tmp_path / "store.db").exists()


def test_sim_prints_its_endpoints_and_serves_tokens(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "recorder",
        "sim",
        "--port",
        "0",
        "--token-port",
        "0",
        "--accounts",
        "7,8",
        "--rate",
        "5",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            lines = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(4))
            assert lines["websocket"].startswith("ws://127.0.0.1:")
            body = {
                "grant_type": "client_credentials",
                "client_id": lines["client_id"],
                "client_secret": lines["client_secret"],
                "audience": "https://api.clearstreet.io",
            }
            answer = httpx.post(lines["token"], json=body, timeout=10)
            assert answer.status_code == 200
            assert answer.json()["expires_in"] > 0
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)
    assert process.returncode == 0


def test_sim_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("sim", "--port", str(port), "--token-port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("studio-recorder: error: cannot listen on 127.0.0.1")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [path for path in command_paths("recorder", groups=True) if path[:1] != ("db",)],
    ids=lambda path: " ".join(path) or "studio-recorder",
)  # the db group: tests/test_cli_db.py::test_help_on_every_command
def test_help_on_every_recorder_command(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_python_m_recorder_helps_as_a_process() -> None:
    result = run_process("recorder", "--help")
    assert result.returncode == 0
    assert "Usage: studio-recorder" in result.stdout


@pytest.mark.parametrize("name", command_paths("recorder"), ids=" ".join)
def test_every_recorder_command_is_documented_in_the_readme(name: tuple[str, ...]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert documented(readme, "recorder", name), f"studio-recorder {' '.join(name)}"


def test_readme_tables_are_whole_and_list_every_command() -> None:
    # A table cut by a blank line renders its second half as text: every table starts with a
    # header and its separator, and every command has a row in one.
    lines = (ROOT / "README.md").read_text().splitlines()
    in_code = False
    for number, (before, line) in enumerate(zip(["", *lines], lines, strict=False), 1):
        in_code ^= line.startswith("```")
        if not in_code and line.startswith("|") and not before.startswith("|"):
            following = lines[number] if number < len(lines) else ""
            assert following.startswith("|---"), f"README.md:{number}: a table row without a header"
    rows = [line for line in lines if line.startswith("| `studio-")]
    for module in ("recorder", "queries"):
        for path in command_paths(module):
            name = " ".join((PROGRAMS[module], *path))
            assert any(row.startswith(f"| `{name}") for row in rows), name


def test_status_pairs_the_last_close_with_its_session_and_sees_no_recorder(tmp_path: Path) -> None:
    from recorder.appender import Appender
    from recorder.records import SHUTDOWN_DETAIL, LogRecord
    from recorder.status import ENDED_UNCLEANLY

    config = store_config(tmp_path, "ws://127.0.0.1:1/ws", "http://127.0.0.1:1/t", ["1"])
    engine = migrated(f"sqlite:///{tmp_path}/store.db")
    now = time.time_ns()
    Appender(engine).append([], [
        LogRecord("s1", "1", now - 60 * 10**9, "opened"),
        LogRecord("s1", "1", now - 59 * 10**9, "subscribed"),
        LogRecord("s1", "1", now - 50 * 10**9, "closed", SHUTDOWN_DETAIL),
        LogRecord("s2", "1", now - 40 * 10**9, "opened"),
        LogRecord("s2", "1", now - 39 * 10**9, "subscribed"),  # then the recorder died
    ])  # fmt: skip
    engine.dispose()
    result = run_cli("status", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["recorder"]["running"] is False
    account = document["accounts"][0]
    assert (account["session_id"], account["session_state"]) == ("s2", ENDED_UNCLEANLY)
    assert account["last_close_reason"] is None  # s1's close is not s2's
    table = run_cli("status", "--config", str(config)).stdout
    assert "ended uncleanly (recorder not running)" in table
    assert "recorder: not running" in table
