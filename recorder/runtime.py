"""The recorder service: one writer and one supervised task per account, in one nursery.

:func:`run_recorder` opens the store, checks its schema, starts the writer and
every account's supervisor, and runs until :meth:`Recorder.shutdown` (SIGTERM or
SIGINT from the CLI). Shutdown stops reading, closes every connection and
records its ``closed`` row, lets the writer commit every frame read before
shutdown began, and returns.
"""

from __future__ import annotations

import logging
import random
import signal
import ssl
from dataclasses import dataclass, field
from typing import Final

import trio
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import migrate, storemeta
from .auth import TokenSource
from .backoff import Backoff
from .config import Settings
from .connection import Connect, default_connect
from .context import AccountContext, SessionSettings, Sink
from .dberrors import db_error_line
from .errors import RecorderError, first_leaf
from .metrics import MetricsServer, build_registry
from .ownership import Ownership, ownership_for
from .recordqueue import RecordQueue
from .state import RecorderState
from .store import open_engine
from .supervisor import supervise_account
from .systemd import Notifier, notify_systemd
from .tradingday import TradingDayCache
from .writer import Writer, appender_for
from .writerprocess import WriterFailed, WriterProcess, split_queue

log = logging.getLogger(__name__)

#: How often a running recorder checks that the store's append-only triggers are intact.
APPEND_ONLY_CHECK_S: Final = 60.0
#: How long shutdown waits for the writer to commit what was read.
SHUTDOWN_WRITER_GRACE_S: Final = 30.0


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context: the system's CAs plus ``[studio] ca_file`` when set."""
    context = ssl.create_default_context()
    if settings.studio.ca_file is not None:
        context.load_verify_locations(cafile=str(settings.studio.ca_file))
    return context


def token_source_for(settings: Settings, ssl_context: ssl.SSLContext) -> TokenSource:
    client_id, secret = settings.require_credentials()
    r = settings.recorder
    return TokenSource(
        settings.studio.token_url,
        client_id,
        secret,
        settings.studio.audience,
        ssl_context=ssl_context,
        backoff=Backoff(r.backoff_initial_s, r.backoff_max_s),
    )


@dataclass
class Recorder:
    """Handle on a running recorder (given to ``task_status.started``)."""

    state: RecorderState
    tokens: TokenSource
    shutdown_requested: trio.Event = field(default_factory=trio.Event)
    all_attempted: trio.Event = field(default_factory=trio.Event)
    metrics_port: int | None = None
    ownership: Ownership = field(default_factory=Ownership)

    def shutdown(self) -> None:
        """Stop reading, close every connection, commit what was read, then return."""
        self.state.shutting_down = True
        self.shutdown_requested.set()


async def run_recorder(
    settings: Settings,
    *,
    engine: Engine | None = None,
    tokens: TokenSource | None = None,
    connect: Connect | None = None,
    handle_signals: bool = False,
    notifier: Notifier | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record every configured account until shut down.

    Raises StoreError when the store is missing or not migrated, ConfigError when
    credentials are missing. Collaborators (engine, token source, connect
    function) can be passed in; by default they come from ``settings``.
    """
    tls = ssl_context_for(settings)
    tokens = tokens or token_source_for(settings, tls)
    connect = connect or default_connect(tls)
    if engine is None:
        engine = open_engine(settings.store.url, must_exist=True)
    await trio.to_thread.run_sync(migrate.require_schema, engine)
    await trio.to_thread.run_sync(_claim_zone, engine, settings)
    signer = settings.require_signer()  # a key that cannot be read stops us here

    r = settings.recorder
    state = RecorderState.for_accounts(settings.studio.accounts)
    in_process = r.writer == "thread"
    capacity, window = (r.queue_max_frames, 0) if in_process else split_queue(r.queue_max_frames)
    queue = RecordQueue(capacity)
    registry, batch_seconds = build_registry(state)
    ownership, file_lock = ownership_for(engine)
    if file_lock is not None:
        file_lock.acquire()
    writer: Writer | WriterProcess | None = None
    try:
        if in_process:
            appender = await trio.to_thread.run_sync(appender_for, settings, signer, engine)
            writer = Writer.for_settings(
                settings, appender, queue, state.writer, on_batch=batch_seconds.observe
            )
            state.queue_depth = queue.__len__
        else:
            lock_fd = None if file_lock is None else file_lock.fileno()
            writer = WriterProcess(
                settings,
                queue,
                state.writer,
                window=window,
                on_batch=batch_seconds.observe,
                inherit_fds=() if lock_fd is None else (lock_fd,),
            )
            await writer.start()
            process = writer
            state.queue_depth = lambda: len(queue) + process.in_flight
        state.queue_capacity = r.queue_max_frames
        metrics = start_metrics(settings, registry, state)
    except BaseException:
        with trio.CancelScope(shield=True):
            if isinstance(writer, WriterProcess):
                await writer.aclose()
        if file_lock is not None:
            file_lock.release()
        raise
    port = metrics.port if metrics else None
    recorder = Recorder(state, tokens, metrics_port=port, ownership=ownership)
    accounts = _account_contexts(settings, recorder, connect, queue, rng)
    try:
        await _run(
            recorder,
            writer,
            queue,
            accounts,
            engine=engine,
            handle_signals=handle_signals,
            notifier=notifier,
            task_status=task_status,
        )
    except BaseExceptionGroup as group:
        # The writer process died or failed: that one line is the recorder's error (unless
        # something else failed as well: then every error shows).
        failed, rest = group.split(WriterFailed)
        if failed is None or rest is not None:
            raise
        raise first_leaf(failed) from None
    finally:
        with trio.CancelScope(shield=True):
            if isinstance(writer, WriterProcess):
                await writer.aclose()
            await ownership.close()
            if metrics is not None:
                await trio.to_thread.run_sync(metrics.stop)
        if file_lock is not None:
            file_lock.release()
    log.info(
        "stopped: %d frames written",
        state.writer.rows_written,
        extra={"event": "stopped", "rows_written": state.writer.rows_written},
    )


def start_metrics(
    settings: Settings, registry: CollectorRegistry, state: RecorderState
) -> MetricsServer | None:
    """Start ``/metrics`` and ``/healthz`` when ``[metrics] listen`` is set."""
    address = settings.metrics.address
    if address is None:
        return None
    try:
        server = MetricsServer(address[0], address[1], registry, state)
    except OSError as exc:
        raise RecorderError(
            f"cannot listen on [metrics] listen = {settings.metrics.listen!r}: "
            f"{exc.strerror or exc}"
        ) from None
    server.start()
    return server


def _account_contexts(
    settings: Settings,
    recorder: Recorder,
    connect: Connect,
    sink: Sink,
    rng: random.Random | None,
) -> list[AccountContext]:
    """One context per configured account, in configuration order."""
    r = settings.recorder
    session = SessionSettings(settings.studio.url, r.subscribe_timeout_s, r.liveness_timeout_s)
    return [
        AccountContext(
            account=recorder.state.accounts[account_id],
            session=session,
            tokens=recorder.tokens,
            sink=sink,
            trading_day=TradingDayCache(r.tz),
            connect=connect,
            shutdown=recorder.shutdown_requested,
            backoff=Backoff(r.backoff_initial_s, r.backoff_max_s, rng),
            ownership=recorder.ownership,
        )
        for account_id in settings.studio.accounts
    ]


async def _run(
    recorder: Recorder,
    writer: Writer | WriterProcess,
    queue: RecordQueue,
    accounts: list[AccountContext],
    *,
    engine: Engine,
    handle_signals: bool,
    notifier: Notifier | None,
    task_status: trio.TaskStatus[Recorder],
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write, writer, queue, name="writer")
        nursery.start_soon(_watch_append_only, engine, recorder.state, name="append-only-watch")
        if handle_signals:
            nursery.start_soon(_shutdown_on_signal, recorder, name="signals")
        if notifier is not None and notifier.enabled:
            nursery.start_soon(
                notify_systemd,
                recorder.state,
                notifier,
                recorder.all_attempted,
                recorder.shutdown_requested,
                name="systemd",
            )
        reading = trio.CancelScope()
        nursery.start_soon(_cancel_on_shutdown, recorder, reading, name="shutdown-watch")
        # A lost ownership lock sets the account's Ownership.lost() event: its supervisor
        # stops the session.
        nursery.start_soon(recorder.ownership.watch, name="ownership-watch")
        with reading:
            # ``queue`` is every account's sink: closed once they all stopped, it tells the
            # writer that nothing more will come.
            async with queue, trio.open_nursery() as supervisors:
                for context in accounts:
                    supervisors.start_soon(
                        supervise_account, context, name=f"account {context.account.account_id}"
                    )
                log.info(
                    "recording %d accounts",
                    len(accounts),
                    extra={
                        "event": "started",
                        "accounts": [context.account.account_id for context in accounts],
                    },
                )
                task_status.started(recorder)
                for context in accounts:
                    await context.first_attempt.wait()
                recorder.all_attempted.set()
        # Reading has stopped and every sender is closed: the writer drains and returns.
        with trio.move_on_after(SHUTDOWN_WRITER_GRACE_S) as grace:
            await writer.done.wait()
        if grace.cancelled_caught:
            log.error(
                "shutdown: the writer did not finish within %g s; frames still queued "
                "are lost (the next day replay re-delivers sequenced ones)",
                SHUTDOWN_WRITER_GRACE_S,
            )
        nursery.cancel_scope.cancel()


async def _write(writer: Writer | WriterProcess, queue: RecordQueue) -> None:
    """Run the writer; if it fails, the sessions must not wait for it (they would hold the
    recorder up, shielded, recording their ``closed`` rows into a queue nobody empties)."""
    try:
        await writer.run()
    except BaseException:
        queue.consumer_gone()
        raise


def _claim_zone(engine: Engine, settings: Settings) -> None:
    """Refuse (ConfigError) a store recorded in another trading-day zone; record ours in a
    store that has none yet — unless the store cannot be written now (a locked or failing
    store must not stop the recorder from starting: the writer holds and retries frames,
    and the next start records the zone)."""
    where = str(settings.path or "the configuration")
    try:
        storemeta.claim_zone(engine, settings.recorder.trading_day_timezone, where)
    except SQLAlchemyError as exc:
        log.warning(
            "cannot record the trading-day time zone in the store now (%s); the next start will",
            db_error_line(exc),
            extra={"event": "zone-not-recorded"},
        )


async def _watch_append_only(engine: Engine, state: RecorderState) -> None:
    """Check the append-only triggers at start and every :data:`APPEND_ONLY_CHECK_S`: a store
    whose protection was removed is reported (log, ``/healthz``, metric), never ignored."""
    said: list[str] | None = []
    while True:
        try:
            wrong = await trio.to_thread.run_sync(migrate.append_only_problems, engine)
        except SQLAlchemyError:  # the store is unreachable: the writer reports that
            wrong = None
        if wrong is not None:
            state.append_only_problems = [str(p) for p in wrong]
            if state.append_only_problems != said:
                said = state.append_only_problems
                if said:
                    log.error(
                        "%s",
                        migrate.append_only_broken(wrong),
                        extra={"event": "append-only-broken"},
                    )
        await trio.sleep(APPEND_ONLY_CHECK_S)


async def _cancel_on_shutdown(recorder: Recorder, reading: trio.CancelScope) -> None:
    await recorder.shutdown_requested.wait()
    log.info(
        "shutting down: closing connections, committing what was read", extra={"event": "stopping"}
    )
    reading.cancel()


async def _shutdown_on_signal(recorder: Recorder) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name, extra={"event": "signal"})
            recorder.shutdown()
