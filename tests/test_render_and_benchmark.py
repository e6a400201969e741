"""Rendering helpers, and the speed benchmark's own smoke test (so it cannot rot)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queries.render import decimal_text, iso_ns, table, to_json
from recorder.instants import INT64_MAX, INT64_MIN, ns_from_iso


def test_iso_ns_keeps_nanoseconds_and_handles_before_1970() -> None:
    assert iso_ns(1_718_026_200_123_456_789) == "2024-06-10T13:30:00.123456789Z"
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z"
    assert iso_ns(-1) == "1969-12-31T23:59:59.999999999Z"
    assert iso_ns(None) is None


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_ns_from_iso_reads_back_what_iso_ns_writes(instant_ns: int) -> None:
    assert ns_from_iso(iso_ns(instant_ns) or "") == instant_ns
    assert ns_from_iso(iso_ns(instant_ns, 3) or "") == instant_ns - instant_ns % 1_000_000


@pytest.mark.parametrize(
    "text", ["2024-06-10T13:30:00.12x4Z", "2024-06-10T13:30:00", "2024-13-10T13:30:00Z", "today"]
)
def test_ns_from_iso_refuses_what_is_not_an_instant(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not an ISO 8601 UTC instant: "):
        ns_from_iso(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [("40.000000000", "40"), ("189.470000000", "189.47"), ("-0.000", "0"), ("1E+3", "1000"),
     ("123456789.123456789", "123456789.123456789"), ("-5", "-5")],
)  # fmt: skip
def test_decimal_text(value: str, text: str) -> None:
    assert decimal_text(Decimal(value)) == text
    assert json.loads(to_json({"v": Decimal(value)})) == {"v": text}


def test_table_aligns_numbers_but_not_identifiers() -> None:
    lines = table(["account", "frames"], [("0042", 14), ("100000", 57)]).splitlines()
    assert lines[2] == "  0042         14"
    assert lines[3] == "  100000       57"
    assert table(["a"], []) == "  (none)"


@pytest.mark.slow
def test_benchmark_runs_on_a_small_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.benchmarks.analytics_speed import main

    main(["--rows", "4000", "--repeat", "1", "--keep", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert 3000 < summary["frames"] < 5000
    assert [r["command"] for r in summary["results"]] == ["gaps", "audit", "reconcile", "evening"]
    assert summary["evening_over_separate"] > 0
    assert all(r["accounts"] == 4 for r in summary["results"])
