"""The window of records in flight to the writer process: bounded by count and by bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.window import WINDOW_MAX_BYTES, Window


def test_full_by_count_or_by_bytes_and_released_as_commits_come() -> None:
    window = Window(most_records=100, most_bytes=1000)
    assert (window.room, window.full) == (100, False)
    window.take(60)
    window.carried(600)
    assert (window.records, window.bytes, window.room) == (60, 600, 40)
    window.take(10)
    window.carried(500)  # full by bytes, not by count
    assert (window.full, window.room) == (True, 0)
    window.commit(59)  # the first message is not yet wholly committed: its bytes stay
    assert (window.records, window.bytes, window.full) == (11, 1100, True)
    window.commit(60)
    assert (window.records, window.bytes, window.full) == (10, 500, False)
    window.take(90)
    window.carried(1)
    assert (window.full, window.room) == (True, 0)  # full by count
    window.commit(160)
    assert (window.records, window.bytes, window.room) == (0, 0, 100)


def test_a_report_that_comes_while_the_message_is_sent_releases_it_at_once() -> None:
    """The writer may commit a message's records before the forwarder notes its bytes
    (the report arrives while send_all runs): nothing stays counted, or the forwarder
    would wait for a report that never comes."""
    window = Window(most_records=100, most_bytes=10)
    window.take(5)
    window.commit(5)
    window.carried(50)
    assert (window.records, window.bytes, window.full) == (0, 0, False)


def test_one_message_may_exceed_the_bytes() -> None:
    window = Window(most_records=100, most_bytes=10)
    assert window.room == 100  # a huge frame is never held back for good
    window.take(1)
    window.carried(1_000_000)
    assert window.full
    window.commit(1)
    assert not window.full


def test_the_default_bound_and_bad_bounds() -> None:
    assert Window(5).most_bytes == WINDOW_MAX_BYTES
    with pytest.raises(ValueError, match="at least one record"):
        Window(0)
    with pytest.raises(ValueError, match="at least one record"):
        Window(1, most_bytes=0)


@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.integers(1, 5000), st.integers(0, 60)),
        max_size=60,
    )
)
def test_bytes_are_those_of_the_messages_not_wholly_committed(
    steps: list[tuple[int, int, int]],
) -> None:
    window = Window(most_records=1000, most_bytes=20_000)
    messages: list[tuple[int, int]] = []  # (records sent at its end, bytes): the reference
    for records, size, committed_more in steps:
        window.take(records)
        window.carried(size)
        messages.append((window.sent, size))
        window.commit(min(window.sent, window.committed + committed_more))
        expected = sum(b for end, b in messages if end > window.committed)
        assert window.bytes == expected
        assert window.records == window.sent - window.committed >= 0
        assert window.full == (window.records >= 1000 or expected >= 20_000)
        assert window.room == (0 if window.full else 1000 - window.records)
        if window.records == 0:
            assert window.bytes == 0
