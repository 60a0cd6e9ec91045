"""The sink's InfluxDB v2 write API client against a recording HTTP/1.1 server: the
request InfluxDB and VictoriaMetrics expect, statuses as errors, kept-alive connections."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from collector.outputs.influx import InfluxWriter, WriteRefused
from tests.servers import free_port


@dataclass
class Recorder:
    """What the server saw, and how it answers writes."""

    requests: list[tuple[str, str, str | None, bytes]] = field(default_factory=list)
    connections: int = 0
    status: int = 204
    answer: bytes = b""
    close_after: bool = False
    """Close each connection after its answer, without saying so (an idle timeout)."""
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass
class Served:
    url: str
    seen: Recorder


@pytest.fixture
def served() -> Iterator[Served]:
    seen = Recorder()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept alive unless closed

        def setup(self) -> None:
            super().setup()
            seen.connections += 1

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = seen.close_after

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.requests.append(("POST", self.path, self.headers["Authorization"], body))
            self._answer(seen.status, seen.answer)

        def do_GET(self) -> None:
            seen.requests.append(("GET", self.path, self.headers["Authorization"], b""))
            self._answer(204, b"")

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
            super().shutdown_request(request)
            seen.closed.set()

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield Served(f"http://127.0.0.1:{server.server_address[1]}", seen)
    server.shutdown()
    server.server_close()


def test_a_write_is_the_v2_write_api_request_with_the_token(served: Served) -> None:
    writer = InfluxWriter(f"{served.url}/influx/", "user:pass word", "my org", "db/rp", 5.0)
    try:
        writer.write(b"m,t=a f=1.0 1\nm,t=b f=2.0 2")
        assert writer.ping()
    finally:
        writer.close()
    assert served.seen.requests == [
        (
            "POST",
            "/influx/api/v2/write?org=my+org&bucket=db%2Frp&precision=ms",
            "Token user:pass word",
            b"m,t=a f=1.0 1\nm,t=b f=2.0 2",
        ),
        ("GET", "/influx/ping", "Token user:pass word", b""),
    ]
    assert served.seen.connections == 1  # one connection kept for both


def test_without_a_token_no_authorization_is_sent(served: Served) -> None:
    writer = InfluxWriter(served.url, "", "", "commune", 5.0)
    try:
        writer.write(b"m f=1.0 1")
    finally:
        writer.close()
    [(_, path, authorization, _)] = served.seen.requests
    assert path == "/api/v2/write?org=&bucket=commune&precision=ms"
    assert authorization is None


@pytest.mark.parametrize("status", [400, 413, 422, 500, 503, 301])
def test_a_status_outside_2xx_is_refused_with_the_servers_words(
    served: Served, status: int
) -> None:
    served.seen.status, served.seen.answer = status, b'{"error":"unable to parse line 2"}'
    writer = InfluxWriter(served.url, "", "o", "b", 5.0)
    try:
        with pytest.raises(WriteRefused) as refused:
            writer.write(b"m f=1.0 1\nm f=")
        assert refused.value.status == status
        assert refused.value.body == '{"error":"unable to parse line 2"}'
        served.seen.status = 204
        writer.write(b"m f=1.0 1")  # the connection goes on after a refusal
    finally:
        writer.close()
    assert len(served.seen.requests) == 2


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(
    served: Served,
) -> None:
    served.seen.close_after = True
    writer = InfluxWriter(served.url, "", "o", "b", 5.0)
    try:
        writer.write(b"m f=1.0 1")
        assert served.seen.closed.wait(10)  # the server has hung up on the idle connection
        writer.write(b"m f=2.0 2")
    finally:
        writer.close()
    assert [body for *_, body in served.seen.requests] == [b"m f=1.0 1", b"m f=2.0 2"]
    assert served.seen.connections == 2


def test_a_server_that_is_not_there_is_an_error_and_pings_false() -> None:
    writer = InfluxWriter(f"http://127.0.0.1:{free_port()}", "", "o", "b", 5.0)
    with pytest.raises(ConnectionRefusedError):
        writer.write(b"m f=1.0 1")
    assert not writer.ping()
    writer.close()


def test_a_url_the_writer_cannot_use_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="http"):
        InfluxWriter("ftp://example.org", "", "o", "b", 5.0)


def test_an_answer_before_the_whole_body_is_read_is_the_servers_answer() -> None:
    """A server may refuse a write by its headers (413, 401) and hang up before reading
    the body: the write fails with that status, not as a broken connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def refuse_unread() -> None:
        connection, _ = listener.accept()
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                head += connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\n"
                b"Connection: close\r\n\r\ntoo large"
            )

    threading.Thread(target=refuse_unread, daemon=True).start()
    writer = InfluxWriter(f"http://127.0.0.1:{listener.getsockname()[1]}", "", "o", "b", 10.0)
    try:
        with pytest.raises(WriteRefused) as refused:
            writer.write(b"m f=1.0 1\n" * 3_200_000)  # 32 MB: more than the socket buffers
    finally:
        writer.close()
        listener.close()
    assert (refused.value.status, refused.value.body) == (413, "too large")
