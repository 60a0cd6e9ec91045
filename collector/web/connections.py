"""The API's connections, capped where they are accepted, before any TLS or HTTP work.

asyncio's selector loop calls the listening socket's ``accept()``; ``CappedListener``
is that socket, and it closes at once (with a reset: nothing is kept on our side) a
connection over either cap:

- ``per_address``: at most ``per_address`` open connections from one client
  address (an IPv6 client: its /64), reverse proxies in ``exempt`` aside;
- ``total``: at most ``total`` in all, kept under the process's open-file limit,
  so that accept() itself never runs out of descriptors. At that cap a newcomer
  takes the place of the connection that has waited longest without a request
  (idle after a response, still handshaking, or still sending headers), if it has
  waited ``evict_after_s``: slow clients holding every slot cannot keep a good
  client out, unless they connect afresh ``total`` times each ``evict_after_s``
  from more addresses than ``total / per_address``.

A connection is counted from its accept until its socket is closed: its HTTP
protocol says so (``closed``), or a sweep finds its socket closed (a TLS handshake
that failed never reaches the protocol). The sweep also ends handshakes that
take longer than ``handshake_timeout_s``: a shutdown of the socket, which asyncio's
TLS transport meets as end of file and closes itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.config import Network
from collector.web.ratelimit import counted_as

REFUSALS = ("per_address", "total")
PHASES = ("handshake", "headers", "body", "idle")
#: Connections refused in one accept() call before the loop's other work gets a turn.
REFUSALS_PER_ACCEPT = 64
#: A connection waiting this long without a request may give its place at the total cap.
EVICT_AFTER_S = 1.0
#: A reset rather than a close: no FIN_WAIT or TIME_WAIT kept for a refused client.
_RESET = struct.pack("ii", 1, 0)


@dataclass
class ConnectionStats:
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))
    timed_out: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    evicted: int = 0
    """Connections waiting without a request, closed to make room at the total cap."""
    out_of_descriptors: int = 0
    """accept() failed for want of descriptors (EMFILE): the caps should make it 0."""


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    fd: int
    client: str
    """The address as it is counted (an IPv6 client's /64)."""
    accepted_at: float
    exempt: bool
    served: bool = False
    """An HTTP protocol took it: any TLS handshake is done."""
    open: bool = True
    waiting_since: float = 0.0
    """When it last began to wait for a request (accepted, or answered)."""


class Connections:
    """Every accepted connection until it is closed; the caps and the handshake bound.

    Runs on the server's event loop thread only, as accept() and the protocols do."""

    def __init__(
        self,
        per_address: int,
        total: int,
        handshake_timeout_s: float,
        exempt: tuple[Network, ...] = (),
        # (reason, client): a newcomer refused (per_address, total), or a waiting
        # connection closed to make room for one (evicted).
        on_refused: Callable[[str, str], None] = lambda reason, client: None,
        on_timeout: Callable[[str, str], None] = lambda phase, client: None,
        clock: Callable[[], float] = time.monotonic,
        evict_after_s: float = EVICT_AFTER_S,
    ) -> None:
        self.per_address = per_address
        self.total = total
        self.handshake_timeout_s = handshake_timeout_s
        self.exempt = exempt
        self.on_refused = on_refused
        self.on_timeout = on_timeout
        self.clock = clock
        self.evict_after_s = evict_after_s
        self.stats = ConnectionStats()
        self._by_fd: dict[int, Connection] = {}
        self._by_client: dict[str, set[Connection]] = {}
        # Connections without a request in hand, longest waiting first.
        self._waiting: OrderedDict[Connection, None] = OrderedDict()
        self._pruned_at = 0.0

    @property
    def open(self) -> int:
        return len(self._by_fd)

    def admit(self, sock: socket.socket, address: str) -> bool:
        """Whether a connection just accepted may stay; if not, it is closed already."""
        fd = sock.fileno()
        if (stale := self._by_fd.get(fd)) is not None:
            self._forget(stale)  # its descriptor was closed, and given to this one
        client = counted_as(address)
        exempt = _within(address, self.exempt)
        reason = self._over(client, exempt)
        if reason:
            self.stats.refused[reason] += 1
            _reset(sock)
            self.on_refused(reason, address)
            return False
        self.stats.accepted += 1
        now = self.clock()
        connection = Connection(sock, fd, client, now, exempt, waiting_since=now)
        self._by_fd[fd] = connection
        self._by_client.setdefault(client, set()).add(connection)
        self._waiting[connection] = None
        return True

    def _over(self, client: str, exempt: bool) -> str:
        """The cap this connection would go over, or ""; closed sockets not yet noticed
        are looked for first, so that a cap is never reached by the dead."""
        if not exempt:
            mine = self._by_client.get(client, ())
            if len(mine) >= self.per_address:
                self._prune(list(mine))
                if len(self._by_client.get(client, ())) >= self.per_address:
                    return "per_address"
        if len(self._by_fd) >= self.total:
            now = self.clock()
            if now - self._pruned_at >= 0.1:  # a full look, at most ten times a second
                self._pruned_at = now
                self._prune(list(self._by_fd.values()))
            if len(self._by_fd) >= self.total and not self._evict_one(now):
                return "total"
        return ""

    def _prune(self, connections: list[Connection]) -> None:
        for connection in connections:
            if connection.sock.fileno() == -1:
                self._forget(connection)

    def _evict_one(self, now: float) -> bool:
        """Close the connection waiting longest without a request, if it has waited long
        enough; whether one was."""
        while self._waiting:
            connection = next(iter(self._waiting))
            if connection.sock.fileno() == -1:
                self._forget(connection)  # closed already
                continue
            if now - connection.waiting_since < self.evict_after_s:
                return False
            self._forget(connection)
            self.stats.evicted += 1
            self.on_refused("evicted", connection.client)
            with contextlib.suppress(OSError):  # its transport meets end of file, closes
                connection.sock.shutdown(socket.SHUT_RDWR)
            return True
        return False

    def served(self, fd: int) -> Connection | None:
        """The connection an HTTP protocol now serves (after its TLS handshake)."""
        connection = self._by_fd.get(fd)
        if connection is not None:
            connection.served = True
            self.waiting(connection)
        return connection

    def waiting(self, connection: Connection | None) -> None:
        """It has no request in hand (connected, or answered): it may give its place."""
        if connection is not None and connection.open:
            connection.waiting_since = self.clock()
            self._waiting[connection] = None
            self._waiting.move_to_end(connection)

    def busy(self, connection: Connection | None) -> None:
        """A request's headers came: it keeps its place until it is answered."""
        if connection is not None:
            self._waiting.pop(connection, None)

    def closed(self, connection: Connection | None) -> None:
        if connection is not None:
            self._forget(connection)

    def _forget(self, connection: Connection) -> None:
        if not connection.open:
            return
        connection.open = False
        self._waiting.pop(connection, None)
        if self._by_fd.get(connection.fd) is connection:
            del self._by_fd[connection.fd]
        mine = self._by_client.get(connection.client)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self._by_client[connection.client]

    def sweep(self) -> None:
        """Forget connections whose socket is closed; end handshakes past their bound."""
        now = self.clock()
        for connection in list(self._by_fd.values()):
            if connection.sock.fileno() == -1:
                self._forget(connection)
            elif not connection.served and now - connection.accepted_at > self.handshake_timeout_s:
                connection.served = True  # counted once; the transport closes itself
                self.stats.timed_out["handshake"] += 1
                self.on_timeout("handshake", connection.client)
                with contextlib.suppress(OSError):  # already gone: the next sweep forgets it
                    connection.sock.shutdown(socket.SHUT_RDWR)

    def timed_out(self, phase: str, client: str) -> None:
        """An HTTP protocol ended a connection for being slow in ``phase``."""
        self.stats.timed_out[phase] += 1
        self.on_timeout(phase, client)


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer is gone already: a plain close does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()


class CappedListener(socket.socket):
    """A listening socket whose accept() returns only connections within the caps."""

    def __init__(self, family: socket.AddressFamily, connections: Connections) -> None:
        # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio turns Nagle's
        # algorithm off only on sockets that say TCP (else 40 ms per small answer).
        super().__init__(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.connections = connections

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(REFUSALS_PER_ACCEPT):
            sock, address = super().accept()  # BlockingIOError when none is waiting
            if self.connections.admit(sock, str(address[0])):
                return sock, address
        # asyncio takes this for "no more for now" and comes back on the next turn.
        raise ConnectionAbortedError("connections refused over the caps")
