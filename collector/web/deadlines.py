"""uvicorn's h11 protocol with the deadlines it lacks: a slow client cannot hold a socket.

uvicorn closes a connection idle after a response (``timeout_keep_alive``) but has no
bound on the time a request takes to arrive: a client sending one byte of a request
line every few seconds holds its socket for ever. Here:

- headers: the request line and headers must be complete within ``header_s`` of the
  connection (after its TLS handshake) or of the previous response;
- body: the body must be complete within ``body_s`` of its headers;
- idle: uvicorn's keep-alive timeout, counted;
- a connection serves at most ``max_requests`` requests: the last answer says
  ``Connection: close``.

A connection past a deadline is aborted and counted by phase (``Connections``).
The application's own time is not bounded here: a request being answered has no
timer running.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.web.connections import Connection, Connections


@dataclass(frozen=True)
class Deadlines:
    header_s: float
    body_s: float
    max_requests: int
    connections: Connections


class DeadlineConfig(uvicorn.Config):
    """uvicorn's Config, carrying the deadlines to each connection's protocol."""

    def __init__(self, app: Any, deadlines: Deadlines, **options: Any) -> None:
        super().__init__(app, http=DeadlineH11Protocol, **options)
        self.deadlines = deadlines


class DeadlineH11Protocol(H11Protocol):
    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, DeadlineConfig)
        self.deadlines = config.deadlines
        self.tracked: Connection | None = None
        self.requests = 0
        self.heard = False
        """Bytes came since the connection or the last response."""
        self.phase = ""
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.tracked = self.deadlines.connections.served(sock.fileno())
        self._arm("headers", self.deadlines.header_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.deadlines.connections.closed(self.tracked)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:
            self.requests += 1
            if self.requests >= self.deadlines.max_requests:
                self.cycle.default_headers = [*self.cycle.default_headers, CLOSE_HEADER]
        state = self.conn.their_state
        if state is not h11.IDLE:
            self.deadlines.connections.busy(self.tracked)
        if state is h11.SEND_BODY:
            if self.phase != "body":
                self._arm("body", self.deadlines.body_s)
        elif state is not h11.IDLE:
            self._disarm()  # the request is whole (or the connection is over)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self.heard = False
            self._arm("headers", self.deadlines.header_s)
            self.deadlines.connections.waiting(self.tracked)
        super().on_response_complete()  # may go on to a pipelined request at once

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self._disarm()
            self.deadlines.connections.timed_out("idle", self._client())
        super().timeout_keep_alive_handler()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self.phase = phase
        self.deadline = self.loop.call_later(seconds, self._expire, phase)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase = ""

    def _expire(self, phase: str) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if phase == "headers" and self.requests and not self.heard:
            phase = "idle"  # nothing at all since the last response
        self.deadlines.connections.timed_out(phase, self._client())
        self.transport.abort()

    def _client(self) -> str:
        return self.client[0] if self.client else "?"
