"""The simulator's OAuth2 client-credentials token endpoint (plain HTTP over trio + h11).

`TokenIssuer` holds the issued tokens and decides requests (pure: the caller passes the time);
`serve_token_endpoint` is the thin trio adapter that speaks HTTP/1.1 with h11, one request per
connection (`Connection: close`), always with a Content-Length.

Expiry uses trio's clock (`trio.current_time()`), not the wall clock, so tests with
`autojump_clock` can let a token expire instantly. Tokens look like JWTs (three base64url parts)
but are opaque random strings to everyone, as the recorder must treat them.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import h11
import trio

__all__ = ["TOKEN_PATH", "TokenIssuer", "TokenResponse", "serve_token_endpoint"]

TOKEN_PATH = "/oauth/token"
_MAX_BODY_BYTES = 64 * 1024
_REQUEST_TIMEOUT_S = 10.0
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


@dataclass(frozen=True)
class TokenResponse:
    """Status code and JSON body of one token-endpoint answer."""

    status: int
    body: dict[str, object]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _error(status: int, error: str, description: str) -> TokenResponse:
    return TokenResponse(status, {"error": error, "error_description": description})


class TokenIssuer:
    """Issues, validates and expires bearer tokens for one client id/secret pair."""

    def __init__(
        self, *, client_id: str, client_secret: str, audience: str, lifetime_s: float
    ) -> None:
        """Accept only these credentials and this audience; tokens live `lifetime_s` seconds."""
        self.client_id = client_id
        self._client_secret = client_secret
        self.audience = audience
        self.lifetime_s = float(lifetime_s)  # an int from a caller must not break is_integer()
        self.requests = 0  # every request that reached the endpoint
        self.issued = 0  # successful (200) answers only
        self._expires_at: dict[str, float] = {}  # token -> trio time
        # Replaced on every expire_all(), so waiters re-read expiry deadlines.
        self.changed = trio.Event()

    def handle(self, body: bytes, *, now: float, wall_s: float) -> TokenResponse:
        """Decide a `POST /oauth/token` with this JSON body (RFC 6749 error codes)."""
        self.requests += 1
        try:
            request = json.loads(body)
        except ValueError:
            return _error(400, "invalid_request", "body must be a JSON object")
        if not isinstance(request, dict):
            return _error(400, "invalid_request", "body must be a JSON object")
        fields = ("grant_type", "client_id", "client_secret", "audience")
        missing = [name for name in fields if not isinstance(request.get(name), str)]
        if missing:
            return _error(400, "invalid_request", f"missing string field(s): {', '.join(missing)}")
        if request["grant_type"] != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is supported")
        good_id = secrets.compare_digest(request["client_id"], self.client_id)
        good_secret = secrets.compare_digest(request["client_secret"], self._client_secret)
        if not (good_id and good_secret):
            return _error(401, "invalid_client", "Unauthorized: unknown client or wrong secret")
        if request["audience"] != self.audience:
            return _error(403, "access_denied", f"Service not found: {request['audience']}")
        token = self._new_token(wall_s)
        self._expires_at[token] = now + self.lifetime_s
        self.issued += 1
        lifetime: float = self.lifetime_s
        if lifetime.is_integer():
            lifetime = int(lifetime)  # OAuth2 servers send whole seconds
        return TokenResponse(
            200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}
        )

    def _new_token(self, wall_s: float) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": "studio-simulator"}
        claims = {
            "iss": "https://auth.simulator.invalid/",
            "sub": f"{self.client_id}@clients",
            "aud": self.audience,
            "iat": int(wall_s),
            "exp": int(wall_s + self.lifetime_s),
            "jti": secrets.token_hex(8),
        }
        parts = (json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(32))
        return ".".join(_b64(part) for part in parts)

    def expires_at(self, token: str) -> float:
        """Trio time at which `token` expires; `-inf` for a token this issuer never issued."""
        return self._expires_at.get(token, -math.inf)

    def is_valid(self, token: str, now: float) -> bool:
        """True if `token` was issued here and has not expired at trio time `now`."""
        return now < self.expires_at(token)

    def expire_all(self, now: float) -> None:
        """Make every token issued so far expire at `now`, and wake expiry waiters."""
        for token, deadline in self._expires_at.items():
            self._expires_at[token] = min(deadline, now)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_expired(self, token: str) -> None:
        """Return once `token` is expired (by its lifetime or by `expire_all`)."""
        while trio.current_time() < self.expires_at(token):
            changed = self.changed
            with trio.move_on_at(self.expires_at(token)):
                await changed.wait()


async def serve_token_endpoint(
    issuer: TokenIssuer,
    listeners: list[trio.SocketListener],
    *,
    wall_clock_s: Callable[[], float],
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `POST /oauth/token` on `listeners` until cancelled (started with the listeners)."""

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _handle_connection(stream, issuer, wall_clock_s)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away mid-request; nothing to answer
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(handler, listeners, task_status=task_status)


async def _read_request(
    stream: trio.SocketStream, connection: h11.Connection
) -> tuple[h11.Request, bytes] | TokenResponse | None:
    """Read one request; None if the client closed first, a response if it is unacceptable."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(_MAX_BODY_BYTES))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_BODY_BYTES:
                return _error(413, "invalid_request", "request body too large")
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _handle_connection(
    stream: trio.SocketStream, issuer: TokenIssuer, wall_clock_s: Callable[[], float]
) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_BODY_BYTES)
    result: tuple[h11.Request, bytes] | TokenResponse | None
    try:
        with trio.fail_after(_REQUEST_TIMEOUT_S):
            result = await _read_request(stream, connection)
    except trio.TooSlowError:
        result = _error(408, "invalid_request", "request not received in time")
    except h11.RemoteProtocolError as exc:
        result = _error(exc.error_status_hint, "invalid_request", "malformed HTTP request")
    if result is None:
        return
    extra_headers: list[tuple[bytes, bytes]] = []
    if isinstance(result, TokenResponse):
        response = result
    else:
        request, body = result
        target = request.target.split(b"?", 1)[0]
        if target != TOKEN_PATH.encode():
            response = _error(404, "not_found", f"no such endpoint; use POST {TOKEN_PATH}")
        elif request.method != b"POST":
            response = _error(405, "invalid_request", "use POST")
            extra_headers.append((b"allow", b"POST"))
        else:
            response = issuer.handle(body, now=trio.current_time(), wall_s=wall_clock_s())
    payload = json.dumps(response.body).encode()
    headers = [
        *_JSON_HEADERS,
        *extra_headers,
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    data = connection.send(h11.Response(status_code=response.status, headers=headers))
    data = (data or b"") + (connection.send(h11.Data(data=payload)) or b"")
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
