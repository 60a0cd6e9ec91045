"""Who is asking, and whether to serve: client addresses, proxies, loopback mode, bodies.

- The client's address is the peer's, unless the peer is a configured proxy
  (``[api] trusted_proxies``): then the nearest address in ``X-Forwarded-For``
  that is not a trusted proxy. Nobody else can choose the address the lockout
  counts (or lock someone else out) by sending the header.
- ``open_on_loopback`` grants anonymous admin to whoever reaches a loopback
  listener. Two ways around that are closed: a web page that rebinds its own
  DNS name to 127.0.0.1 (the ``Host`` header must name a loopback address), and
  a reverse proxy on the same host that would serve the world through it (a
  request with forwarded headers is refused).
- Request bodies are bounded (a silence or an acknowledgement is a few hundred
  bytes).
- Redirect targets (``next``, ``back``) are paths of this site only.
- Every answer says it may not be framed by another site (no clickjacking of the
  console's acknowledge and silence buttons), sniffed as another type, or leak its
  address in a Referer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.config import Network

FORWARDED_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto")
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
MAX_BODY = 64 * 1024
#: A refused body up to this size is read and dropped before the 413 goes out. A server
#: that answers and closes with the request's bytes unread makes the kernel reset the
#: connection: a client still sending (a slow one, a busy machine) then sees the reset,
#: never the answer. Larger ones are cut off; the server's deadlines bound a slow sender.
DRAIN_MAX = 1024 * 1024
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
# ASCII digits only: str.isdigit() accepts "²", which int() refuses.
_DECIMAL = re.compile(r"[0-9]+")


def _declared_over(declared: str, limit: int) -> bool:
    """Whether a Content-Length header declares more than ``limit`` bytes.

    Compared by length before converting, so that thousands of digits (which
    int() refuses past 4,300) are simply too large.
    """
    if not _DECIMAL.fullmatch(declared):
        return False  # absent or malformed: the body is counted as it arrives
    digits = declared.lstrip("0")
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


def _within(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(request: Request, trusted: tuple[Network, ...] = ()) -> str:
    peer = request.client.host if request.client else "?"
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _within(hop, trusted):
            return hop[:64]
    return peer


def scheme(request: Request, trusted: tuple[Network, ...] = ()) -> str:
    """http or https as the browser sees it: behind a trusted proxy, as the proxy says."""
    peer = request.client.host if request.client else "?"
    if trusted and _within(peer, trusted):
        said = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if said in ("http", "https"):
            return said
    return request.url.scheme


def safe_next(target: str, default: str = "/") -> str:
    """A path on this site, or ``default``: never another site (``//evil.example``)."""
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t\\"):
        return default
    return target


def loopback_problem(request: Request) -> str:
    """Why a request may not use ``open_on_loopback``'s anonymous access; "" if it may."""
    if any(name in request.headers for name in FORWARDED_HEADERS):
        return "forwarded through a proxy: open_on_loopback serves this host only; use tokens"
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in LOOPBACK_HOSTS:
        return f"Host {host[:100]!r} is not a loopback name: refused (DNS rebinding)"
    return ""


class Guard:
    """ASGI middleware: bounded bodies for everyone; the loopback checks when open."""

    def __init__(self, app: ASGIApp, open_on_loopback: bool, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.open_on_loopback = open_on_loopback
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.open_on_loopback and (problem := loopback_problem(request)):
            await JSONResponse({"detail": problem}, status_code=403)(scope, receive, send)
            return
        declared = request.headers.get("content-length", "")
        if _declared_over(declared, self.max_body):
            if not _declared_over(declared, DRAIN_MAX):
                await _drain(receive)
            await _too_large(self.max_body)(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, _bounded(receive, self.max_body), secured)


async def _drain(receive: Receive) -> None:
    """The request's body read to its end and dropped (the caller bounds its size)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _too_large(limit: int) -> Response:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)


class BodyTooLarge(Exception):
    pass


def _bounded(receive: Receive, limit: int) -> Callable[[], Awaitable[Message]]:
    """The body as it streams in, refused past ``limit`` (chunked bodies declare none)."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body over {limit} bytes")
        return message

    return bounded
