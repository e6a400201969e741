"""Prometheus metrics and the ``/healthz`` endpoint, served over HTTP from a thread.

Counters live in the recorder's plain in-memory state and are turned into
metrics only when scraped (:class:`StateCollector`), so recording a frame costs
no metric update. The HTTP server (the standard library's WSGI server with
prometheus-client's exposition) runs in a daemon thread, so a slow scraper never
touches the event loop.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .health import judge
from .state import RecorderState

log = logging.getLogger(__name__)

BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class StateCollector(Collector):
    """Reads :class:`RecorderState` at scrape time."""

    def __init__(self, state: RecorderState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        frames = CounterMetricFamily(
            "studio_recorder_frames",
            "Frames received, by account and message type "
            "(type unparseable: frames that did not parse)",
            labels=["account", "type"],
        )
        connected = GaugeMetricFamily(
            "studio_recorder_connected",
            "1 when the account's session is subscribed",
            labels=["account"],
        )
        reconnects = CounterMetricFamily(
            "studio_recorder_reconnects",
            "Sessions ended (or failed to open), by reason",
            labels=["account", "reason"],
        )
        last_frame = GaugeMetricFamily(
            "studio_recorder_last_frame_timestamp_seconds",
            "Receipt time of the account's last frame (Unix seconds)",
            labels=["account"],
        )
        gaps = CounterMetricFamily(
            "studio_recorder_sequence_gaps",
            "Holes seen in live sequence numbers",
            labels=["account"],
        )
        rejected = CounterMetricFamily(
            "studio_recorder_rejected_subscribes",
            "Subscribes answered with success: false",
            labels=["account"],
        )
        for account_id, account in state.accounts.items():
            for msg_type, count in list(account.frames_by_type.items()):
                frames.add_metric([account_id, msg_type or "unparseable"], count)
            connected.add_metric([account_id], 1.0 if account.subscribed else 0.0)
            for reason, count in list(account.reconnects_by_reason.items()):
                reconnects.add_metric([account_id, reason], count)
            if account.last_frame_ns is not None:
                last_frame.add_metric([account_id], account.last_frame_ns / 1e9)
            total_gaps = account.live_sequence_gaps_closed + account.live_sequence_gaps
            gaps.add_metric([account_id], total_gaps)
            rejected.add_metric([account_id], account.rejected_subscribes)
        refusing = GaugeMetricFamily(
            "studio_recorder_auth_refusing",
            "1 while the token endpoint refuses the credentials (HTTP 401/403)",
            labels=["account"],
        )
        refused = CounterMetricFamily(
            "studio_recorder_auth_refused",
            "Token requests refused for bad credentials (HTTP 401/403)",
            labels=["account"],
        )
        for account_id, account in state.accounts.items():
            refusing.add_metric([account_id], 1.0 if account.auth_refusing else 0.0)
            refused.add_metric([account_id], account.auth_refusals)
        yield from (frames, connected, reconnects, last_frame, gaps, rejected, refusing, refused)
        writer = state.writer
        queue = GaugeMetricFamily("studio_recorder_queue_depth", "Records waiting for the writer")
        queue.add_metric([], state.queue_depth())
        yield queue
        rows = CounterMetricFamily("studio_recorder_rows_written", "Event rows committed")
        rows.add_metric([], writer.rows_written)
        yield rows
        failing = GaugeMetricFamily(
            "studio_recorder_store_failing", "1 while store writes fail and are being retried"
        )
        failing.add_metric([], 1.0 if writer.failing else 0.0)
        yield failing
        protected = GaugeMetricFamily(
            "studio_recorder_store_append_only",
            "1 while every append-only trigger of the store is intact, 0 when one is missing",
        )
        protected.add_metric([], 0.0 if state.append_only_problems else 1.0)
        yield protected
        retries = CounterMetricFamily("studio_recorder_store_retries", "Failed store writes")
        retries.add_metric([], writer.retries)
        yield retries
        signed = CounterMetricFamily(
            "studio_recorder_checkpoints", "Signed checkpoints committed (0: not attested)"
        )
        signed.add_metric([], writer.checkpoints)
        yield signed
        copies = CounterMetricFamily(
            "studio_recorder_checkpoint_copy_failures",
            "Failed attempts to copy checkpoint notes to [signing] checkpoint_dir",
        )
        copies.add_metric([], writer.checkpoint_copy_failures)
        yield copies


def build_registry(state: RecorderState) -> tuple[CollectorRegistry, Histogram]:
    """A registry exposing ``state``, and the batch-duration histogram the writer feeds."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(state))
    batch_seconds = Histogram(
        "studio_recorder_write_batch_seconds",
        "Time to commit one batch, retries included",
        buckets=BATCH_SECONDS_BUCKETS,
        registry=registry,
    )
    return registry, batch_seconds


def wsgi_app(registry: CollectorRegistry, state: RecorderState) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            health = judge(state, time.monotonic())
            body = json.dumps(health.as_dict()).encode()
            status = "200 OK" if health.ok else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        body = b"not found: try /metrics or /healthz\n"
        start_response(
            "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, state: RecorderState):
        server_class = _Server6 if ":" in host else WSGIServer
        self._server = make_server(
            host,
            port,
            wsgi_app(registry, state),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="metrics",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()
        log.info(
            "metrics and health on http://%s:%d/",
            self.host,
            self.port,
            extra={"event": "metrics-listening"},
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
