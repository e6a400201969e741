"""A day read in chunks of ids on several connections at once (what the evening and every
large day use) is the same table as the plain read: every row once, in id order, with the
account and message-type filters applied."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from queries import duck
from queries.contract import EVENTS_SCHEMA
from queries.source import StoreReader
from tests.support.simday import DAY, A, record


@pytest.mark.parametrize(
    ("accounts", "types"), [(None, None), ([A], None), (None, ["order-update", "heartbeat"])]
)
def test_chunked_reads_equal_the_plain_read(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    accounts: list[str] | None,
    types: list[str] | None,
) -> None:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    names = list(EVENTS_SCHEMA.names)
    with StoreReader(url) as reader:
        plain = pa.Table.from_batches(
            list(duck._store_events(reader, DAY, accounts, names, types, parallel=False))
        )
        monkeypatch.setattr(duck, "PARALLEL_READ_MIN_ROWS", 1)
        monkeypatch.setattr(duck, "READ_CHUNK_ROWS_MIN", 3)  # many small chunks
        chunked = pa.Table.from_batches(
            list(duck._store_events(reader, DAY, accounts, names, types, parallel=True))
        )
    assert chunked.num_rows == plain.num_rows > 0
    assert chunked.equals(plain)
