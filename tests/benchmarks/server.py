"""A Studio look-alike that sends pre-encoded frames as fast as the socket allows.

Run as its own process (``python -m tests.benchmarks.server``) so that it never
shares a GIL or a core's time slice accounting with what it measures. It speaks
just enough of the protocol for the recorder: a token endpoint (any client
credentials get a token), the WebSocket handshake, ``subscribe-activity`` →
ack, then every frame of the account, then ``replay-complete`` (``--mode replay``,
the reconnect burst), or ack, ``replay-complete`` then paced live frames
(``--mode live --rate R``). Frames are encoded to WebSocket bytes before the
first client connects; fast mode sends each account's frames with one
``sendall`` of the whole blob (the kernel, not Python, paces it).

Sending starts when all ``--accounts`` accounts subscribed (so every run starts
alike). Prints JSON lines on stdout: ``{"event": "ready", ...}`` with its URLs,
the build time and its own send rate measured against a C-speed discarding
reader (``self_test_fps``), then ``{"event": "done", ...}`` once every account's
frames are sent: ``first_sent_ns``/``last_sent_ns`` (``time.time_ns()``), frames,
bytes and CPU seconds. It serves until terminated.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

from .frames import (
    account_ids,
    ack_text,
    encode_server_frame,
    frame_texts,
    replay_complete_text,
)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SEND_CHUNK_BYTES = 1 << 20
_SELF_TEST_BYTES = 64 << 20


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class _TokenHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": "bench-token", "expires_in": 86400}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _read_frame(reader: BinaryIO) -> tuple[int, bytes] | None:
    """(opcode, payload) of one client frame (masked), or None at end of stream."""
    head = reader.read(2)
    if len(head) < 2:
        return None
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = struct.unpack(">H", reader.read(2))[0]
    elif size == 127:
        size = struct.unpack(">Q", reader.read(8))[0]
    mask = reader.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = bytearray(reader.read(size))
    for i in range(len(data)):
        data[i] ^= mask[i % 4]
    return opcode, bytes(data)


class BenchServer:
    """Serves one round of frames to ``accounts`` (see the module docstring)."""

    def __init__(
        self, accounts: list[str], per_account: int, frame_bytes: int, mode: str, rate: float
    ) -> None:
        self.accounts = accounts
        self.mode = mode
        self.rate_per_account = rate / len(accounts) if rate > 0 else 0.0
        started = time.perf_counter()
        self.frames: dict[str, list[bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        for account in accounts:
            encoded = [
                encode_server_frame(t) for t in frame_texts(account, per_account, frame_bytes)
            ]
            if self.rate_per_account:
                self.frames[account] = encoded
            else:
                self.blobs[account] = b"".join(encoded)
            self.frame_bytes_avg = sum(len(e) for e in encoded[:1000]) / max(1, len(encoded[:1000]))
        self.per_account = per_account
        self.build_s = time.perf_counter() - started
        self.lock = threading.Lock()
        self.subscribed: set[str] = set()
        self.go = threading.Event()
        self.first_sent_ns = 0
        self.last_sent_ns = 0
        self.sent_frames = 0
        self.sent_bytes = 0
        self.finished = 0

    def self_test_fps(self) -> float:
        """Frames/s this process can push into a TCP socket read by a discarding reader."""
        blob = next(iter(self.blobs.values()), None)
        if blob is None:
            blob = b"".join(next(iter(self.frames.values())))
        per_frame = len(blob) / self.per_account if self.per_account else 1
        blob = blob[:_SELF_TEST_BYTES]
        listener = socket.create_server(("127.0.0.1", 0))
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()

        def discard() -> None:
            buffer = bytearray(1 << 20)
            while receiver.recv_into(buffer):
                pass

        thread = threading.Thread(target=discard, daemon=True)
        thread.start()
        started = time.perf_counter()
        view = memoryview(blob)
        for offset in range(0, len(blob), _SEND_CHUNK_BYTES):
            sender.sendall(view[offset : offset + _SEND_CHUNK_BYTES])
        sender.close()
        thread.join()
        seconds = time.perf_counter() - started
        receiver.close()
        listener.close()
        return len(blob) / per_frame / seconds

    def handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        try:
            key = b""
            while True:
                line = reader.readline()
                if not line or line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            frame = _read_frame(reader)
            if frame is None:
                return
            account = json.loads(frame[1])["payload"]["account_id"]
            conn.sendall(encode_server_frame(ack_text(account)))
            with self.lock:
                first_time = account not in self.subscribed and account in self.accounts
                self.subscribed.add(account)
                if self.subscribed >= set(self.accounts):
                    if not self.go.is_set():
                        self.first_sent_ns = time.time_ns()
                    self.go.set()
            if first_time:
                self.go.wait()
                self._send_frames(conn, account)
            else:
                conn.sendall(encode_server_frame(replay_complete_text()))
            while (frame := _read_frame(reader)) is not None:
                if frame[0] == 0x8:  # close: answer it and end
                    conn.sendall(encode_server_frame("", opcode=0x8))
                    break
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def _send_frames(self, conn: socket.socket, account: str) -> None:
        done = encode_server_frame(replay_complete_text())
        if self.rate_per_account:
            conn.sendall(done)  # live mode: empty replay, then paced live frames
            frames = self.frames[account]
            interval = 1.0 / self.rate_per_account
            start = time.perf_counter()
            sent = 0
            while sent < len(frames):
                due = min(len(frames), int((time.perf_counter() - start) / interval) + 1)
                if due > sent:
                    conn.sendall(b"".join(frames[sent:due]))
                    sent = due
                time.sleep(min(interval, 0.001))
            size = sum(len(f) for f in frames)
        else:
            view = memoryview(self.blobs[account])
            for offset in range(0, len(view), _SEND_CHUNK_BYTES):
                conn.sendall(view[offset : offset + _SEND_CHUNK_BYTES])
            conn.sendall(done)
            size = len(view)
        with self.lock:
            self.sent_frames += self.per_account
            self.sent_bytes += size
            self.finished += 1
            self.last_sent_ns = max(self.last_sent_ns, time.time_ns())
            if self.finished == len(self.accounts):
                cpu = time.process_time()
                _emit(
                    "done",
                    first_sent_ns=self.first_sent_ns,
                    last_sent_ns=self.last_sent_ns,
                    frames=self.sent_frames,
                    bytes=self.sent_bytes,
                    cpu_s=round(cpu, 3),
                )


def serve(args: argparse.Namespace) -> None:
    accounts = account_ids(args.accounts)
    server = BenchServer(
        accounts, args.frames // args.accounts, args.frame_bytes, args.mode, args.rate
    )
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    ws_port = listener.getsockname()[1]
    self_test = server.self_test_fps() if not args.no_self_test else None
    _emit(
        "ready",
        ws_url=f"ws://127.0.0.1:{ws_port}/ws",
        token_url=f"http://127.0.0.1:{tokens.server_address[1]}/oauth/token",
        accounts=accounts,
        frames=server.per_account * len(accounts),
        frame_bytes_avg=round(server.frame_bytes_avg, 1),
        build_s=round(server.build_s, 2),
        self_test_fps=None if self_test is None else round(self_test),
    )
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=server.handle, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=1_000_000, help="total over all accounts")
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--frame-bytes", type=int, default=400)
    parser.add_argument("--mode", choices=("replay", "live"), default="replay")
    parser.add_argument("--rate", type=float, default=0.0, help="frames/s in all (live mode)")
    parser.add_argument("--no-self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "live" and args.rate <= 0:
        parser.error("--mode live needs --rate")
    with contextlib.suppress(KeyboardInterrupt):
        serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
