"""Secrets never leak: the client secret and the access tokens appear nowhere.

The scan runs the real ``studio-recorder run`` process (JSON logs, then text logs) against
the real simulator with faults injected (token endpoint errors that echo the request, a
rejected subscribe, auth expiry, clean and unclean drops), then looks for the client secret
and every access token the simulator issued in everything the project writes or prints.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import trio.testing

from recorder import migrate
from recorder.auth import TokenSource, TokenUnavailable
from recorder.config import load_config
from recorder.envelope import decode_raw
from recorder.logs import JsonFormatter, TextFormatter
from recorder.signing import write_new_key
from recorder.simulator import SimConfig, SimEndpoints, Simulator
from recorder.store import open_engine
from tests.support.cli import cli_env, run
from tests.support.config import SECRET, write_config
from tests.support.frames import A, B
from tests.support.processes import port_of, recorder_process
from tests.support.waiting import wait_until

wait_for = functools.partial(wait_until, timeout_s=30, poll_s=0.02)

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


def secret_file_config(tmp_path: Path, ws_url: str, token_url: str) -> Path:
    """An owner-only config naming an owner-only client secret file and signing key (a fresh
    one, if there is none yet), quick reconnects."""
    (tmp_path / "client-secret").write_text(SECRET + "\n")
    (tmp_path / "client-secret").chmod(0o600)
    if not (tmp_path / "signing-key").exists():
        write_new_key(tmp_path / "signing-key")
    verifier = (tmp_path / "signing-key.pub").read_text().strip()
    path = write_config(
        tmp_path / "recorder.toml", [A, B], f"sqlite:///{tmp_path}/store.db",
        url=ws_url, token_url=token_url, client_secret_file="client-secret",
        recorder={"backoff_initial_s": 0.05, "backoff_max_s": 0.3, "subscribe_timeout_s": 5},
        signing={"key_file": "signing-key", "checkpoint_dir": "checkpoints",
                 "checkpoint_interval_s": 1, "public_keys": [verifier]},
    )  # fmt: skip
    path.chmod(0o600)
    return path


def subscribed(sim: Simulator, account: str) -> int:
    return sum(1 for s in sim.subscribes if s.account_id == account and s.accepted)


async def run_recorder_process(
    sim: Simulator, config: Path, log_format: str, faults: Callable[[], Any]
) -> str:
    """``studio-recorder run`` until ``faults()`` (async) returns, then SIGTERM; its stderr."""
    args = ("--log-format", log_format, "--log-level", "DEBUG")
    log = config.parent / f"recorder-{log_format}.log"
    async with recorder_process(config, log, env=cli_env(), args=args) as process:
        await faults()
        code = await process.terminate(timeout_s=20)
    stderr = process.log_text()
    assert code == 0, stderr
    return stderr


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
        front = FlakyTokenFront(port_of(endpoints.token_url))
        front_port = await nursery.start(front.serve)
        config = secret_file_config(
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
    private_key = (tmp_path / "signing-key").read_text().strip()
    encoded_seed = private_key.split("+", 4)[4]
    seed = base64.b64decode(encoded_seed)[1:]
    secrets = {SECRET, *tokens, private_key, encoded_seed, seed.hex()}

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
        assert seed not in path.read_bytes()
    copies = sorted((tmp_path / "checkpoints").glob("*.notes"))
    assert copies  # the run signed, and copied its notes
    for path in copies:
        assert_absent(secrets, str(path), path.read_bytes())

    # The command lines that read the store (real processes).
    verify = run("queries", "verify", "--config", str(config))
    assert "attested" in verify.stdout
    status = run("recorder", "status", "--config", str(config))
    status_json = run("recorder", "status", "--config", str(config), "--json")
    day = _trading_day(database)
    audit = run("queries", "audit", "--config", str(config), "--day", day, "--json")
    out = tmp_path / "export"
    export = run("queries", "export", "--config", str(config), "--day", day, "--out", str(out))
    for result in (verify, status, status_json, audit, export):
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
        front = FlakyTokenFront(port_of(endpoints.token_url))
        front_port = await nursery.start(front.serve)
        config = secret_file_config(
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
