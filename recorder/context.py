"""What one account's recording is given, bundled once per account by the runtime.

An account's supervisor and each of its sessions take one :class:`AccountContext`
rather than a dozen parameters: its state, the session settings, and the
collaborators it shares with the other accounts (token source, the writer's
channel, connect function, ownership) or has of its own (trading-day cache,
backoff). Tests build one to drive a session against an in-process server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import trio

from .auth import TokenSource
from .backoff import Backoff
from .connection import Connect
from .ownership import Ownership
from .records import Record
from .state import AccountState
from .tradingday import TradingDayCache


@dataclass(frozen=True)
class SessionSettings:
    url: str
    subscribe_timeout_s: float
    liveness_timeout_s: float


class Sink(Protocol):
    """Where records go: the writer's channel (``trio.MemorySendChannel``).

    ``send_nowait`` enqueues or raises ``trio.WouldBlock`` when the channel is full
    (never both); frames go through it first, so a frame costs no trip through the
    scheduler unless the writer is behind and backpressure has to wait.
    """

    async def send(self, value: Record, /) -> None: ...

    def send_nowait(self, value: Record, /) -> None: ...


@dataclass(frozen=True, kw_only=True)
class AccountContext:
    """One account's recording: what its supervisor and sessions need, fixed for its life.

    Frozen: the bindings never change, though several of them are live objects
    (the state the sessions update, the backoff the supervisor draws from).
    """

    account: AccountState
    session: SessionSettings
    tokens: TokenSource
    sink: Sink
    trading_day: TradingDayCache
    connect: Connect
    #: Set when shutdown begins: a session that ends then records ``closed`` as "shutdown".
    shutdown: trio.Event
    #: Delays between sessions (its cap is also the wait after a rejected subscribe).
    backoff: Backoff
    ownership: Ownership = field(default_factory=Ownership)
    #: Set once the account's first subscribe got its answer, or its first attempt failed.
    first_attempt: trio.Event = field(default_factory=trio.Event)
