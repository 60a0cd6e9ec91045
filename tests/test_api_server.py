"""Parts of the API's server seen up close: the listening socket's accepted connections, the
log throttle. The server under attack is in tests/hostile/test_slow_clients.py."""

from __future__ import annotations

import logging
import socket

import pytest

from collector.web.connections import CappedListener, Connections
from collector.web.quietlog import Throttle, ThrottledLog


def test_accepted_connections_say_tcp_so_asyncio_turns_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; an accepted
    socket takes the listener's. With 0 every small answer waited 40 ms for an ACK."""
    connections = Connections(per_address=4, total=10, handshake_timeout_s=10)
    listener = CappedListener(socket.AF_INET, connections)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = socket.create_connection(listener.getsockname(), timeout=5)
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.proto == socket.IPPROTO_TCP
            assert connections.open == 1 and connections.stats.accepted == 1


def test_a_listener_resets_connections_over_the_cap_per_address() -> None:
    connections = Connections(per_address=2, total=10, handshake_timeout_s=10)
    listener = CappedListener(socket.AF_INET, connections)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(5)
        clients = []
        for _ in range(3):
            client = socket.socket()
            client.bind(("127.0.0.2", 0))
            client.connect(listener.getsockname())
            clients.append(client)
        first, second = listener.accept()[0], listener.accept()[0]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # the third was reset, none is left
            listener.accept()
        assert connections.stats.refused == {"per_address": 1, "total": 0}
        clients[2].settimeout(5)
        with pytest.raises(ConnectionResetError):
            clients[2].recv(1)
        # A closed connection gives its place back.
        first.close()
        late = socket.socket()
        late.bind(("127.0.0.2", 0))
        late.connect(listener.getsockname())
        listener.settimeout(5)
        third = listener.accept()[0]
        assert connections.open == 2
        for sock in (*clients, second, third, late):
            sock.close()


def test_the_log_throttle_writes_one_line_per_reason_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = ThrottledLog(logging.getLogger("test.throttle"), Throttle(60, clock=lambda: now[0]))
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for _ in range(1000):
            log.log(logging.WARNING, "refused", "api: refused a connection")
        log.log(logging.INFO, "slow", "api: too slow")
        now[0] = 30
        log.flush()  # not yet a minute: nothing
        assert [r.getMessage() for r in caplog.records] == [
            "api: refused a connection",
            "api: too slow",
        ]
        now[0] = 61
        log.flush()
        log.log(logging.WARNING, "refused", "api: refused a connection")  # within the minute
        now[0] = 122
        log.log(logging.WARNING, "refused", "api: refused a connection")
    assert [r.getMessage() for r in caplog.records][2:] == [
        "999 more refused left out of the log in the last 61 s",
        "api: refused a connection (1 more refused left out of the log before this one)",
    ]
