"""The API's HTTP server: uvicorn in a thread, holding on alone against slow and abusive
clients (no reverse proxy needed to survive one).

- Connections are capped where they are accepted, before any TLS work, per client
  address and in all (``connections.CappedListener``), the total kept under the
  process's open-file limit so that accept() never fails for want of descriptors; at
  the cap in all, a newcomer takes the place of a connection waiting without a request.
- A TLS handshake, a request's headers, its body, and an idle connection each have a
  deadline (``connections.Connections.sweep``, ``deadlines.DeadlineH11Protocol``);
  a connection serves a bounded number of requests.
- Log lines about refused and timed-out connections, uvicorn's warnings and asyncio's
  "socket.accept() out of system resource" are written once per reason per minute,
  with a count of what was left out (``quietlog``).
- ``/metrics`` counts connections refused by reason, evicted, and timed out by phase
  (``ApiServer.figures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.config import ApiSection, Network, networks
from collector.web.connections import PHASES, REFUSALS, CappedListener, Connections
from collector.web.deadlines import DeadlineConfig, Deadlines
from collector.web.metrics import Family
from collector.web.quietlog import ThrottledLog, quiet

log = logging.getLogger("collector.api")
#: Descriptors left to the rest of the process (store, broker, sink, notifier, logs).
RESERVED_DESCRIPTORS = 256
_OUT_OF_RESOURCE = "socket.accept() out of system resource"


@dataclass(frozen=True)
class ServerLimits:
    """What a slow or abusive client may hold; from ``[api]`` (``from_settings``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    max_requests_per_connection: int = 100
    tls_handshake_timeout_s: float = 10.0
    max_connections: int = 1000
    max_connections_per_address: int = 32
    trusted_proxies: tuple[Network, ...] = ()
    """Exempt from the per-address cap: every client behind a proxy shares its address."""

    @classmethod
    def from_settings(cls, api: ApiSection) -> ServerLimits:
        return cls(
            header_timeout_s=float(api.header_timeout),
            body_timeout_s=float(api.body_timeout),
            keep_alive_timeout_s=float(api.keep_alive_timeout),
            max_requests_per_connection=api.max_requests_per_connection,
            tls_handshake_timeout_s=float(api.tls_handshake_timeout),
            max_connections=api.max_connections,
            max_connections_per_address=api.max_connections_per_address,
            trusted_proxies=networks(api.trusted_proxies),
        )


def connection_budget(wanted: int) -> int:
    """``wanted`` connections, or fewer if the process's open-file limit cannot hold them
    besides the descriptors the rest of the collector needs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_DESCRIPTORS))


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, sweeping the connections and flushing the throttled log every
    half second, and quiet about accept() running out of descriptors."""

    def __init__(self, config: uvicorn.Config, connections: Connections, log: ThrottledLog):
        super().__init__(config)
        self.connections = connections
        self.throttled = log

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        await super().startup(sockets)

    async def on_tick(self, counter: int) -> bool:
        if counter % 5 == 0:
            self.connections.sweep()
            self.throttled.flush()
        return await super().on_tick(counter)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _OUT_OF_RESOURCE:
            # asyncio stops accepting for a second and tries again: say so once a minute.
            self.connections.stats.out_of_descriptors += 1
            self.throttled.log(
                logging.ERROR,
                "accepts out of descriptors",
                f"api: accept() failed: {context.get('exception')} "
                "(lower [api] max_connections or raise the open-file limit)",
            )
            return
        loop.default_exception_handler(context)


class ApiServer:
    """The API served on ``host:port`` from a thread of its own: ``start(app)``, ``stop()``."""

    def __init__(
        self,
        limits: ServerLimits,
        host: str,
        port: int,
        ssl_certfile: str = "",
        ssl_keyfile: str = "",
    ) -> None:
        self.limits = limits
        self.host = host
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.throttled = ThrottledLog(log)
        total = connection_budget(limits.max_connections)
        if total < limits.max_connections:
            log.warning(
                "api: [api] max_connections = %d cannot be held under this process's "
                "open-file limit (%d, less %d for the rest): %d instead; raise LimitNOFILE",
                limits.max_connections,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                RESERVED_DESCRIPTORS,
                total,
            )
        self.connections = Connections(
            per_address=limits.max_connections_per_address,
            total=total,
            handshake_timeout_s=limits.tls_handshake_timeout_s,
            exempt=limits.trusted_proxies,
            on_refused=self._refused,
            on_timeout=self._timed_out,
        )
        self.listeners = _bind(host, port, self.connections)
        self.port = int(self.listeners[0].getsockname()[1])
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: ASGIApp) -> ApiServer:
        """Serve ``app``; back once uvicorn is serving (RuntimeError if it could not)."""
        quiet("uvicorn.error")
        quiet("asyncio")
        limits = self.limits
        config = DeadlineConfig(
            _quiet_disconnects(app),
            Deadlines(
                header_s=limits.header_timeout_s,
                body_s=limits.body_timeout_s,
                max_requests=limits.max_requests_per_connection,
                connections=self.connections,
            ),
            loop="asyncio",  # the caps live in the listening socket's accept()
            ws="none",  # no WebSocket route: an upgrade would leave the deadlines behind
            log_level="warning",
            access_log=False,
            # Forwarded headers are ours to judge ([api] trusted_proxies, web/guard.py):
            # uvicorn would believe them from 127.0.0.1, and so anyone on the host.
            proxy_headers=False,
            timeout_keep_alive=max(1, round(limits.keep_alive_timeout_s)),
            timeout_graceful_shutdown=5,
            ssl_certfile=self.ssl_certfile or None,
            ssl_keyfile=self.ssl_keyfile or None,
        )
        self._server = _Uvicorn(config, self.connections, self.throttled)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=list(self.listeners)), name="api", daemon=True
        )
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                self._close_listeners()
                raise RuntimeError(f"the API server on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        return self

    @property
    def uvicorn_server(self) -> uvicorn.Server | None:
        return self._server

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close_listeners()

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    def _refused(self, reason: str, client: str) -> None:
        if reason == "evicted":
            self.throttled.log(
                logging.WARNING,
                "connections evicted",
                f"api: closed a connection from {client} waiting without a request, to make "
                f"room for a new one: {self.connections.total} open in all ([api] "
                "max_connections)",
            )
            return
        cap = (
            f"{self.connections.per_address} open from that address "
            "([api] max_connections_per_address)"
            if reason == "per_address"
            else f"{self.connections.total} open in all ([api] max_connections)"
        )
        self.throttled.log(
            logging.WARNING,
            f"connections refused ({reason})",
            f"api: refused a connection from {client}: {cap}",
        )

    def _timed_out(self, phase: str, client: str) -> None:
        if phase == "idle":
            return  # keep-alive doing its job: counted, not worth a line
        self.throttled.log(
            logging.INFO,
            f"connections timed out ({phase})",
            f"api: closed a connection from {client}: too slow ({phase})",
        )

    def figures(self) -> list[Family]:
        stats = self.connections.stats
        refused = Family(
            "commune_collector_http_connections_refused_total",
            "counter",
            "Connections to the API closed as soon as accepted: over the cap per client "
            "address (per_address) or in all (total).",
        )
        for reason in REFUSALS:
            refused.add(stats.refused[reason], reason=reason)
        timed_out = Family(
            "commune_collector_http_connections_timed_out_total",
            "counter",
            "API connections ended for being slow: TLS handshake, request headers, request "
            "body, or idle after a response.",
        )
        for phase in PHASES:
            timed_out.add(stats.timed_out[phase], phase=phase)
        return [
            Family(
                "commune_collector_http_connections_accepted_total",
                "counter",
                "Connections to the API accepted (within the caps).",
            ).add(stats.accepted),
            refused,
            timed_out,
            Family(
                "commune_collector_http_connections_evicted_total",
                "counter",
                "API connections waiting without a request (idle, handshaking, sending "
                "headers) closed to make room for a new one at the cap in all.",
            ).add(stats.evicted),
            Family("commune_collector_http_connections_open", "gauge", "API connections open.").add(
                self.connections.open
            ),
            Family(
                "commune_collector_http_connections_max",
                "gauge",
                "The cap on open API connections in all, after the open-file limit.",
            ).add(self.connections.total),
            Family(
                "commune_collector_http_accept_out_of_descriptors_total",
                "counter",
                "accept() failures for want of descriptors (the caps keep it at 0).",
            ).add(stats.out_of_descriptors),
        ]


def _quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """The application, with a client gone mid-body (a body deadline, or its own doing)
    ending its request quietly: that is the client's affair, not a traceback in the log."""

    async def quiet_app(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(ClientDisconnect):
            await app(scope, receive, send)

    return quiet_app


def _bind(host: str, port: int, connections: Connections) -> list[CappedListener]:
    """Listening sockets for ``host`` (every address it names), bound here rather than
    by uvicorn, so that their accept() is ours. OSError when the port is taken."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[CappedListener] = []
    try:
        for family, address in dict.fromkeys((f[0], f[4]) for f in found):
            listener = CappedListener(family, connections)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:  # one port for every address of the host
                listener.bind((address[0], listeners[0].getsockname()[1], *address[2:]))
            else:
                listener.bind(address)
            listener.listen(2048)
            listener.setblocking(False)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners
