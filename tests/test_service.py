"""Running as a service: sd_notify on a real datagram socket, /metrics and /healthz over HTTP,
and the generated systemd unit."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from recorder.cli import cli
from recorder.health import WRITER_HUNG_S, judge
from recorder.signing import write_new_key
from recorder.simulator import SimConfig, Simulator
from recorder.state import RecorderState
from recorder.systemd import DEFAULT_USER, Notifier, hidden_paths, notify_systemd, render_unit
from tests.support.cli import run
from tests.support.config import SECRET, write_config
from tests.support.processes import (
    free_port,
    http_get,
    recorder_env,
    recorder_process,
    writer_of,
)
from tests.support.stores import migrated

get = http_get


async def receive_notifications(sock: trio.socket.SocketType, into: list[dict[str, str]]) -> None:
    while True:
        data = await sock.recv(65536)
        into.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


async def test_service_notifies_systemd_and_serves_metrics_and_health(tmp_path: Path) -> None:
    accounts = ("100000", "0042")
    sim = Simulator(SimConfig(accounts=accounts, client_secret=SECRET, rate_per_s=50))
    migrated(f"sqlite:///{tmp_path}/store.db")
    port = free_port()
    notes: list[dict[str, str]] = []
    notify_path = str(tmp_path / "notify.sock")
    with trio.fail_after(90), trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(notify_path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_notifications, sock, notes)
            endpoints = await nursery.start(sim.serve)
            config = write_config(
                tmp_path / "recorder.toml", accounts, f"sqlite:///{tmp_path}/store.db",
                endpoints=endpoints, metrics_listen=f"127.0.0.1:{port}",
                recorder={"liveness_timeout_s": 5, "subscribe_timeout_s": 2,
                          "backoff_initial_s": 0.2, "backoff_max_s": 1},
            )  # fmt: skip
            env = recorder_env(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
            async with recorder_process(config, tmp_path / "rec.log", env=env, args=()) as process:
                base = f"http://127.0.0.1:{port}"
                while not any(n.get("READY") == "1" for n in notes):
                    await trio.sleep(0.05)
                # READY only once both processes are up: the writer had opened the store.
                writer = writer_of(process.pid)
                assert writer is not None
                assert writer.is_running()
                # Healthy once both accounts are subscribed.
                while (await get(f"{base}/healthz")).status_code != 200:
                    await trio.sleep(0.1)
                await trio.sleep(1.5)  # some frames, some watchdog pings
                metrics = (await get(f"{base}/metrics")).text
                # One account loses its connection and cannot resubscribe: 503 naming it.
                sim.set_ack(False)
                sim.drop_connections("0042")
                while (health := await get(f"{base}/healthz")).status_code == 200:
                    await trio.sleep(0.1)
                unhealthy = health.json()
                during = (await get(f"{base}/metrics")).text
                sim.set_ack(True)
                while (await get(f"{base}/healthz")).status_code != 200:
                    await trio.sleep(0.1)
                assert await process.terminate() == 0
                await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    keys = [key for note in notes for key in note]
    assert keys.index("READY") < keys.index("WATCHDOG")
    assert keys.count("WATCHDOG") >= 2
    assert "STOPPING" in keys
    assert keys.index("STOPPING") > keys.index("READY")
    statuses = [n["STATUS"] for n in notes if "STATUS" in n]
    assert any("2/2 accounts subscribed" in s for s in statuses)
    for name in (
        'studio_recorder_frames_total{account="100000",type="order-update"}',
        'studio_recorder_connected{account="0042"} 1.0',
        'studio_recorder_last_frame_timestamp_seconds{account="100000"}',
        'studio_recorder_sequence_gaps_total{account="0042"} 0.0',
        "studio_recorder_queue_depth ",
        "studio_recorder_write_batch_seconds_bucket",
        "studio_recorder_rows_written_total ",
        "studio_recorder_checkpoints_total 0.0",  # no [signing]: nothing attested
        "studio_recorder_checkpoint_copy_failures_total 0.0",
    ):
        assert name in metrics, name
    assert unhealthy["status"] == "unhealthy"
    assert unhealthy["accounts"]["0042"] != "subscribed"
    assert any("account 0042 is not subscribed" in r for r in unhealthy["reasons"])
    assert 'studio_recorder_connected{account="0042"} 0.0' in during
    assert 'studio_recorder_reconnects_total{account="0042",reason="server-close"}' in during
    assert SECRET not in metrics + during + json.dumps(unhealthy)


async def test_watchdog_stops_while_the_writer_is_hung(tmp_path: Path) -> None:
    state = RecorderState.for_accounts(("1",))
    notes: list[dict[str, str]] = []
    path = str(tmp_path / "n.sock")
    with trio.fail_after(30), trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        ready, stopping = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_notifications, sock, notes)
            nursery.start_soon(notify_systemd, state, notifier, ready, stopping)
            ready.set()
            await trio.sleep(0.5)
            healthy_pings = sum("WATCHDOG" in n for n in notes)
            state.writer.busy_since = time.monotonic() - WRITER_HUNG_S - 1  # a stuck transaction
            await trio.sleep(0.15)
            mark = len(notes)
            await trio.sleep(0.6)
            hung_pings = sum("WATCHDOG" in n for n in notes[mark:])
            stopping.set()
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        notifier.close()
    assert healthy_pings >= 3
    assert hung_pings == 0
    assert any(n.get("STOPPING") == "1" for n in notes)
    assert "writer: one transaction has been running" in judge(state, time.monotonic()).reasons[-1]


def test_notifier_is_a_no_op_without_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify(READY="1") is False
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"})
    assert other.enabled
    assert other.watchdog_s is None  # the watchdog is meant for another process
    other.close()


def test_metrics_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        migrated(f"sqlite:///{tmp_path}/s.db")
        config = write_config(
            tmp_path / "r.toml", ["1"], f"sqlite:///{tmp_path}/s.db", url="ws://127.0.0.1:1/ws",
            token_url="http://127.0.0.1:1/t", client_id="c", metrics_listen=f"127.0.0.1:{port}",
        )  # fmt: skip
        result = run("recorder", "run", "--config", config, env=recorder_env())
    assert result.returncode == 1
    assert "cannot listen on [metrics] listen" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("user", [None, "studio"])
def test_generated_unit_passes_systemd_analyze_verify(tmp_path: Path, user: str | None) -> None:
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    secret = tmp_path / "client-secret"
    secret.write_text("x")
    signing_key = tmp_path / "signing-key"
    write_new_key(signing_key)
    args = ["systemd-unit", "--config", "/etc/sr/recorder.toml", "--secret-file", str(secret),
            "--signing-key-file", str(signing_key)]  # fmt: skip
    generated = run("recorder", *args, *(["--user", user] if user else []))
    assert generated.returncode == 0, generated.stderr
    unit_text = generated.stdout
    assert unit_text == render_unit(
        user=user or DEFAULT_USER,
        config="/etc/sr/recorder.toml",
        secret_file=str(secret),
        signing_key_file=str(signing_key),
    )
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecStartPre=",
        "db upgrade --config /etc/sr/recorder.toml",
        "run --config /etc/sr/recorder.toml",
        "LoadCredential=studio-client-secret:",
        f"LoadCredential=studio-signing-key:{signing_key}\n",
        'key_file = "studio-signing-key"',
        "StateDirectory=studio-recorder",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert line in unit_text, line
    assert f"User={user or DEFAULT_USER}\n" in unit_text
    assert "DynamicUser" not in unit_text  # a dynamic user would take the state directory over
    documentation = re.search(r"^Documentation=file://(\S+)$", unit_text, re.M)
    assert documentation is not None
    assert Path(documentation[1]).name == "README.md"
    assert Path(documentation[1]).is_file()
    # The key and secret of this test live under /tmp, which the unit hides: said, once each
    # (so is the program when this checkout is under /tmp too).
    hidden = [line for line in generated.stderr.splitlines() if "PrivateTmp=yes" in line]
    for option in ("--secret-file", "--signing-key-file"):
        assert sum(f"{option} " in line for line in hidden) == 1, option
    unit = tmp_path / "studio-recorder.service"
    unit.write_text(unit_text)
    result = subprocess.run(
        [verify, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "studio-recorder.service" not in result.stderr  # no warnings about our unit


def test_only_paths_the_sandbox_hides_are_warned_about() -> None:
    assert hidden_paths({"--config": "/etc/sr/recorder.toml", "the program": "/opt/sr/bin/x"}) == []
    (warning,) = hidden_paths({"--config": "/etc/a.toml", "the program": "/root/venv/bin/x"})
    assert warning.startswith("the program /root/venv/bin/x is under /root, which the unit hides")


def test_relative_paths_are_refused_for_the_unit() -> None:
    result = run("recorder", "systemd-unit", "--config", "relative.toml")
    assert result.returncode == 2
    assert "--config must be an absolute path" in result.stderr
    relative_key = CliRunner().invoke(
        cli, ["systemd-unit", "--signing-key-file", "key"], prog_name="studio-recorder"
    )
    assert relative_key.exit_code == 2
    assert relative_key.stderr == (
        "studio-recorder: error: --signing-key-file must be an absolute path (got 'key')\n"
    )
