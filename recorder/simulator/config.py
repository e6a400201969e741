"""Configuration and small value types of the simulator (no behaviour here)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_CONFIG",
    "WS_PATH",
    "SimConfig",
    "SimEndpoints",
    "SubscribeSeen",
]

WS_PATH = "/studio/v2/ws"
DEFAULT_AUDIENCE = "https://api.clearstreet.io"


@dataclass(frozen=True)
class SimConfig:
    """What the simulated server serves; defaults mirror the upstream where it is documented."""

    accounts: tuple[str, ...] = ("100000", "100001")
    rate_per_s: float = 20.0  # sequenced frames per second per account; 0 = no live flow
    heartbeat_s: float = 5.0  # 0 = no heartbeats
    subscribe_timeout_s: float = 30.0
    token_lifetime_s: float = 86400.0
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    seed: int = 1
    audience: str = DEFAULT_AUDIENCE

    def __post_init__(self) -> None:
        if not self.accounts or len(set(self.accounts)) != len(self.accounts):
            raise ValueError(f"accounts must be non-empty and distinct, got {self.accounts!r}")
        for name in ("rate_per_s", "heartbeat_s", "subscribe_timeout_s", "token_lifetime_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


DEFAULT_CONFIG = SimConfig()


@dataclass(frozen=True)
class SimEndpoints:
    """Where a serving simulator can be reached."""

    ws_url: str
    token_url: str


class SubscribeSeen(NamedTuple):
    """One well-formed subscribe the server received, and whether it was accepted.

    Malformed subscribes (answered with an error-notice) are not recorded; subscribes ignored
    because of `set_ack(False)` are recorded as not accepted.
    """

    account_id: str
    token: str
    accepted: bool
