"""The running recorder's in-memory state: what status, health and metrics report.

Updated by connection tasks and the writer (cheap attribute writes on the hot
path), read by whoever reports. Nothing here is persisted: the store is the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AccountState:
    """One account's connection as its supervisor sees it."""

    account_id: str
    connected: bool = False
    subscribed: bool = False
    session_id: str | None = None
    sessions: int = 0
    reconnects: int = 0
    frames: int = 0
    frames_by_type: Counter[str | None] = field(default_factory=Counter)
    last_frame_ns: int | None = None
    last_sequence: int | None = None
    live_sequence_gaps: int = 0  # holes seen in the current session's live stream
    live_sequence_gaps_closed: int = 0  # … in earlier sessions
    rejected_subscribes: int = 0
    reconnects_by_reason: Counter[str] = field(default_factory=Counter)
    last_close: str | None = None
    last_error: str | None = None
    standby: bool = False  # another recorder instance owns the account
    auth_refusing: bool = False  # the token endpoint refused our credentials last time
    auth_refusals: int = 0  # how often it did


@dataclass
class WriterState:
    """The writer's progress; ``failing`` holds the last error while it retries."""

    batches: int = 0
    rows_written: int = 0
    log_rows_written: int = 0
    checkpoints: int = 0  # signed checkpoints committed
    checkpoint_copy_failures: int = 0  # failed copies to checkpoint_dir (retried)
    checkpoint_copies_waiting: int = 0  # notes not yet copied there
    # time.monotonic() values: read by the metrics/health thread, which has no trio clock.
    last_commit_at: float | None = None
    busy_since: float | None = None  # a transaction is in flight since then
    failing: str | None = None
    failing_since: float | None = None
    retries: int = 0


@dataclass
class RecorderState:
    accounts: dict[str, AccountState]
    writer: WriterState = field(default_factory=WriterState)
    shutting_down: bool = False
    queue_depth: Callable[[], int] = lambda: 0
    queue_capacity: int = 0
    #: Append-only triggers found missing or altered by the last check (empty: intact).
    append_only_problems: list[str] = field(default_factory=list)

    @classmethod
    def for_accounts(cls, accounts: tuple[str, ...]) -> RecorderState:
        return cls({account: AccountState(account) for account in accounts})
