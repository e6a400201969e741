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
from typing import Final

import trio
from trio_websocket import HandshakeError

from .auth import CredentialsRefused, TokenUnavailable
from .connection import describe_error
from .context import AccountContext
from .ownership import OWNERSHIP_POLL_S
from .session import SessionResult, run_session

log = logging.getLogger(__name__)

#: A session subscribed at least this long resets the backoff.
HEALTHY_SESSION_S: Final = 30.0

#: Errors that mean "could not open a session now; try again later".
TRANSIENT_ERRORS: Final = (HandshakeError, OSError, trio.BrokenResourceError, TokenUnavailable)


async def supervise_account(context: AccountContext) -> None:
    """Keep ``context.account`` recorded until cancelled. Never returns on its own.

    Records only while this instance owns the account; a session is stopped as soon
    as that ownership is lost, and the account is won back before the next one.
    """
    account, ownership, backoff = context.account, context.ownership, context.backoff
    extra = {"account": account.account_id}
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
            context.first_attempt.set()
            await trio.sleep(OWNERSHIP_POLL_S)
            continue
        if account.standby:
            account.standby = False
            log.warning("took over the account", extra={**extra, "event": "takeover"})
        lost = ownership.lost(account.account_id)  # no checkpoint since acquire()
        try:
            result = await _session_unless_lost(context, lost)
            if result is None:  # ownership lost mid-session
                continue
        except CredentialsRefused as exc:
            account.last_error = str(exc)
            account.auth_refusing = True
            account.auth_refusals += 1
            account.reconnects_by_reason["credentials-refused"] += 1
            delay = backoff.max_s
            log.error(
                "%s; retrying in %.1f s",
                account.last_error,
                delay,
                extra={**extra, "event": "credentials-refused"},
            )
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
            account.auth_refusing = False  # a session was opened: the token was accepted
            account.reconnects_by_reason[result.ending] += 1
            if result.subscribed_for_s >= HEALTHY_SESSION_S:
                backoff.reset()
            delay = backoff.max_s if result.ending == "rejected" else backoff.next()
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
            context.first_attempt.set()
        account.reconnects += 1
        await trio.sleep(delay)


async def _session_unless_lost(context: AccountContext, lost: trio.Event) -> SessionResult | None:
    """Run one session, cancelled if the account's ownership is lost meanwhile.

    Returns how the session ended, or None when ownership was lost first (the session
    has recorded its ``closed`` row saying so). Raises what :func:`run_session` raises
    when no session could be opened.
    """
    result: SessionResult | None = None
    failed: Exception | None = None
    async with trio.open_nursery() as race:
        race.start_soon(_cancel_when_set, lost, race.cancel_scope)
        try:
            result = await run_session(context, lost=lost)
        except TRANSIENT_ERRORS as exc:
            failed = exc  # raised below: leaving the nursery would wrap it in a group
        race.cancel_scope.cancel()
    if failed is not None:
        raise failed
    return result


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
