"""Slow and abusive HTTP clients, and a good one timing its answers, for the tests of the
API's server (test_slow_clients.py) and its benchmark (bench/http_abuse_bench.py).

Attackers connect from 127.0.0.2 and up: Linux routes all of 127/8 to the loopback, so
each source address is another client to the server's per-address cap.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

HALF_A_REQUEST_LINE = b"GET /healthz HT"


def source(index: int) -> str:
    """The index-th attacker's address: 127.0.0.2, 127.0.0.3, ..., 127.0.1.2, ..."""
    return f"127.0.{index // 250}.{index % 250 + 2}"


def connect(port: int, address: str, timeout: float = 5.0) -> socket.socket | None:
    """A TCP connection from ``address``; None when refused outright."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((address, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def tls_connect(
    port: int, address: str, tls: ssl.SSLContext, timeout: float = 5.0
) -> ssl.SSLSocket | None:
    """A TLS connection from ``address``; None when refused (reset, or the handshake
    failed).

    The socket is wrapped before it connects: wrapping a connected socket that the server
    resets at that moment raises from inside ssl's constructor and leaks the half-made
    SSLSocket (CPython 3.11's check for data before the handshake)."""
    sock = tls.wrap_socket(
        socket.socket(socket.AF_INET, socket.SOCK_STREAM), server_hostname="localhost"
    )
    sock.settimeout(timeout)
    try:
        sock.bind((address, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


class HttpsConnection(http.client.HTTPSConnection):
    """http.client's HTTPS, connecting as tls_connect does (no leak on a reset)."""

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            socket.socket(socket.AF_INET, socket.SOCK_STREAM), server_hostname=self.host
        )
        self.sock.settimeout(self.timeout)
        if self.source_address:
            self.sock.bind(self.source_address)
        self.sock.connect((self.host, self.port))


def send_quietly(sock: socket.socket | ssl.SSLSocket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def is_closed(sock: socket.socket) -> bool:
    """Whether the server closed or reset this connection (without waiting: the socket is
    left non-blocking)."""
    try:
        sock.settimeout(0)
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b""


def is_tls_closed(sock: ssl.SSLSocket) -> bool:
    """The same for a TLS connection: the server's close_notify or end of file."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


def slowloris(
    port: int, addresses: list[str], per_address: int, tls: ssl.SSLContext | None = None
) -> list[socket.socket]:
    """``per_address`` connections from each address, each holding half a request line
    (after a TLS handshake when ``tls``). Those the server refused at once are left out."""
    held: list[socket.socket] = []
    for address in addresses:
        for _ in range(per_address):
            sock = connect(port, address) if tls is None else tls_connect(port, address, tls)
            if sock is None:
                continue
            if send_quietly(sock, HALF_A_REQUEST_LINE):
                held.append(sock)
            else:
                sock.close()
    return held


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


@dataclass
class GoodClient:
    """Asks for /healthz on a new connection every ``every_s`` from 127.0.0.1, retrying a
    refused connection at once, and records how long each answer took (retries
    included)."""

    port: int
    tls: ssl.SSLContext | None = None
    every_s: float = 0.1
    give_up_s: float = 30.0
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    retries: int = 0
    unanswered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def ask(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < self.give_up_s:
            try:
                self.statuses.append(self._healthz())
            except (OSError, http.client.HTTPException):
                self.retries += 1
                time.sleep(0.01)
                continue
            elapsed = time.monotonic() - started
            self.latencies.append(elapsed)
            return elapsed
        self.unanswered += 1
        return float("inf")

    def _healthz(self) -> int:
        connection: http.client.HTTPConnection
        timeout = min(10.0, self.give_up_s)  # a server that stopped accepting hangs here
        if self.tls is not None:
            connection = HttpsConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            with response:  # it holds the socket once the answer says Connection: close
                response.read()
            return response.status
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.ask()
            self._stop.wait(self.every_s)

    @contextlib.contextmanager
    def throughout(self) -> Iterator[GoodClient]:
        """Asking all along the ``with`` block."""
        self._thread = threading.Thread(target=self._run, name="good-client", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(self.give_up_s + 5)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self) -> str:
        if not self.latencies:
            return f"no answer ({self.unanswered} unanswered)"
        return (
            f"{len(self.latencies)} answers, p50 {self.percentile(0.5) * 1000:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.1f} ms, max {max(self.latencies) * 1000:.0f} ms, "
            f"mean {statistics.fmean(self.latencies) * 1000:.1f} ms, {self.retries} retries, "
            f"{self.unanswered} unanswered"
        )
