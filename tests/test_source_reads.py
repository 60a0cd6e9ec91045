"""The network thread's reads: what arrived together over TLS is read together.

Mosquitto writes each packet as a TLS record of its own and one ``recv`` returns one
record; ``_read_burst`` must hand over every record the socket holds in one read
(bounded), and still say "nothing" and "closed" as a single ``recv`` does.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.ingest.source import READ_SIZE, _read_burst
from tests.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_pair(pki: Pki) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """(the collector's end, the broker's end) of a real TLS connection."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki.ca)
    client_ctx.check_hostname = False
    listener = socket.create_server(("127.0.0.1", 0))
    left = socket.create_connection(listener.getsockname())
    right, _ = listener.accept()
    listener.close()
    accepted: list[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: accepted.append(server_ctx.wrap_socket(right, server_side=True))
    )
    handshake.start()
    client = client_ctx.wrap_socket(left)
    handshake.join()
    client.setblocking(False)
    yield client, accepted[0]
    client.close()
    accepted[0].close()


def _wait_readable(sock: socket.socket) -> None:
    import select

    select.select([sock], [], [], 10.0)


def test_records_sent_one_by_one_are_read_in_one_burst(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    client, broker = tls_pair
    records = [bytes([i % 251]) * (100 + i) for i in range(200)]
    for record in records:  # 200 small writes: a loopback TCP buffer holds them all
        broker.sendall(record)  # one TLS record each, as Mosquitto writes packets
    expected = b"".join(records)
    got = b""
    reads = 0
    while len(got) < len(expected):
        _wait_readable(client)
        data = _read_burst(client)
        if data is None:
            continue
        reads += 1
        got += data
    assert got == expected
    # One recv per record would take 200 reads; bursts take what had arrived.
    assert reads < len(records) / 4


def test_a_burst_is_bounded(tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket]) -> None:
    client, broker = tls_pair
    chunk = b"x" * 16000
    total = READ_SIZE * 3
    sender = threading.Thread(
        target=lambda: [broker.sendall(chunk) for _ in range(total // 16000 + 1)]
    )
    sender.start()
    got = 0
    while got < total:
        _wait_readable(client)
        data = _read_burst(client)
        if data:
            assert len(data) <= READ_SIZE
            got += len(data)
    sender.join()


def test_nothing_and_closed_are_told_apart(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    client, broker = tls_pair
    assert _read_burst(client) is None  # nothing yet: not a close
    broker.sendall(b"last words")
    broker.close()
    got = b""
    while True:
        _wait_readable(client)
        data = _read_burst(client)
        if data is None:
            continue
        if data == b"":
            break
        got += data
    assert got == b"last words"


def test_a_plain_socket_is_read_once(tmp_path: Path) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        assert _read_burst(left) is None
        right.sendall(b"abc")
        _wait_readable(left)
        assert _read_burst(left) == b"abc"
        right.close()
        _wait_readable(left)
        assert _read_burst(left) == b""
