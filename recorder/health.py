"""Is the recorder healthy? Pure judgement over its in-memory state.

Healthy means: every account is subscribed, and the writer is keeping up (no
failing write, no transaction hung, and when records are waiting, a commit
happened recently). Used by ``/healthz`` and by the systemd watchdog, which
stops being fed only when the writer is *hung* (a restart may help), not when
the database is merely unavailable (a restart would not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .state import RecorderState

#: A single transaction running longer than this means the writer is hung.
WRITER_HUNG_S: Final = 120.0
#: With records waiting, no commit for this long means the writer is not keeping up.
WRITER_STALE_S: Final = 30.0


@dataclass(frozen=True)
class Health:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "reasons": self.reasons,
            "accounts": self.accounts,
        }


def writer_hung(state: RecorderState, now: float) -> str | None:
    """Why the writer looks hung (a transaction in flight far too long), else None."""
    busy_since = state.writer.busy_since
    if busy_since is not None and now - busy_since > WRITER_HUNG_S:
        return f"writer: one transaction has been running for {now - busy_since:.0f} s"
    return None


def judge(state: RecorderState, now: float) -> Health:
    """Health at ``now`` (time.monotonic())."""
    reasons: list[str] = []
    accounts: dict[str, str] = {}
    for account_id, account in state.accounts.items():
        if account.subscribed:
            accounts[account_id] = "subscribed"
        elif account.standby:
            accounts[account_id] = "standby: recorded by another instance"
        else:
            accounts[account_id] = "connected" if account.connected else "disconnected"
            if account.auth_refusing:  # the credentials, not the network: say that first
                detail = account.last_error or "credentials refused"
            else:
                detail = account.last_close or account.last_error or "not subscribed yet"
            reasons.append(f"account {account_id} is not subscribed ({detail})")
    writer = state.writer
    if writer.failing is not None:
        reasons.append(f"writer: store writes failing: {writer.failing}")
    hung = writer_hung(state, now)
    if hung:
        reasons.append(hung)
    depth = state.queue_depth()
    last = writer.last_commit_at
    if depth and last is not None and now - last > WRITER_STALE_S and writer.failing is None:
        reasons.append(f"writer: {depth} records waiting, last commit {now - last:.0f} s ago")
    if writer.checkpoint_copies_waiting:
        reasons.append(
            f"checkpoint copies: {writer.checkpoint_copies_waiting} signed notes not yet copied "
            "out of the database (retried with the next ones)"
        )
    if state.append_only_problems:
        broken = ", ".join(state.append_only_problems)
        reasons.append(f"store: append-only protection broken: {broken}")
    if state.shutting_down:
        reasons.append("shutting down")
    return Health(not reasons, reasons, accounts)
