"""Wire format of the simulator: encoding server frames and parsing the client's subscribe.

Pure and synchronous. Frames are compact JSON text (`separators=(",", ":")`) in the envelope
of the protocol (README, "The protocol the recorder relies on"):
`{"timestamp": ms, ["sequence": n,] "payload": {"type": ..., ...}}`. Only sequenced
frames carry `sequence`; acks, `replay-complete`, heartbeats and error notices never do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "SUBSCRIBE_TYPE",
    "MalformedSubscribeError",
    "Subscribe",
    "ack",
    "encode",
    "error_notice",
    "heartbeat",
    "parse_subscribe",
    "replay_complete",
    "sequenced",
]

SUBSCRIBE_TYPE = "subscribe-activity"


def encode(message: dict[str, object]) -> str:
    """Serialize one message as compact JSON text, the way it goes on the wire."""
    return json.dumps(message, separators=(",", ":"))


def sequenced(timestamp_ms: int, sequence: int, type_: str, data: dict[str, object]) -> str:
    """A sequenced frame (`order-update`, `trade-notice`, ...) carrying `data`."""
    return encode(
        {"timestamp": timestamp_ms, "sequence": sequence, "payload": {"type": type_, "data": data}}
    )


def _unsequenced(timestamp_ms: int, payload: dict[str, object]) -> str:
    return encode({"timestamp": timestamp_ms, "payload": payload})


def ack(timestamp_ms: int, account_id: str, *, success: bool, details: str) -> str:
    """A `subscribe-activity-ack` (never sequenced, never replayed)."""
    return _unsequenced(
        timestamp_ms,
        {
            "type": "subscribe-activity-ack",
            "account_id": account_id,
            "success": success,
            "details": details,
        },
    )


def altered(frame: str) -> str:
    """``frame`` with its payload changed (a field ``"altered": true`` added to it): what a
    replay that disagrees with the live copy sends."""
    document = json.loads(frame)
    document["payload"]["altered"] = True
    return json.dumps(document, separators=(",", ":"))


def replay_complete(timestamp_ms: int) -> str:
    """The marker between the replay of the day and live frames."""
    return _unsequenced(timestamp_ms, {"type": "replay-complete"})


def heartbeat(timestamp_ms: int) -> str:
    """A heartbeat; carries nothing but the envelope."""
    return _unsequenced(timestamp_ms, {"type": "heartbeat"})


def error_notice(timestamp_ms: int, details: str) -> str:
    """An `error-notice`; clients must match on the type, never on `details`."""
    return _unsequenced(timestamp_ms, {"type": "error-notice", "details": details})


@dataclass(frozen=True)
class Subscribe:
    """A well-formed subscribe request (not yet authorized)."""

    token: str
    account_id: str


class MalformedSubscribeError(ValueError):
    """The client's message is not a subscribe request; the reason is safe to show it."""


def parse_subscribe(message: str | bytes) -> Subscribe:
    """Parse `{"authorization": TOKEN, "payload": {"type": "subscribe-activity", "account_id"}}`.

    Raises `MalformedSubscribeError` for binary frames, invalid JSON, a wrong type, or a missing
    or non-string token / account id. The error text never echoes the token.
    """
    if isinstance(message, bytes):
        raise MalformedSubscribeError("expected a text frame carrying JSON")
    try:
        obj = json.loads(message)
    except ValueError:
        raise MalformedSubscribeError("message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedSubscribeError("message is not a JSON object")
    payload = obj.get("payload")
    if not isinstance(payload, dict) or payload.get("type") != SUBSCRIBE_TYPE:
        raise MalformedSubscribeError(f"payload.type must be {SUBSCRIBE_TYPE!r}")
    account_id = payload.get("account_id")
    if not isinstance(account_id, str) or not account_id:
        raise MalformedSubscribeError("payload.account_id must be a non-empty string")
    token = obj.get("authorization")
    if not isinstance(token, str):
        raise MalformedSubscribeError("authorization must be a string")
    return Subscribe(token=token, account_id=account_id)
