"""OAuth2 client-credentials tokens, shared by every account's connection.

One :class:`TokenSource` per recorder: at most one token request in flight; a
token is reused until it nears expiry or somebody marks it stale (a rejected
subscribe, an error-notice followed by a server close). Marking is by token
identity, so N accounts reporting the same stale token cause one refresh, not N.
After a failed request no new one is made before a backoff delay has passed,
however many accounts ask. The token and the client secret never appear in
``repr``, logs or exception messages.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import trio

from .backoff import Backoff
from .credentials import Secret
from .errors import AuthError

log = logging.getLogger(__name__)

TOKEN_REQUEST_TIMEOUT_S: Final = 15.0
#: Refresh this long before expiry (or at 90 % of a short lifetime).
REFRESH_MARGIN_S: Final = 600.0


class TokenUnavailable(AuthError):
    """No usable token right now (endpoint down, refused, or answered garbage); retry later."""


#: Token endpoint answers that mean "these credentials are not accepted" (RFC 6749 §5.2):
#: not an outage, a configuration (or revocation) that a person has to fix.
REFUSED_STATUSES: Final = frozenset({401, 403})


class CredentialsRefused(TokenUnavailable):
    """The token endpoint refused our client id and secret (HTTP 401/403): an error a person
    must fix; retried only at the longest backoff, in case the credentials are fixed there."""


@dataclass(frozen=True, eq=False)
class Token:
    """An access token; compare by identity. ``repr`` never shows the value."""

    value: str = field(repr=False)
    expires_at: float  # trio clock
    generation: int

    def __repr__(self) -> str:
        return f"Token(generation={self.generation}, value=<redacted>)"


class TokenSource:
    """Fetches, caches and refreshes the client-credentials token."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        audience: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | None = None,
        request_timeout_s: float = TOKEN_REQUEST_TIMEOUT_S,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._audience = audience
        self._verify: ssl.SSLContext | bool = ssl_context or True
        self._timeout_s = request_timeout_s
        self._backoff = backoff or Backoff(1.0, 60.0)
        self._lock = trio.Lock()
        self._token: Token | None = None
        self._retry_at = float("-inf")
        self._last_error: str | None = None
        self.refused = False  # the last answer refused our credentials (HTTP 401/403)
        self.requests = 0  # token requests made (successful or not)
        self.generation = 0

    def __repr__(self) -> str:
        return f"TokenSource(url={self.token_url!r}, generation={self.generation})"

    async def get(self) -> Token:
        """A valid token, fetching one when there is none, it is stale, or it nears expiry.

        Raises TokenUnavailable when the endpoint fails, or failed recently (then
        without making a request until the backoff delay has passed).
        """
        async with self._lock:
            now = trio.current_time()
            token = self._token
            if token is not None and now < token.expires_at:
                return token
            if now < self._retry_at:
                if self.refused:  # still the credentials' fault, whoever asks
                    raise CredentialsRefused(str(self._last_error))
                raise TokenUnavailable(
                    f"token endpoint failed recently ({self._last_error}); "
                    f"next try in {self._retry_at - now:.1f} s"
                )
            try:
                token = await self._fetch()
            except CredentialsRefused as exc:
                self._last_error, self.refused = str(exc), True
                self._retry_at = trio.current_time() + self._backoff.max_s
                raise
            except TokenUnavailable as exc:
                self._last_error, self.refused = str(exc), False
                self._retry_at = trio.current_time() + self._backoff.next()
                raise
            self.refused = False
            self._backoff.reset()
            self._token = token
            return token

    def mark_stale(self, token: Token) -> None:
        """Stop using ``token``; the next :meth:`get` fetches a new one (once, for everybody)."""
        if self._token is token:
            log.info(
                "token marked stale; the next subscribe uses a fresh one",
                extra={"event": "token-stale", "generation": token.generation},
            )
            self._token = None

    async def _fetch(self) -> Token:
        self.requests += 1
        body = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret.reveal(),
            "audience": self._audience,
        }
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout_s) as client:
                response = await client.post(self.token_url, json=body)
        except httpx.HTTPError as exc:
            # httpx messages name the URL at most, never the request body.
            raise TokenUnavailable(f"token request failed: {describe_http_error(exc)}") from None
        if response.status_code in REFUSED_STATUSES:
            raise CredentialsRefused(
                f"token endpoint refused the credentials of client {self._client_id!r} "
                f"(HTTP {response.status_code}): check [studio] client_id and the client secret"
            )
        if response.status_code != 200:
            raise TokenUnavailable(f"token endpoint answered HTTP {response.status_code}")
        value, lifetime_s = _parse_token_response(response)
        now = trio.current_time()
        margin = min(REFRESH_MARGIN_S, lifetime_s * 0.1)
        self.generation += 1
        log.info(
            "fetched an access token",
            extra={
                "event": "token-fetched",
                "generation": self.generation,
                "expires_in_s": lifetime_s,
            },
        )
        return Token(value, now + lifetime_s - margin, self.generation)


def describe_http_error(exc: BaseException) -> str:
    """``Type: message`` of an httpx error, with the reason from its causes when it has none.

    httpx says nothing of a failed TLS handshake (its ConnectError has an empty
    message; the reason is an ssl error further down the chain). httpx messages
    name the URL at most, never the request body, so the secret cannot appear.
    """
    text = str(exc).strip()
    seen: set[int] = set()
    inner: BaseException | None = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if isinstance(inner, ssl.SSLCertVerificationError):
            reason = inner.verify_message
            text = f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {reason}"
            break
        if not text:
            text = str(inner).strip()
        inner = inner.__cause__ or inner.__context__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parse_token_response(response: httpx.Response) -> tuple[str, float]:
    try:
        document: Any = response.json()
    except ValueError:
        raise TokenUnavailable("token endpoint answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise TokenUnavailable("token endpoint answered JSON that is not an object")
    value = document.get("access_token")
    lifetime = document.get("expires_in")
    if not isinstance(value, str) or not value:
        raise TokenUnavailable("token endpoint answer has no access_token")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise TokenUnavailable("token endpoint answer has no positive expires_in")
    return value, float(lifetime)
