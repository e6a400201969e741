"""Reading the store on several connections at once, results kept in order.

Turning SQLite or PostgreSQL rows into Arrow is most of an export's work, and
the ADBC drivers do it without holding the GIL, so reads on a few connections
in worker threads use every core while the caller writes Parquet. Each worker
thread opens its own :class:`~queries.source.StoreReader` (a connection is never
shared between threads); :meth:`OrderedReads.map` keeps at most ``workers + 1``
results in flight, so memory stays bounded by a few chunks.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeVar

from .source import StoreReader


@dataclass(frozen=True, slots=True)
class Chunk:
    """One read: rows with ``first_id <= id <= last_id``."""

    first_id: int
    last_id: int


def plan_chunks(first_id: int, last_id: int, chunk_rows: int) -> list[Chunk]:
    """Cut ``first_id..last_id`` into ranges of ``chunk_rows`` ids (the last one shorter).

    Ids are unique, so no chunk holds more than ``chunk_rows`` rows, and the
    chunks depend on the stored ids alone.
    """
    return [
        Chunk(start, min(start + chunk_rows - 1, last_id))
        for start in range(first_id, last_id + 1, chunk_rows)
    ]


#: More connections than this gains nothing: the writer is one thread.
MAX_WORKERS: Final = 4

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One reader per CPU, between 1 and :data:`MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class OrderedReads:
    """A pool of worker threads, each with its own connection to the store at ``url``.

    Use as a context manager; leaving it waits for running reads and closes
    every connection. A read that raises re-raises in :meth:`map`'s caller.
    """

    def __init__(self, url: str, workers: int | None = None) -> None:
        self.url = url
        self.workers = workers or default_workers()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="store-read")
        self._local = threading.local()
        self._readers: list[StoreReader] = []
        self._lock = threading.Lock()

    def __enter__(self) -> OrderedReads:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers:
            reader.close()

    def map(self, read: Callable[[StoreReader, T], R], items: Iterable[T]) -> Iterator[R]:
        """``read(reader, item)`` for each item, run ahead on the workers, yielded in order."""
        pending: deque[Future[R]] = deque()
        source = iter(items)
        for item in source:
            pending.append(self._pool.submit(self._run, read, item))
            if len(pending) > self.workers:
                break
        while pending:
            result = pending.popleft().result()
            for item in source:
                pending.append(self._pool.submit(self._run, read, item))
                break
            yield result

    def _run(self, read: Callable[[StoreReader, T], R], item: T) -> R:
        reader: StoreReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = StoreReader(self.url)
            with self._lock:
                self._readers.append(reader)
            self._local.reader = reader
        return read(reader, item)
