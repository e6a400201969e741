"""Security guarantees: secrets never leak, files are owner-only, configuration is checked.

The secrets scan runs the real ``studio-recorder run`` process (JSON logs, then text logs)
against the real simulator with faults injected (token endpoint errors that echo the
request, a rejected subscribe, auth expiry, clean and unclean drops), then looks for the
client secret and every access token the simulator issued in everything the project writes
or prints.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import trio.testing
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from queries.cli import cli as query_cli
from recorder import migrate
from recorder.appender import Appender
from recorder.auth import TokenSource, TokenUnavailable
from recorder.config import load_config
from recorder.envelope import decode_raw
from recorder.logs import JsonFormatter, TextFormatter
from recorder.ownership import SqliteFileLock
from recorder.records import FrameRecord, LogRecord
from recorder.schema import events
from recorder.simulator import SimConfig, SimEndpoints, Simulator
from recorder.store import open_engine

ROOT = Path(__file__).resolve().parent.parent
SECRET = "client-secret-7e3a9d1f"
A, B = "100000", "0042"


# -- a token endpoint front that fails the first requests, echoing what it was sent ----------


async def _read_http_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _answer(status: str, content_type: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class FlakyTokenFront:
    """Answers the first token requests with errors that echo the request (and so the
    client secret) in their bodies, then forwards requests to the real token endpoint."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.faults = [
            lambda req: _answer("500 Internal Server Error", "text/plain", b"boom: " + req),
            lambda req: _answer("200 OK", "text/html", b"<html>" + req + b"</html>"),
            lambda req: _answer(
                "200 OK", "application/json", json.dumps({"echo": req.decode()}).encode()
            ),
            lambda req: _answer("401 Unauthorized", "application/json", req.split(b"\r\n\r\n")[1]),
        ]
        self.failed = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            request = await _read_http_request(stream)
            if self.failed < len(self.faults):
                fault: Callable[[bytes], bytes] = self.faults[self.failed]
                self.failed += 1
                await stream.send_all(fault(request))
                return
            async with await trio.open_tcp_stream("127.0.0.1", self.target_port) as upstream:
                await upstream.send_all(request)
                while chunk := await upstream.receive_some(65536):
                    await stream.send_all(chunk)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def write_config(tmp_path: Path, ws_url: str, token_url: str) -> Path:
    (tmp_path / "client-secret").write_text(SECRET + "\n")
    (tmp_path / "client-secret").chmod(0o600)
    path = tmp_path / "recorder.toml"
    path.write_text(
        f'[studio]\nurl = "{ws_url}"\ntoken_url = "{token_url}"\nclient_id = "sim-client"\n'
        f'client_secret_file = "client-secret"\naccounts = ["{A}", "{B}"]\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        "[recorder]\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.3\nsubscribe_timeout_s = 5\n"
        '[metrics]\nlisten = ""\n'
    )
    path.chmod(0o600)
    return path


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}


async def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.02)


def subscribed(sim: Simulator, account: str) -> int:
    return sum(1 for s in sim.subscribes if s.account_id == account and s.accepted)


async def run_recorder_process(
    sim: Simulator, config: Path, log_format: str, faults: Callable[[], Any]
) -> str:
    """``studio-recorder run`` until ``faults()`` (async) returns, then SIGTERM; its stderr."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "recorder", "run", "--config", str(config),
         "--log-format", log_format, "--log-level", "DEBUG"],
        env=cli_env(), stderr=subprocess.PIPE,
    )  # fmt: skip
    stderr = bytearray()

    async def drain() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.receive_some():
            stderr.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await faults()
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    assert code == 0, stderr.decode()
    return stderr.decode()


def every_string(value: object) -> list[str]:
    """Every string inside ``value`` (nested JSON-like data), raw frames decoded too."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*every_string(k), *every_string(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in every_string(item)]
    return [] if value is None else [str(value)]


def decoded_raws(rows: list[dict[str, Any]]) -> list[str]:
    """The frames as received (base64-kept ones decoded), so an encoded secret is found too."""
    out = []
    for row in rows:
        if row.get("raw_kind") and row.get("raw") is not None:
            raw = decode_raw(row["raw_kind"], row["raw"])
            out.append(raw if isinstance(raw, str) else raw.decode("latin-1"))
    return out


def sqlite_strings(path: Path) -> list[str]:
    """Every value of every column of every table of the SQLite database, as text."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"events", "connection_log"} <= set(tables)
        found: list[str] = []
        for table in tables:
            cursor = con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor]
            found += every_string(rows)
            found += decoded_raws(rows)
        return found
    finally:
        con.close()


def assert_absent(secrets: set[str], where: str, texts: list[str] | str | bytes) -> None:
    if isinstance(texts, bytes):
        haystacks = [texts]
    else:
        haystacks = (
            [t.encode("utf-8", "surrogatepass") for t in texts]
            if isinstance(texts, list)
            else [texts.encode()]
        )
    for secret in secrets:
        needles = {secret.encode(), base64.b64encode(secret.encode())}
        for haystack in haystacks:
            for needle in needles:
                assert needle not in haystack, f"a secret leaked into {where}"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_secret_and_tokens_reach_no_log_exception_repr_row_file_export_or_output(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(accounts=(A, B), client_secret=SECRET, rate_per_s=40))
    engine = open_engine(f"sqlite:///{tmp_path}/store.db")
    migrate.upgrade(engine)
    engine.dispose()  # the recorder processes are the only users of the store
    snapshots: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:
        endpoints: SimEndpoints = await nursery.start(sim.serve)
        front = FlakyTokenFront(_port(endpoints.token_url))
        front_port = await nursery.start(front.serve)
        config = write_config(
            tmp_path, endpoints.ws_url, f"http://127.0.0.1:{front_port}/oauth/token"
        )

        async def first_run_faults() -> None:
            # The token endpoint fails four times (each echoing the request with the
            # secret), then the recorder subscribes both accounts.
            await wait_for(lambda: subscribed(sim, A) >= 1 and subscribed(sim, B) >= 1)
            assert front.failed == 4
            await wait_for(lambda: len(sim.sent_log(A)) >= 40)
            sim.reject_next_subscribes(1)  # rejected: the token is marked stale
            sim.drop_connections(A)
            await wait_for(lambda: subscribed(sim, A) >= 2)
            sim.expire_tokens()  # error-notice "Auth expired" + close on both accounts
            await wait_for(lambda: subscribed(sim, A) >= 3 and subscribed(sim, B) >= 2)
            sim.drop_connections(B, clean=False)  # no close frame
            await wait_for(lambda: subscribed(sim, B) >= 3)
            await wait_for(lambda: len(sim.sent_log(B)) >= 200)
            await trio.sleep(0.5)  # let the writer commit
            # The write-ahead log exists only while the recorder runs: scan it now.
            for path in tmp_path.glob("store.db*"):
                snapshots[path.name] = path.read_bytes()

        json_logs = await run_recorder_process(sim, config, "json", first_run_faults)

        async def second_run_faults() -> None:
            before = subscribed(sim, A)
            await wait_for(lambda: subscribed(sim, A) > before)
            sim.expire_tokens()
            await wait_for(lambda: subscribed(sim, A) > before + 1)
            sim.drop_connections(A, clean=False)
            await wait_for(lambda: subscribed(sim, A) > before + 2)

        text_logs = await run_recorder_process(sim, config, "text", second_run_faults)
        nursery.cancel_scope.cancel()

    tokens = {s.token for s in sim.subscribes}
    assert len(tokens) >= 4  # fresh tokens after rejection and expiry, in both runs
    secrets = {SECRET, *tokens}

    # The logs: real ones, of both formats; the faults did happen and were logged.
    for line in json_logs.splitlines():
        json.loads(line)
    assert "token endpoint answered HTTP 500" in json_logs
    assert "subscribe rejected" in json_logs
    assert "Auth expired" in json_logs
    assert "Auth expired" in text_logs
    assert_absent(secrets, "the JSON logs", json_logs)
    assert_absent(secrets, "the text logs", text_logs)

    # The store: every column of every table, the raw frames decoded, and the bytes of the
    # database file and its write-ahead log, as left by the recorder.
    database = tmp_path / "store.db"
    assert_absent(secrets, "the database rows", sqlite_strings(database))
    assert {"store.db", "store.db-wal", "store.db-shm", "store.db.lock"} <= set(snapshots)
    assert len(snapshots["store.db-wal"]) > 100_000  # the run's frames were in it
    for name, content in snapshots.items():
        assert_absent(secrets, f"{name} during the run", content)
    for path in tmp_path.glob("store.db*"):
        assert_absent(secrets, path.name, path.read_bytes())

    # The command lines that read the store (real processes).
    status = run("recorder", "status", "--config", str(config))
    status_json = run("recorder", "status", "--config", str(config), "--json")
    day = _trading_day(database)
    audit = run("queries", "audit", "--config", str(config), "--day", day, "--json")
    out = tmp_path / "export"
    export = run("queries", "export", "--config", str(config), "--day", day, "--out", str(out))
    for result in (status, status_json, audit, export):
        assert result.returncode == 0, result.stderr
        assert_absent(secrets, "command output", [result.stdout, result.stderr])
    assert json.loads(audit.stdout)["accounts"]
    assert "Auth expired" in audit.stdout

    # The export: the bytes of every file and every decoded value.
    parquet = sorted(out.rglob("*.parquet"))
    assert len(parquet) == 4  # two tables, two accounts
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        assert_absent(secrets, str(path), path.read_bytes())
    for path in parquet:
        table = pq.read_table(path)
        for index, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):  # as integers: no ns → datetime loss
                table = table.set_column(index, field.name, table.column(index).cast(pa.int64()))
        rows = table.to_pylist()
        assert rows
        assert_absent(secrets, str(path), every_string(rows) + decoded_raws(rows))


def _trading_day(database: Path) -> str:
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (day,) = con.execute("SELECT max(trading_day) FROM events").fetchone()
    finally:
        con.close()
    return str(day)


def run(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env=cli_env() if env is None else env, check=False,
    )  # fmt: skip


# -- secrets in reprs, exception messages and in-process logs of both formats ----------------


@pytest.mark.timeout(60)
async def test_reprs_exceptions_and_formatted_logs_never_show_the_secret_or_token(
    tmp_path: Path, recorder_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0))
    texts: list[str] = []
    async with trio.open_nursery() as nursery:
        endpoints: SimEndpoints = await nursery.start(sim.serve)
        front = FlakyTokenFront(_port(endpoints.token_url))
        front_port = await nursery.start(front.serve)
        config = write_config(
            tmp_path, endpoints.ws_url, f"http://127.0.0.1:{front_port}/oauth/token"
        )
        settings = load_config(config, env={})
        client_id, secret = settings.require_credentials()
        assert secret.reveal() == SECRET
        tokens = TokenSource(settings.studio.token_url, client_id, secret, settings.studio.audience)
        texts += [repr(settings), str(settings), repr(settings.studio), repr(secret), str(secret)]
        texts += [f"{secret}", f"{secret} {secret!r}", repr((client_id, secret))]
        with trio.fail_after(1000):  # virtual time: the backoff waits below
            for _ in front.faults:  # each fault answer echoes the request body with the secret
                with pytest.raises(TokenUnavailable) as info:
                    await tokens.get()
                texts += [str(info.value), repr(info.value)]
                texts += traceback.format_exception(info.value)
                await trio.sleep(120)  # past the backoff delay
            token = await tokens.get()
        nursery.cancel_scope.cancel()
    assert front.failed == 4
    assert token.value
    assert sim.tokens_issued == 1
    texts += [repr(token), str(token), repr(tokens), str(tokens)]
    assert any("HTTP 500" in t for t in texts)  # the faults did reach the token source
    assert any(r.name == "recorder.auth" for r in caplog.records)
    formatted = [JsonFormatter().format(r) for r in caplog.records]
    formatted += [TextFormatter().format(r) for r in caplog.records]
    assert formatted
    assert_absent({SECRET, token.value}, "a repr, an exception or a log line", texts + formatted)


# -- file modes ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_and_its_wal_shm_and_lock_files_are_owner_only_under_umask_022(
    tmp_path: Path,
) -> None:
    database = tmp_path / "store.db"
    previous = os.umask(0o022)
    try:
        engine = open_engine(f"sqlite:///{database}")
        migrate.upgrade(engine)
        lock = SqliteFileLock(database)
        lock.acquire()
        with engine.connect():  # an open connection keeps -wal and -shm in place
            Appender(engine).append([frame(A, 1)], [LogRecord("s", A, NOON_NS, "opened")])
            names = {p.name for p in tmp_path.iterdir()}
            assert {"store.db", "store.db-wal", "store.db-shm", "store.db.lock"} <= names
            for path in tmp_path.iterdir():
                assert _mode(path) == 0o600, (path.name, oct(_mode(path)))
        lock.release()
        engine.dispose()
    finally:
        os.umask(previous)


def test_cli_created_store_and_export_are_owner_only_under_umask_022(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # inherited by the processes
    try:
        url = f"sqlite:///{tmp_path}/cli.db"
        upgrade = run("recorder", "db", "upgrade", "--db", url)
        assert upgrade.returncode == 0, upgrade.stderr
        engine = open_engine(url)
        Appender(engine).append([frame(A, 1), frame(B, 2)])
        engine.dispose()
        out = tmp_path / "new" / "export"
        export = run("queries", "export", "--db", url, "--day", DAY, "--out", str(out))
        assert export.returncode == 0, export.stderr
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "cli.db") == 0o600
    created = [out.parent, out, *out.rglob("*")]
    assert len(created) > 10
    for path in created:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(_mode(path)))


# -- configuration: permission warnings, lazy secret, plain URLs -----------------------------


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(
        f'[studio]\naccounts = ["{A}"]\nclient_id = "c"\n{extra}'
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
    )
    return path


def test_config_readable_by_others_naming_a_secret_file_is_warned_about(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    config = _config(tmp_path, 'client_secret_file = "secret"\n')
    config.chmod(0o644)
    settings = load_config(config, env={})
    assert settings.warnings == (
        f"{config} is readable by group/others (mode 0644) and names a client_secret_file: "
        "restrict it with chmod 600",
    )
    migrate.upgrade(open_engine(f"sqlite:///{tmp_path}/store.db"))
    status = run("recorder", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert status.stderr.splitlines() == [f"studio-recorder: warning: {settings.warnings[0]}"]
    # studio-query never needs the secret: it does not nag (scheduled jobs stay quiet).
    gaps = run("queries", "gaps", "--config", str(config), "--day", DAY)
    assert gaps.returncode == 0, gaps.stderr
    assert gaps.stderr == ""
    # A systemd credential: only the service reads it, and the config must stay readable.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "secret").write_text(SECRET)
    (credentials / "secret").chmod(0o440)
    assert load_config(config, env={"CREDENTIALS_DIRECTORY": str(credentials)}).warnings == ()
    # Owner-only: no warning. Group-readable secret file: warned about too.
    config.chmod(0o600)
    assert load_config(config, env={}).warnings == ()
    secret_file.chmod(0o640)
    assert load_config(config, env={}).warnings == (
        f"{secret_file} ([studio] client_secret_file) is readable by group/others "
        "(mode 0640): restrict it with chmod 600",
    )
    # A readable config that names no secret file holds nothing to protect.
    plain = _config(tmp_path / "..", "")
    plain.chmod(0o644)
    assert load_config(plain, env={}).warnings == ()


@pytest.mark.parametrize("problem", ["missing", "unreadable"])
def test_queries_work_without_the_secret_file_and_run_names_it(
    tmp_path: Path, problem: str
) -> None:
    if problem == "unreadable" and os.geteuid() == 0:
        secret_file = tmp_path / "secret-dir"  # root reads any file: a directory cannot be read
        secret_file.mkdir(mode=0o700)
    else:
        secret_file = tmp_path / "secret"
        if problem == "unreadable":
            secret_file.write_text(SECRET)
            secret_file.chmod(0)
    config = _config(tmp_path, f'client_secret_file = "{secret_file.name}"\n')
    config.chmod(0o600)
    url = f"sqlite:///{tmp_path}/store.db"
    migrate.upgrade(open_engine(url))
    engine = open_engine(url)
    Appender(engine).append([frame(A, 1)])
    engine.dispose()
    commands = [
        ("recorder", "status"),
        ("queries", "gaps", "--day", DAY),
        ("queries", "export", "--day", DAY, "--out", str(tmp_path / "out")),
    ]
    if problem == "missing":
        commands += [
            ("recorder", "db", "current"),
            ("queries", "audit", "--day", DAY),
            ("queries", "verify"),
            ("queries", "sql", "--day", DAY, "SELECT count(*) AS n FROM events"),
        ]
    for module, *args in commands:
        result = run(module, *args, "--config", str(config))
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == ""
    result = run("recorder", "run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"studio-recorder: error: {config}: [studio] client_secret_file cannot be read "
        f"({secret_file}: "
    )


@pytest.mark.parametrize(
    ("key", "url", "command"),
    [
        ("url", "ws://studio.example.com/ws", ("recorder", "run")),
        ("url", "ws://10.1.2.3:80/ws", ("recorder", "status")),
        ("token_url", "http://auth.example.com/t", ("queries", "verify")),
        ("token_url", "http://[2001:db8::1]/t", ("recorder", "run")),
    ],
)
def test_cli_refuses_plain_urls_for_other_hosts_in_one_line(
    tmp_path: Path, key: str, url: str, command: tuple[str, str]
) -> None:
    config = _config(tmp_path, f'{key} = "{url}"\n')
    env = {**cli_env(), "STUDIO_CLIENT_SECRET": "x"}
    result = run(*command, "--config", str(config), env=env)
    assert result.returncode == 2, result.stderr
    scheme, secure = ("ws", "wss") if key == "url" else ("http", "https")
    prog = "studio-recorder" if command[0] == "recorder" else "studio-query"
    assert result.stderr.splitlines() == [
        f"{prog}: error: {config}: [studio] {key} uses {scheme}:// for a non-loopback host; "
        f"use {secure}:// ({url})"
    ]


# -- query inputs: bound parameters, never spliced; no path escapes ---------------------------

DAY = "2024-06-10"
NOON_NS = 1_718_035_200 * 10**9  # 2024-06-10T12:00:00-04:00
HOSTILE = [
    "' OR 1=1 --",
    '"; DROP TABLE events; --',
    "x') OR ('1'='1",
    "../../x",
    "a/b",
    "..",
    "~/x",
]


def frame(account: str, n: int) -> FrameRecord:
    import datetime as dt

    raw = json.dumps(
        {"timestamp": NOON_NS // 10**6 + n, "sequence": n,
         "payload": {"type": "trade-notice", "data": {"account_id": account, "trade_id": f"T{n}",
                     "order_id": "O1", "symbol": "AAPL", "side": "buy", "quantity": "1",
                     "price": "10.00", "running_position": str(n)}}}
    )  # fmt: skip
    return FrameRecord(
        account, f"s-{account}", NOON_NS + n * 10**6, NOON_NS // 10**6 + n, n,
        "trade-notice", dt.date(2024, 6, 10), False, "text", raw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("hostile") / "store.db"
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    migrate.upgrade(engine)
    accounts = [A, *HOSTILE, "nul\x00id"]
    appender = Appender(engine)
    for account in accounts:
        appender.append(
            [frame(account, n) for n in (1, 2, 3)],
            [LogRecord(f"s-{account}", account, NOON_NS, "opened"),
             LogRecord(f"s-{account}", account, NOON_NS + 1, "subscribed"),
             LogRecord(f"s-{account}", account, NOON_NS + 10**9, "closed", "shutdown")],
        )  # fmt: skip
    engine.dispose()
    return url


def _store_intact(url: str) -> None:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "connection_log"} <= tables
        assert con.execute("SELECT count(*) FROM events").fetchone() == (3 * (2 + len(HOSTILE)),)
    finally:
        con.close()


@pytest.mark.parametrize("account", HOSTILE)
def test_hostile_account_ids_are_parameters_in_every_query_command(
    hostile_store: str, account: str
) -> None:
    # In-process (the same click commands as the processes run), for speed.
    def query(*args: str) -> Result:
        return CliRunner().invoke(query_cli, [*args[:1], "--db", hostile_store, *args[1:]])

    selector = ("--account", account, "--json")
    gaps = query("gaps", "--day", DAY, *selector)
    audit = query("audit", "--day", DAY, *selector)
    reconcile = query("reconcile", "--day", DAY, *selector)
    verify = query("verify", *selector)
    sql = query(
        "sql", "--day", DAY, *selector,
        "SELECT DISTINCT account_id FROM events UNION SELECT DISTINCT account_id "
        "FROM connection_log",
    )  # fmt: skip
    for result in (gaps, audit, reconcile, verify, sql):
        assert result.exit_code == 0, (result.output, result.exception)
    assert [r["account_id"] for r in json.loads(sql.stdout)] == [account]
    for result in (gaps, audit, reconcile):
        report = json.loads(result.stdout)
        assert [a["account_id"] for a in report["accounts"]] == [account]
    assert [a["account_id"] for a in json.loads(verify.stdout)["accounts"]] == [account]
    assert json.loads(verify.stdout)["ok"] is True
    audited = json.loads(audit.stdout)["accounts"][0]
    assert (audited["frames"], audited["sessions"]) == (3, 1)  # its own rows, nobody else's
    _store_intact(hostile_store)


def test_hostile_account_ids_and_dates_cannot_escape_the_export_directory(
    hostile_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "a" / "b" / "out"
    for account in HOSTILE:
        result = run("queries", "export", "--db", hostile_store, "--day", DAY,
                     "--account", account, "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
    everything = run("queries", "export", "--db", hostile_store, "--day", DAY, "--out", str(out))
    assert everything.returncode == 0, everything.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written
    for path in written:
        assert path.resolve().is_relative_to(out.resolve()), path
    partitions = {p.name for p in (out / "events" / f"trading_day={DAY}").iterdir()}
    assert partitions == {
        "account_id=100000",
        "account_id=%27%20OR%201%3D1%20--",
        "account_id=%22%3B%20DROP%20TABLE%20events%3B%20--",
        "account_id=..%2F..%2Fx",
        "account_id=a%2Fb",
        "account_id=%2E%2E",
        "account_id=x%27%29%20OR%20%28%271%27%3D%271",
        "account_id=%7E%2Fx",
        "account_id=nul%00id",
    }
    manifest = json.loads((out / "manifest" / f"trading_day={DAY}.json").read_text())
    assert set(manifest["accounts"]) == {A, *HOSTILE, "nul\x00id"}
    # The export reads back with every id intact, and verifies.
    check = run("queries", "verify", "--from-export", str(out), "--json")
    assert check.returncode == 0, check.stderr
    assert {a["account_id"] for a in json.loads(check.stdout)["accounts"]} == set(
        manifest["accounts"]
    )
    _store_intact(hostile_store)


def test_hostile_dates_are_refused_in_one_line(hostile_store: str, tmp_path: Path) -> None:
    days = ["2024-06-10' OR 1=1 --", "2024-06-10; DROP TABLE events", "../../2024-06-10",
            "2024-06-10\n", "２０２４-06-10", "x"]  # fmt: skip
    commands = (
        "export",
        "gaps",
        "audit",
        "reconcile",
        "sql",
        "verify",
    )  # one parser; each command once
    for day, command in zip(days, commands, strict=True):
        extra = ["--out", str(tmp_path / "out")] if command == "export" else []
        extra += ["SELECT 1"] if command == "sql" else []
        result = run("queries", command, "--db", hostile_store, "--day", day, *extra)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert "expected YYYY-MM-DD" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
    _store_intact(hostile_store)


def test_every_test_the_readme_security_section_names_exists() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")}
    named = re.findall(r"tests/(test_\w+\.py)::(test_\w+)", section)
    assert len(named) > 20
    for file_name, test_name in named:
        assert f"def {test_name}(" in sources[file_name], f"{file_name}::{test_name}"
    everywhere = "".join(sources.values())
    for test_name in set(re.findall(r"`(test_\w+)`", section)):
        assert f"def {test_name}(" in everywhere, test_name


def test_hostile_account_ids_are_parameters_on_every_backend(engine: Engine) -> None:
    """The same through each store backend's own placeholders (``?`` / ``$n``)."""
    accounts = [A, "' OR 1=1 --", '"; DROP TABLE events; --']
    appender = Appender(engine)
    for account in accounts:
        appender.append(
            [frame(account, n) for n in (1, 2)],
            [LogRecord(f"s-{account}", account, NOON_NS, "opened")],
        )
    url = engine.url.render_as_string(hide_password=False)
    for account in accounts[1:]:
        for command in ("sql", "audit", "verify"):
            args = [command, "--db", url, "--account", account, "--json"]
            if command != "verify":
                args += ["--day", DAY]
            if command == "sql":
                args.append("SELECT account_id, count(*) AS n FROM events GROUP BY account_id")
            result = CliRunner().invoke(query_cli, args)
            assert result.exit_code == 0, (result.output, result.exception)
            document = json.loads(result.output)
            rows = document if command == "sql" else document["accounts"]
            assert [r["account_id"] for r in rows] == [account]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 6
