"""The collector's server handing the IOC's and the consoles' reads to the read process.

A read of the health model (a province, the communes, availability, alerts, agents;
the console's overview, commune, agent and alerts pages) costs Python time that, in
the collector's process, ingest waited for: one interpreter for both. ``ReadForwarder``
sits behind the ``Guard`` (bodies, loopback checks, security headers stay the
collector's) and hands such a GET or HEAD over to the read process
(``collector/web/readprocess.py``) as it came, with nothing in its body; everything
else, and any read while the read process is away, is served here as before.

A bearer token is checked here before a read is handed over: wrong tokens count
against the client's address in the collector's one lockout, whichever process
answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.web.auth import bearer_caller
from collector.web.readwire import (
    ANSWER,
    MAX_RESPONSE_BYTES,
    Answer,
    Ask,
    FrameTooLarge,
    frame,
    read_frame,
)

log = logging.getLogger("collector.api")

#: The API's reads of the health model, handed over (the path, or below it).
API_READS = (
    "/api/v1/province",
    "/api/v1/communes",
    "/api/v1/availability",
    "/api/v1/alerts",
    "/api/v1/agents",
)
#: The console's pages of the health model.
CONSOLE_PAGES = ("/", "/alerts")
CONSOLE_BELOW = ("/communes/", "/agents/")
#: A read the read process has not answered in this long is answered 503 (it may
#: still be computing it: serving it here too would do the work twice).
ANSWER_TIMEOUT_S = 60.0
#: Connections to the read process kept open between requests.
MAX_IDLE = 16


def is_api_read(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_READS)


def handed_over(scope: Scope) -> bool:
    """Whether this request is the read process's to answer."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    path: str = scope["path"]
    if not (is_api_read(path) or path in CONSOLE_PAGES or path.startswith(CONSOLE_BELOW)):
        return False
    for name, value in scope["headers"]:
        # A body on a GET is kept here (the guard bounds it): none is sent over.
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return False
    return True


class ReadChannel:
    """The collector's side of the read process's socket: connections kept open, one
    request at a time on each."""

    def __init__(
        self, socket_path: str, up: Callable[[], bool], timeout_s: float = ANSWER_TIMEOUT_S
    ) -> None:
        self.socket_path = socket_path
        self.up = up
        """Whether the read process is running (else reads are served here at once)."""
        self.timeout_s = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.handed = 0
        """Reads answered by the read process."""
        self.kept = 0
        """Reads it should have answered, served here: it was away."""
        self.timed_out = 0

    async def ask(self, ask: Ask) -> Answer | None:
        """The read process's answer; None when it could not be reached (serve it here).
        Raises ``TimeoutError`` when it took the request but did not answer in time."""
        request = frame(ask)
        # A kept connection may be to a read process since restarted: then once afresh.
        while True:
            kept = bool(self._idle)
            if kept:
                connection = self._idle.pop()
            else:
                try:
                    connection = await asyncio.open_unix_connection(self.socket_path)
                except OSError:
                    return None
            reader, writer = connection
            try:
                writer.write(request)
                await writer.drain()
                payload = await asyncio.wait_for(
                    read_frame(reader, MAX_RESPONSE_BYTES), self.timeout_s
                )
                answer = ANSWER.decode(payload)
            except TimeoutError:
                writer.close()
                raise
            except (OSError, asyncio.IncompleteReadError, FrameTooLarge, msgspec.DecodeError):
                writer.close()
                if kept:
                    self._drop_idle()
                    continue
                return None
            if len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                writer.close()
            return answer

    def _drop_idle(self) -> None:
        """The kept connections are to a read process that is gone: all of them."""
        for _, writer in self._idle:
            writer.close()
        self._idle = []


def _ask_of(scope: Scope) -> Ask:
    client, server = scope.get("client"), scope.get("server")
    return Ask(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        http_version=scope.get("http_version", "1.1"),
        path=scope["path"],
        raw_path=scope.get("raw_path") or scope["path"].encode(),
        query_string=scope.get("query_string", b""),
        headers=[(bytes(k), bytes(v)) for k, v in scope["headers"]],
        client=(str(client[0]), int(client[1])) if client else None,
        server=(str(server[0]), server[1]) if server else None,
    )


def _routed(scope: Scope) -> bool:
    """Whether one of the app's routes takes this request whole: a path none serves
    (404), or served with a slash more or less (a redirect), is answered here as the
    collector alone answers it, before any token is looked at."""
    return any(route.matches(scope)[0] == Match.FULL for route in scope["app"].router.routes)


class ReadForwarder:
    """ASGI middleware: the reads ``handed_over`` go to ``channel``'s read process."""

    def __init__(self, app: ASGIApp, channel: ReadChannel) -> None:
        self.app = app
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = self.channel
        if (
            scope["type"] != "http"
            or not handed_over(scope)
            or not channel.up()
            or not _routed(scope)
        ):
            await self.app(scope, receive, send)
            return
        if is_api_read(scope["path"]):
            try:
                bearer_caller(Request(scope), scope["app"].state.context)
            except HTTPException as exc:
                response = JSONResponse(
                    {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
                )
                await response(scope, receive, send)
                return
        try:
            answer = await channel.ask(_ask_of(scope))
        except TimeoutError:
            channel.timed_out += 1
            busy = JSONResponse(
                {"detail": "the read process did not answer in time: try again"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
            await busy(scope, receive, send)
            return
        if answer is None:
            channel.kept += 1
            await self.app(scope, receive, send)
            return
        channel.handed += 1
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": answer.headers})  # fmt: skip
        await send({"type": "http.response.body", "body": answer.body})
