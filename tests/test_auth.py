"""The token source against real HTTP endpoints on loopback (the simulator's, and bad ones)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from recorder.auth import TokenSource, TokenUnavailable
from recorder.backoff import Backoff
from recorder.credentials import Secret
from recorder.simulator import SimConfig, Simulator

AUDIENCE = "https://api.clearstreet.io"


async def test_one_request_for_many_concurrent_callers_and_per_stale_token(
    recorder_clock: trio.testing.MockClock,
) -> None:
    sim = Simulator(SimConfig(accounts=("1",), client_secret="s3"))
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(sim.serve)
        tokens = TokenSource(endpoints.token_url, "sim-client", Secret("s3"), AUDIENCE)
        got = []

        async def fetch() -> None:
            got.append(await tokens.get())

        async with trio.open_nursery() as callers:
            for _ in range(5):
                callers.start_soon(fetch)
        assert sim.token_requests == 1
        assert len({id(t) for t in got}) == 1
        stale = got[0]
        for _ in range(5):  # five accounts report the same stale token
            tokens.mark_stale(stale)
        fresh = await tokens.get()
        tokens.mark_stale(stale)  # a late report about the old token changes nothing
        assert await tokens.get() is fresh
        assert sim.token_requests == 2
        assert fresh.value != stale.value
        assert stale.value not in repr(stale)
        assert "s3" not in repr(tokens)
        nursery.cancel_scope.cancel()


async def test_refreshes_ahead_of_expiry(recorder_clock: trio.testing.MockClock) -> None:
    sim = Simulator(
        SimConfig(accounts=("1",), client_secret="s3", token_lifetime_s=1000, rate_per_s=0)
    )
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(sim.serve)
        tokens = TokenSource(endpoints.token_url, "sim-client", Secret("s3"), AUDIENCE)
        first = await tokens.get()
        await trio.sleep(850)
        assert await tokens.get() is first
        await trio.sleep(100)  # 950 s: within the refresh margin (10 % of the lifetime)
        assert await tokens.get() is not first
        assert sim.tokens_issued == 2
        nursery.cancel_scope.cancel()


async def serve_http(status: int, body: bytes, task_status: trio.TaskStatus[str]) -> None:
    """A minimal HTTP server answering every request with ``status`` and ``body``."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        await stream.send_all(head.encode() + body)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(f"http://127.0.0.1:{port}/oauth/token")


async def expect_unavailable(url: str, fragment: str) -> TokenSource:
    tokens = TokenSource(url, "c", Secret("very-secret"), AUDIENCE, backoff=Backoff(5, 60))
    with trio.fail_after(30), pytest.raises(TokenUnavailable, match=fragment) as info:
        await tokens.get()
    assert "very-secret" not in str(info.value)
    return tokens


async def test_garbage_and_errors_are_token_unavailable_and_retries_wait() -> None:
    async with trio.open_nursery() as nursery:
        for status, body, fragment in [
            (200, b"<html>not json</html>", "not JSON"),
            (200, b'{"token": "x"}', "no access_token"),
            (200, b'{"access_token": "x", "expires_in": -5}', "expires_in"),
            (200, b"[1]", "not an object"),
            (503, b"busy", "HTTP 503"),
        ]:
            url = await nursery.start(serve_http, status, body)
            tokens = await expect_unavailable(url, fragment)
            assert tokens.requests == 1
            # Failed recently: no new request before the backoff delay, however many ask.
            for _ in range(3):
                with pytest.raises(TokenUnavailable, match="failed recently"):
                    await tokens.get()
            assert tokens.requests == 1
        nursery.cancel_scope.cancel()


async def test_endpoint_down_is_token_unavailable() -> None:
    with trio.socket.socket() as probe:  # a port nobody listens on
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await expect_unavailable(f"http://127.0.0.1:{port}/oauth/token", "ConnectError")


async def test_slow_endpoint_times_out(recorder_clock: trio.testing.MockClock) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, silent, listeners)
        tokens = TokenSource(
            f"http://127.0.0.1:{port}/t", "c", Secret("x"), AUDIENCE, request_timeout_s=2
        )
        started = trio.current_time()
        with pytest.raises(TokenUnavailable, match="Timeout"):
            await tokens.get()
        assert 2 <= trio.current_time() - started < 10
        nursery.cancel_scope.cancel()


async def test_refused_credentials_are_an_error_retried_at_the_longest_backoff(
    tmp_path: Path, recorder_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    from recorder.health import judge
    from recorder.metrics import build_registry
    from recorder.simulator import SimConfig
    from tests.support.config import SECRET
    from tests.support.recording import start

    account = "100000"
    wrong = SimConfig(accounts=(account,), client_secret="not-" + SECRET)  # answers HTTP 401
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(account,), sim_config=wrong,
                          backoff_initial_s=0.2, backoff_max_s=5)  # fmt: skip
        started = trio.current_time()
        await trio.sleep(17)
        elapsed = trio.current_time() - started
        state = run.recorder.state
        health = judge(state, 0.0)
        registry, _ = build_registry(state)
        requests = run.sim.token_requests
        await run.stop()
    # Not the short interval of an outage (0.2 s, doubling): once every backoff_max_s.
    assert int(elapsed // 5) <= requests <= 1 + int(elapsed // 5)
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "credentials-refused"]
    assert refusals
    assert all(r.levelno == logging.ERROR for r in refusals)
    assert "refused the credentials of client 'sim-client' (HTTP 401)" in refusals[0].getMessage()
    assert not health.ok
    assert any("refused the credentials of client 'sim-client'" in r for r in health.reasons)
    labels = {"account": account}
    assert registry.get_sample_value("studio_recorder_auth_refusing", labels) == 1.0
    assert registry.get_sample_value("studio_recorder_auth_refused_total", labels) == requests
    assert SECRET not in caplog.text
    assert run.sim.tokens_issued == 0
