"""The checkpoint text (recorder/checkpoint.py) and the percent-encoding it shares with exports."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.chain import GENESIS_HASH
from recorder.checkpoint import GENESIS, ChainState, Checkpoint, CheckpointFormatError
from recorder.percent import percent_decode, percent_encode
from recorder.signing import Signer, generate_key, open_note

MAX = 2**63 - 1
HEAD = "ab" * 32
EXAMPLE = Checkpoint(
    store_id="3f1c2a9e-0d4b-4c8e-9a57-5b1e2f3a4c6d",
    account_id="0042/é",
    events=ChainState(count=9000, last_id=123456, head=HEAD),
    log=GENESIS,
    at_ns=1718049600123456789,
)
EXAMPLE_TEXT = (
    "studio-recorder checkpoint v1 3f1c2a9e-0d4b-4c8e-9a57-5b1e2f3a4c6d\n"
    "account 0042%2F%C3%A9\n"
    f"events 9000 123456 {HEAD}\n"
    f"log 0 0 {GENESIS_HASH}\n"
    "at 1718049600123456789\n"
)

PRIVATE_KEY = generate_key("test")[0]

ints = st.integers(min_value=0, max_value=MAX)
heads = st.binary(min_size=32, max_size=32).map(bytes.hex)
states = st.builds(ChainState, count=ints, last_id=ints, head=heads)
checkpoints = st.builds(
    Checkpoint,
    store_id=st.text(alphabet="abcdefABCDEF0123456789._-", min_size=1, max_size=40),
    account_id=st.text(min_size=1),
    events=states,
    log=states,
    at_ns=ints,
)


def test_the_text_is_exactly_five_lines() -> None:
    assert EXAMPLE.text() == EXAMPLE_TEXT
    assert Checkpoint.parse(EXAMPLE_TEXT) == EXAMPLE
    assert ChainState(0, 0, GENESIS_HASH) == GENESIS


@given(checkpoints)
def test_text_and_parse_round_trip(checkpoint: Checkpoint) -> None:
    text = checkpoint.text()
    assert Checkpoint.parse(text) == checkpoint
    assert text.count("\n") == 5
    assert text.endswith("\n")
    assert "\n\n" not in text
    assert text.isascii()


@given(checkpoints)
def test_any_checkpoint_can_be_signed_and_opened(checkpoint: Checkpoint) -> None:
    signer = Signer.from_text(PRIVATE_KEY)
    text, signed_by = open_note(signer.sign(checkpoint.text()), [signer.verifier])
    assert (Checkpoint.parse(text), signed_by) == (checkpoint, [signer.name])


@given(st.text())
def test_percent_decode_inverts_percent_encode(text: str) -> None:
    encoded = percent_encode(text)
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%")
    assert percent_decode(encoded) == text


def test_percent_encoding_examples() -> None:
    assert percent_encode("0042") == "0042"
    assert percent_encode("..") == ".."  # paths special-case it; the encoding does not
    assert percent_encode("a b%/é") == "a%20b%25%2F%C3%A9"


@pytest.mark.parametrize("encoded", ["%2e", "%41", "a b", "%", "%4", "%C3", "%FF", "é"])
def test_percent_decode_accepts_only_the_canonical_form(encoded: str) -> None:
    with pytest.raises(ValueError, match="percent-encoded"):
        percent_decode(encoded)


def _replace(line: int, new: str) -> str:
    lines = EXAMPLE_TEXT.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EXAMPLE_TEXT[:-1], "the text must end with a newline"),
        (EXAMPLE_TEXT + "extra\n", "6 lines, expected 5"),
        (EXAMPLE_TEXT + "\n", "6 lines, expected 5"),
        (_replace(1, "studio-recorder checkpoint v2 s"), "line 1 must be"),
        (_replace(1, "studio-recorder checkpoint v1 a/b"), "line 1 must be"),
        (_replace(1, "studio-recorder checkpoint v1  s"), "line 1 must be"),
        (_replace(2, "account "), "line 2 must be 'account ACCOUNT'"),
        (_replace(2, "account 0042/x"), "line 2 must be"),
        (_replace(2, "account %2f"), "line 2 must be"),
        (_replace(2, "account %41"), "not canonically percent-encoded"),
        (_replace(2, "account %FF"), "not UTF-8"),
        (_replace(3, f"events 09000 123456 {HEAD}"), "line 3 must be 'events COUNT LAST_ID HEAD'"),
        (_replace(3, f"events +9000 123456 {HEAD}"), "line 3 must be"),
        (_replace(3, f"events -1 123456 {HEAD}"), "line 3 must be"),
        (_replace(3, f"events 9000 123456 {HEAD.upper()}"), "line 3 must be"),
        (_replace(3, f"events 9000 123456 {HEAD[:-1]}"), "line 3 must be"),
        (_replace(3, f"events 9000  123456 {HEAD}"), "line 3 must be"),
        (_replace(3, f"events 9000 {2**63} {HEAD}"), "last_id must be an integer from 0"),
        (_replace(3, "events 9000 ٣ " + HEAD), "line 3 must be"),  # an Arabic-Indic digit
        (_replace(4, f"log 0 0 {GENESIS_HASH} "), "line 4 must be 'log COUNT LAST_ID HEAD'"),
        (_replace(5, "at 1.5"), "line 5 must be 'at UNIX_NS'"),
        (_replace(5, "at "), "line 5 must be"),
        ("", "the text must end with a newline"),
    ],
)
def test_parse_is_strict(text: str, message: str) -> None:
    with pytest.raises(CheckpointFormatError, match=message) as info:
        Checkpoint.parse(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChainState(-1, 0, HEAD),
        lambda: ChainState(0, 2**63, HEAD),
        lambda: ChainState(0, 0, HEAD.upper()),
        lambda: ChainState(True, 0, HEAD),
        lambda: Checkpoint("", "a", GENESIS, GENESIS, 0),
        lambda: Checkpoint("a b", "a", GENESIS, GENESIS, 0),
        lambda: Checkpoint("s", "", GENESIS, GENESIS, 0),
        lambda: Checkpoint("s", "a", GENESIS, GENESIS, -1),
    ],
)
def test_values_the_text_cannot_carry_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must"):
        make()
