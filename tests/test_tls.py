"""TLS: certificates are verified; a private CA is trusted only when ``[studio] ca_file`` names it.

A real TLS terminator (trustme certificate, ``trio.SSLListener``) sits in front of the real
simulator, so the recorder speaks wss:// and https:// to it exactly as to Studio.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from recorder.auth import TokenSource, TokenUnavailable
from recorder.chain import verify_chain
from recorder.config import Settings
from recorder.connection import TlsHandshakeError, check_tls
from recorder.credentials import Secret
from recorder.health import judge
from recorder.runtime import Recorder, run_recorder, ssl_context_for
from recorder.schema import events
from recorder.simulator import SimConfig, SimEndpoints, Simulator
from recorder.simulator.config import WS_PATH
from recorder.simulator.tokens import TOKEN_PATH
from tests.support import stores
from tests.support.config import SECRET, settings_for
from tests.support.processes import port_of

A = "100000"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


async def _pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    try:
        while chunk := await source.receive_some(65536):
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _terminate(stream: trio.SSLStream[trio.SocketStream], target_port: int) -> None:
    try:
        await stream.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(stream)  # the client refused our certificate
        return
    try:
        upstream = await trio.open_tcp_stream("127.0.0.1", target_port)
    except OSError:
        await trio.aclose_forcefully(stream)
        return
    try:
        async with trio.open_nursery() as nursery:

            async def one_way(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
                await _pump(a, b)
                nursery.cancel_scope.cancel()  # one side ended: end both

            nursery.start_soon(one_way, stream, upstream)
            nursery.start_soon(one_way, upstream, stream)
    finally:
        await trio.aclose_forcefully(upstream)
        await trio.aclose_forcefully(stream)


async def tls_terminator(
    context: ssl.SSLContext,
    target_port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve TLS on a free loopback port, forwarding the plain bytes to ``target_port``."""
    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    port = listeners[0].transport_listener.socket.getsockname()[1]

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await _terminate(stream, target_port)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(port)


def tls_settings(
    tmp_path: Path, ws_url: str, token_url: str, ca_file: Path | None, **recorder: Any
) -> Settings:
    """Settings for the recorder behind the TLS terminator, trusting ``ca_file`` if given."""
    studio = {} if ca_file is None else {"ca_file": str(ca_file)}
    return settings_for(
        tmp_path, [A], f"sqlite:///{tmp_path}/store.db", url=ws_url, token_url=token_url,
        recorder={"backoff_initial_s": 1, "backoff_max_s": 60, "writer": "thread", **recorder},
        **studio,
    )  # fmt: skip


async def record_through_tls(
    tmp_path: Path,
    server_context: ssl.SSLContext,
    ca_file: Path | None,
    until: Any,
    *,
    tls_tokens: bool = False,
) -> tuple[Simulator, Recorder, list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the simulator behind TLS and the recorder against it until ``until(sim, recorder)``."""
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=5))
    engine = stores.migrated(f"sqlite:///{tmp_path}/store.db")
    async with trio.open_nursery() as nursery:
        endpoints: SimEndpoints = await nursery.start(sim.serve)
        ws_port = await nursery.start(tls_terminator, server_context, port_of(endpoints.ws_url))
        token_url = endpoints.token_url
        if tls_tokens:
            token_port = await nursery.start(
                tls_terminator, server_context, port_of(endpoints.token_url)
            )
            token_url = f"https://127.0.0.1:{token_port}{TOKEN_PATH}"
        settings = tls_settings(tmp_path, f"wss://127.0.0.1:{ws_port}{WS_PATH}", token_url, ca_file)
        done = trio.Event()

        async def record(task_status: trio.TaskStatus[Recorder]) -> None:
            try:
                await run_recorder(
                    settings, engine=engine, rng=random.Random(3), task_status=task_status
                )
            finally:
                done.set()

        recorder: Recorder = await nursery.start(record)
        with trio.fail_after(300):
            while not until(sim, recorder):
                await trio.sleep(0.25)
        recorder.shutdown()
        with trio.fail_after(60):
            await done.wait()
        nursery.cancel_scope.cancel()
    rows, log = stores.rows(engine, events), stores.log(engine)
    engine.dispose()
    return sim, recorder, rows, log


@pytest.mark.timeout(60)
async def test_untrusted_certificate_is_refused_with_its_reason_and_retried_with_backoff(
    tmp_path: Path,
    server_context: ssl.SSLContext,
    recorder_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    started = trio.current_time()

    def five_failures(_sim: Simulator, recorder: Recorder) -> bool:
        return recorder.state.accounts[A].reconnects >= 5

    sim, recorder, rows, log = await record_through_tls(
        tmp_path, server_context, None, five_failures
    )
    # Nothing was sent to the server: no subscribe, so the token never left the process.
    assert sim.subscribes == []
    assert rows == []
    assert log == []  # no session was opened
    account = recorder.state.accounts[A]
    assert account.reconnects_by_reason["connect-failed"] >= 5
    assert account.last_error is not None
    assert account.last_error.startswith("TlsHandshakeError: TLS handshake with 127.0.0.1:")
    assert "certificate verify failed" in account.last_error
    assert "ca_file" in account.last_error
    health = judge(recorder.state, 0.0)
    assert not health.ok
    assert any("certificate verify failed" in reason for reason in health.reasons)
    failures = [r for r in caplog.records if getattr(r, "event", None) == "connect-failed"]
    assert len(failures) >= 5
    assert all("certificate verify failed" in r.getMessage() for r in failures)
    delays = [float(re.findall(r"retrying in ([\d.]+) s", r.getMessage())[0]) for r in failures]
    assert delays[3] > delays[0]  # backoff grows: 1, 2, 4, 8 s (with jitter)
    # Each failure is immediate, not a connect timeout (trio-websocket#199): the five
    # attempts take the backoff delays and nothing more.
    assert trio.current_time() - started < sum(delays) + 5


@pytest.mark.timeout(60)
async def test_trusted_private_ca_records_frames(
    tmp_path: Path,
    server_context: ssl.SSLContext,
    ca_file: Path,
    recorder_clock: trio.testing.MockClock,
) -> None:
    def recorded(sim: Simulator, recorder: Recorder) -> bool:
        return recorder.state.accounts[A].frames >= 20

    sim, _recorder, rows, log = await record_through_tls(
        tmp_path, server_context, ca_file, recorded, tls_tokens=True
    )
    assert len(rows) >= 20
    assert [r["raw"] for r in rows] == sim.sent_log(A)[: len(rows)]
    assert verify_chain(rows)[0] is None
    assert [r["event"] for r in log][:3] == ["opened", "subscribed", "replay-complete"]


@pytest.mark.timeout(30)
async def test_check_tls_fails_fast_with_the_reason_or_passes_with_the_ca(
    server_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tls_terminator, server_context, 9)  # never forwarded
        url = f"wss://127.0.0.1:{port}/studio/v2/ws"
        with trio.fail_after(5):
            with pytest.raises(TlsHandshakeError, match="certificate verify failed"):
                await check_tls(url, ssl.create_default_context())
            with pytest.raises(TlsHandshakeError, match="certificate verify failed"):
                await check_tls(url, None)  # the system's CAs only
            # The certificate names 127.0.0.1 and localhost, not another host.
            trusting = ssl.create_default_context()
            ca.configure_trust(trusting)
            await check_tls(url, trusting)
            await check_tls(f"wss://localhost:{port}/x", trusting)
        # A trusted certificate for another name is refused all the same.
        other = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("studio.example").configure_cert(other)
        other_port = await nursery.start(tls_terminator, other, 9)
        with trio.fail_after(5), pytest.raises(TlsHandshakeError, match="mismatch"):
            await check_tls(f"wss://127.0.0.1:{other_port}/x", trusting)
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(30)
async def test_token_endpoint_certificate_is_verified_and_ca_file_trusts_it(
    tmp_path: Path, server_context: ssl.SSLContext, ca_file: Path
) -> None:
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0))
    async with trio.open_nursery() as nursery:
        endpoints: SimEndpoints = await nursery.start(sim.serve)
        port = await nursery.start(tls_terminator, server_context, port_of(endpoints.token_url))
        token_url = f"https://127.0.0.1:{port}{TOKEN_PATH}"
        with trio.fail_after(20):
            for trusted in (False, True):
                settings = tls_settings(
                    tmp_path, "wss://127.0.0.1:1/ws", token_url, ca_file if trusted else None
                )
                tokens = TokenSource(
                    settings.studio.token_url,
                    "sim-client",
                    Secret(SECRET),
                    settings.studio.audience,
                    ssl_context=ssl_context_for(settings),
                )
                if trusted:
                    token = await tokens.get()
                    assert token.generation == 1
                else:
                    with pytest.raises(TokenUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                        await tokens.get()
        nursery.cancel_scope.cancel()
    assert sim.tokens_issued == 1  # only the trusting client reached the endpoint
