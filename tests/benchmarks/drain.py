"""The limit: a minimal trio-websocket client that subscribes and discards every frame.

Opens one connection per account in one process (as the recorder does), with the
recorder's connection settings, sends the subscribe request and receives
``--frames-per-account`` frames plus the ack and ``replay-complete`` on each,
keeping nothing. ``--in-runs`` reads as the recorder's sessions do (trio-websocket queues a
network read's messages in one go, and they are taken without a scheduler pass each:
:func:`recorder.connection.deliver_in_runs`, :func:`~recorder.connection.queued_messages`):
what the WebSocket layer allows when it is read that way; without it, stock
``get_message()``, the limit the issue-16 targets are measured against. Prints one JSON
line: the receipt time of the last frame
(``time.time_ns()``), frames received, and the process's CPU seconds.

Run by :mod:`tests.benchmarks.ingest` as ``python -m tests.benchmarks.drain``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import trio
from trio_websocket import open_websocket_url

from recorder.connection import (
    CONNECT_TIMEOUT_S,
    MAX_FRAME_BYTES,
    MESSAGE_QUEUE_SIZE,
    RECEIVE_BUFFER_BYTES,
    deliver_in_runs,
    next_message,
    queued_messages,
)


async def drain_account(
    url: str, account: str, expected: int, out: dict[str, int], in_runs: bool = False
) -> None:
    async with open_websocket_url(
        url,
        max_message_size=MAX_FRAME_BYTES,
        receive_buffer_size=RECEIVE_BUFFER_BYTES,
        message_queue_size=MESSAGE_QUEUE_SIZE,
        connect_timeout=CONNECT_TIMEOUT_S,
    ) as ws:
        subscribe = {
            "authorization": "bench",
            "payload": {"type": "subscribe-activity", "account_id": account},
        }
        await ws.send_message(json.dumps(subscribe))
        get = ws.get_message
        if in_runs:
            if not deliver_in_runs(ws):
                raise SystemExit(
                    "drain --in-runs: trio-websocket's queue moved (see recorder.connection)"
                )
            get = functools.partial(next_message, ws, queued_messages(ws))

        await get()  # the ack
        if not out["first_rx_ns"]:
            out["first_rx_ns"] = time.time_ns()
            out["cpu_at_first_ns"] = time.process_time_ns()
        for _ in range(expected - 1):
            await get()
        out["frames"] += expected
        out["last_rx_ns"] = max(out["last_rx_ns"], time.time_ns())
        out["cpu_at_last_ns"] = time.process_time_ns()


async def drain(
    url: str, accounts: list[str], per_account: int, in_runs: bool = False
) -> dict[str, int]:
    out = {"frames": 0, "first_rx_ns": 0, "last_rx_ns": 0, "cpu_at_first_ns": 0}
    async with trio.open_nursery() as nursery:
        for account in accounts:
            nursery.start_soon(drain_account, url, account, per_account + 2, out, in_runs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--accounts", required=True, help="comma-separated account ids")
    parser.add_argument("--frames-per-account", type=int, required=True)
    parser.add_argument("--in-runs", action="store_true", help="read as the recorder does")
    args = parser.parse_args(argv)
    result = trio.run(
        drain, args.url, args.accounts.split(","), args.frames_per_account, args.in_runs
    )
    cpu_ns = result.pop("cpu_at_last_ns") - result.pop("cpu_at_first_ns")
    print(json.dumps({**result, "cpu_s": round(cpu_ns / 1e9, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
