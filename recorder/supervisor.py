"""Supervision of one account: run sessions forever, with backoff between them.

Only a named set of transient errors is retried (the connection could not be
opened, the token endpoint failed); a session that ends for any reason is
followed by a new one after a delay. The delay grows exponentially with jitter
and is reset only after a session stayed subscribed for a while, so a server
that accepts and then drops the connection cannot cause a reconnect storm. A
rejected subscribe waits ``backoff_max_s``. Anything else is a bug: it
propagates and stops the recorder loudly (systemd restarts it).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Final

import trio
from trio_websocket import HandshakeError

from .auth import TokenSource, TokenUnavailable
from .backoff import Backoff
from .ownership import OWNERSHIP_POLL_S, Ownership
from .session import Connect, SessionSettings, Sink, describe_error, run_session
from .state import AccountState
from .tradingday import TradingDayCache

log = logging.getLogger(__name__)

#: A session subscribed at least this long resets the backoff.
HEALTHY_SESSION_S: Final = 30.0

#: Errors that mean "could not open a session now; try again later".
TRANSIENT_ERRORS: Final = (HandshakeError, OSError, trio.BrokenResourceError, TokenUnavailable)


@dataclass(frozen=True)
class SupervisorSettings:
    session: SessionSettings
    backoff_initial_s: float
    backoff_max_s: float
    healthy_session_s: float = HEALTHY_SESSION_S


async def supervise_account(
    account: AccountState,
    settings: SupervisorSettings,
    tokens: TokenSource,
    sink: Sink,
    trading_day: TradingDayCache,
    *,
    connect: Connect,
    shutdown: trio.Event,
    first_attempt: trio.Event | None = None,
    rng: random.Random | None = None,
    ownership: Ownership | None = None,
    sessions: dict[str, trio.CancelScope] | None = None,
) -> None:
    """Keep ``account`` recorded until cancelled. Never returns on its own."""
    backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rng)
    extra = {"account": account.account_id}
    ownership = ownership or Ownership()
    sessions = {} if sessions is None else sessions
    while True:
        if not await ownership.acquire(account.account_id):
            if ownership.unavailable is not None:
                # Not a standby: nobody may be recording the account (health must say so).
                account.standby = False
                account.last_error = f"ownership lock unavailable: {ownership.unavailable}"
            elif not account.standby:
                account.standby = True
                log.warning(
                    "another recorder instance records this account; standing by",
                    extra={**extra, "event": "standby"},
                )
            if first_attempt is not None:
                first_attempt.set()
            await trio.sleep(OWNERSHIP_POLL_S)
            continue
        if account.standby:
            account.standby = False
            log.warning("took over the account", extra={**extra, "event": "takeover"})
        session_scope = trio.CancelScope()
        sessions[account.account_id] = session_scope
        account.stop_reason = None
        try:
            with session_scope:
                result = await run_session(
                    account,
                    settings.session,
                    tokens,
                    sink,
                    trading_day,
                    connect=connect,
                    shutdown=shutdown,
                    attempted=first_attempt,
                )
            if session_scope.cancelled_caught:  # ownership lost mid-session
                continue
        except TRANSIENT_ERRORS as exc:
            account.last_error = describe_error(exc)
            account.reconnects_by_reason["connect-failed"] += 1
            delay = backoff.next()
            log.warning(
                "could not open a session (%s); retrying in %.1f s",
                account.last_error,
                delay,
                extra={**extra, "event": "connect-failed"},
            )
        else:
            account.reconnects_by_reason[result.ending] += 1
            if result.subscribed_for_s >= settings.healthy_session_s:
                backoff.reset()
            delay = settings.backoff_max_s if result.ending == "rejected" else backoff.next()
            level = logging.ERROR if result.ending == "rejected" else logging.WARNING
            log.log(
                level,
                "session ended (%s); reconnecting in %.1f s",
                result.detail,
                delay,
                extra={
                    **extra,
                    "event": "reconnect",
                    "session": result.session_id,
                    "reason": result.ending,
                },
            )
        finally:
            if first_attempt is not None:
                first_attempt.set()
        account.reconnects += 1
        await trio.sleep(delay)
