"""Handing records to another process: what it would cost the recorder's event loop.

A design measurement for issue 16 (the writer in its own process). Batches of
``FrameRecord`` are encoded with msgspec's MessagePack (no pickling of per-frame objects)
and written, length-prefixed, to a socket pair; a child process reads, decodes and
rebuilds them. Printed per frame: the sender's CPU (what the event loop would pay), the
receiver's decode-and-rebuild time, and the bytes on the wire.

Run from the repository root::

    python -m tests.benchmarks.handoff [--frames 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import socket
import time
from typing import Any

import msgspec

from recorder.records import FrameRecord

#: ``FrameRecord``'s fields, as msgspec decodes one encoded record (a tuple in field order).
WIRE_TYPE: Any = list[
    tuple[str, str, int, int | None, int | None, str | None, dt.date, bool, str, str]
]
_RAW = (
    '{"timestamp":1718035200000,"sequence":1,"payload":{"type":"order-update","data":'
    '{"order_id":"O1","status":"new","symbol":"AAPL","quantity":"10","price":"190.1"}}}'
)


def _frames(count: int) -> list[FrameRecord]:
    raw = _RAW + " " * (400 - len(_RAW))  # the ingest benchmark's ~400-byte frames
    day, now = dt.date(2024, 6, 10), time.time_ns()
    return [
        FrameRecord("100000", "s-1", now + n, 1718035200000, n, "order-update", day,
                    False, "text", raw)
        for n in range(count)
    ]  # fmt: skip


def _receive(sock: socket.socket, other: socket.socket, results: Any) -> None:
    """The child: read every batch, decode and rebuild the records; report its time."""
    other.close()  # the parent's end, inherited: closed here so that EOF can come
    decoder = msgspec.msgpack.Decoder(WIRE_TYPE)
    count, busy = 0, 0.0
    while header := sock.recv(4, socket.MSG_WAITALL):
        size = int.from_bytes(header, "big")
        blob = sock.recv(size, socket.MSG_WAITALL)
        started = time.process_time()
        count += len([FrameRecord(*row) for row in decoder.decode(blob)])
        busy += time.process_time() - started
    results.put((count, busy))


def measure(count: int, batch: int) -> dict[str, float]:
    frames = _frames(count)
    encoder = msgspec.msgpack.Encoder()
    ours, theirs = socket.socketpair()
    results: Any = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_receive, args=(theirs, ours, results)
    )
    child.start()
    theirs.close()
    wire = 0
    cpu = time.process_time()
    wall = time.perf_counter()
    for start in range(0, count, batch):
        blob = encoder.encode(frames[start : start + batch])
        wire += len(blob)
        ours.sendall(len(blob).to_bytes(4, "big") + blob)
    ours.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    received, busy = results.get(timeout=60)
    child.join()
    if received != count:
        raise RuntimeError(f"the child rebuilt {received} records of {count}")
    return {
        "frames": count,
        "batch": batch,
        "sender_cpu_us_per_frame": round(cpu / count * 1e6, 3),
        "sender_wall_us_per_frame": round(wall / count * 1e6, 3),
        "receiver_cpu_us_per_frame": round(busy / count * 1e6, 3),
        "wire_bytes_per_frame": round(wire / count, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    figures = measure(args.frames, args.batch)
    print(json.dumps(figures))
    print(f"{figures['frames']:,} frames in batches of {figures['batch']:,}: the sender spends "
          f"{figures['sender_cpu_us_per_frame']} µs CPU per frame, the receiver "
          f"{figures['receiver_cpu_us_per_frame']} µs decoding and rebuilding; "
          f"{figures['wire_bytes_per_frame']} bytes per frame on the wire")  # fmt: skip


if __name__ == "__main__":
    main()
