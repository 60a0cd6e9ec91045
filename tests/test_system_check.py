"""system checks against real loopback servers standing for the province's shared systems:
healthy, slow, a certificate about to expire or expired, a login page answering 200, a
302 to a login page, down, unresolvable, and hostile ones (slowloris, endless headers,
an endless body, a huge Content-Length, not UTF-8, not HTTP)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import threading
import time
import tracemalloc
import unicodedata
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.checks.options import SystemOptions
from agent.checks.system import SystemCheck
from agent.configtypes import ConfigProblem, Duration
from agent.systemprobe import MAX_BODY
from agent.wire import Sample
from tests.servers import free_port
from tests.tls import Pki, make_pki, server_cert

PAGE = "<html><title>Cổng Dịch vụ công tỉnh Đồng Nai</title><body>Dịch vụ công</body></html>"
LOGIN = "<html><title>Đăng nhập</title><form action='/login'>Mật khẩu</form></html>"

Respond = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A loopback server that reads each request and answers with ``respond``, byte by
    byte as the test wants it, over TLS when given a context."""

    def __init__(
        self, respond: Respond, context: ssl.SSLContext | None = None, reads: bool = True
    ) -> None:
        self.respond = respond
        self.context = context
        self.reads = reads  # False: answer at once (a plain server greeting a TLS client)
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.handlers.append(handler)
            handler.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            request = b""
            while self.reads and b"\r\n\r\n" not in request and len(request) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            self.respond(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass  # the client went away (as it should from a hostile server)
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)
        for handler in self.handlers:
            handler.join(5)
            assert not handler.is_alive()


def answer(body: str | bytes, status: str = "200 OK", headers: tuple[str, ...] = ()) -> Respond:
    payload = body.encode() if isinstance(body, str) else body
    head = "".join(f"{h}\r\n" for h in headers)

    def respond(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{head}"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )

    return respond


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(
        respond: Respond, context: ssl.SSLContext | None = None, reads: bool = True
    ) -> RawServer:
        servers.append(RawServer(respond, context, reads))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls(pki: Pki, days: float | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if days is None:
        context.load_cert_chain(pki.server_cert, pki.server_key)
    else:
        context.load_cert_chain(*server_cert(pki, pki.ca.parent / "leaves", days))
    return context


@pytest.fixture
def trusted(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test CA is one of the system's CAs (OpenSSL reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))


def collect(**options: object) -> Sample:
    defaults: dict[str, object] = {"name": "mot-cua", "network": "tslcd", "timeout": Duration(2)}
    check = SystemCheck(SystemOptions(**(defaults | options)))  # type: ignore[arg-type]
    check.options.validate()
    samples = asyncio.run(check.collect())
    assert len(samples) == 1
    return samples[0]


# ---- healthy, slow, certificates -------------------------------------------------------


@pytest.mark.usefixtures("trusted")
def test_a_healthy_https_system_is_up_with_its_timings_and_certificate(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki))
    sample = collect(
        url=server.url(host="localhost"),
        expect_status=[200],
        expect_text="Dịch vụ công",
        system="Hệ thống một cửa điện tử",
        kind="one-stop",
    )
    assert sample.outcome == "ok", sample.error
    assert (sample.check, sample.name, sample.item) == ("system", "mot-cua", "")
    assert sample.target == server.url(host="localhost")
    fields = sample.fields
    assert fields["up"] is True and fields["status"] == 200
    assert fields["bytes"] == len(PAGE.encode())
    assert 0 < float(fields["connect_ms"]) <= float(fields["ttfb_ms"]) <= float(fields["total_ms"])
    assert 364 < float(fields["cert_days"]) <= 365
    assert sample.tags == {
        "network": "tslcd",
        "system": "Hệ thống một cửa điện tử",
        "kind": "one-stop",
    }
    assert sample.error == ""


@pytest.mark.usefixtures("trusted")
def test_a_certificate_about_to_expire_is_still_up_and_says_its_days(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki, days=5))
    sample = collect(url=server.url(host="localhost"), expect_text="Dịch vụ công")
    assert sample.outcome == "ok", sample.error
    assert 4.9 < float(sample.fields["cert_days"]) <= 5.0  # the collector's alert reads it


@pytest.mark.usefixtures("trusted")
def test_an_expired_certificate_is_a_bad_response_with_negative_days(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki, days=-3))
    sample = collect(url=server.url(host="localhost"))
    assert sample.outcome == "bad_response"
    assert sample.fields["up"] is False
    assert -3.01 <= float(sample.fields["cert_days"]) <= -3.0
    assert sample.error == "certificate expired 3 days ago"
    assert "status" not in sample.fields  # the page was not asked for over a bad handshake


def test_an_expired_certificate_is_a_bad_response_even_unverified(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki, days=-3))
    sample = collect(url=server.url(), verify_tls=False)
    assert sample.outcome == "bad_response"
    assert sample.fields["status"] == 200  # it answered, over a certificate a browser refuses
    assert float(sample.fields["cert_days"]) <= -3.0
    assert sample.error == "certificate expired 3 days ago"


def test_an_untrusted_certificate_is_a_bad_response_and_its_days_are_still_read(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki))
    sample = collect(url=server.url(host="localhost"))
    assert sample.outcome == "bad_response"
    assert sample.error.startswith("certificate not trusted: ")
    assert "local issuer" in sample.error
    assert 364 < float(sample.fields["cert_days"]) <= 365


def test_without_verification_a_valid_certificate_is_up_and_read(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    server = serve(answer(PAGE), tls(pki))
    sample = collect(url=server.url(), verify_tls=False, expect_text="Dịch vụ công")
    assert sample.outcome == "ok", sample.error
    assert 364 < float(sample.fields["cert_days"]) <= 365


def test_a_plain_http_server_behind_an_https_url_is_down_by_tls(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(answer("Bad Request", "400 Bad Request"), reads=False)
    sample = collect(url=f"https://127.0.0.1:{server.port}/", verify_tls=False)
    assert sample.outcome == "down"
    assert sample.error == (
        "TLS handshake failed: WRONG_VERSION_NUMBER (no TLS on this port: http:// rather than "
        "https://?)"
    )


def test_a_slow_system_is_up_and_its_slowness_measured(serve: Callable[..., RawServer]) -> None:
    def slow(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(0.4)
        answer(PAGE)(conn, stop)

    sample = collect(url=serve(slow).url(), expect_text="Dịch vụ công")
    assert sample.outcome == "ok", sample.error
    assert float(sample.fields["ttfb_ms"]) >= 400
    assert "cert_days" not in sample.fields  # plain HTTP


def test_a_system_slower_than_the_timeout_is_down_within_it(
    serve: Callable[..., RawServer],
) -> None:
    def silent(_conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(10)

    started = time.monotonic()
    sample = collect(url=serve(silent).url(), timeout=Duration(0.5))
    assert time.monotonic() - started < 2.0
    assert sample.outcome == "down"
    assert sample.error == "timed out after 0.5 s: connected, no answer"
    assert sample.fields["up"] is False
    assert "connect_ms" in sample.fields and "status" not in sample.fields


# ---- the wrong page ----------------------------------------------------------------


def test_a_login_page_answering_200_is_a_bad_response(serve: Callable[..., RawServer]) -> None:
    sample = collect(url=serve(answer(LOGIN)).url(), expect_text="Dịch vụ công")
    assert sample.outcome == "bad_response"
    assert sample.fields["status"] == 200 and sample.fields["up"] is False
    assert sample.error == (
        "answered 200 but 'Dịch vụ công' not in the page (a login or captive page?)"
    )


def test_a_redirect_to_a_login_page_is_not_followed(serve: Callable[..., RawServer]) -> None:
    login = serve(answer(LOGIN)).url("/login")
    server = serve(answer("", "302 Found", (f"Location: {login}",)))
    sample = collect(url=server.url(), expect_status=[200])
    assert sample.outcome == "bad_response"
    assert sample.fields["status"] == 302
    assert sample.error == f"answered 302 to {login}, expected 200"
    # Without expect_status a redirect is a healthy answer (the portal's own front door).
    assert collect(url=server.url()).outcome == "ok"


def test_a_server_error_is_a_bad_response(serve: Callable[..., RawServer]) -> None:
    sample = collect(url=serve(answer("oops", "503 Service Unavailable")).url())
    assert sample.outcome == "bad_response"
    assert sample.error == "answered 503, expected 2xx or 3xx"


def test_the_text_matches_however_its_letters_were_composed_or_written(
    serve: Callable[..., RawServer],
) -> None:
    decomposed = unicodedata.normalize("NFD", PAGE)
    assert "Dịch vụ công" not in decomposed
    assert collect(url=serve(answer(decomposed)).url(), expect_text="Dịch vụ công").outcome == "ok"
    escaped = "<p>D&#7883;ch v&#7909; c&ocirc;ng</p>"
    assert collect(url=serve(answer(escaped)).url(), expect_text="Dịch vụ công").outcome == "ok"
    wrapped = "<p>Dịch vụ\n        công&nbsp;trực tuyến</p>"  # as an editor wraps lines
    assert collect(url=serve(answer(wrapped)).url(), expect_text="Dịch vụ công").outcome == "ok"
    wanted = unicodedata.normalize("NFD", "Dịch vụ công")  # as a config editor may store it
    assert collect(url=serve(answer(PAGE)).url(), expect_text=wanted).outcome == "ok"


def test_a_vietnamese_address_is_asked_for_as_a_browser_asks(
    serve: Callable[..., RawServer],
) -> None:
    requests: list[bytes] = []

    def record(conn: socket.socket, stop: threading.Event) -> None:
        requests.append(conn.recv(4096))  # the request as it came (reads=False)
        answer(PAGE)(conn, stop)

    server = serve(record, reads=False)
    sample = collect(url=server.url("/tra-cứu?q=đất đai"), expect_text="Dịch vụ công")
    assert sample.outcome == "ok", sample.error
    head = requests[0].split(b"\r\n")
    assert head[0] == b"GET /tra-c%E1%BB%A9u?q=%C4%91%E1%BA%A5t%20%C4%91ai HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"Accept-Encoding: identity" in head and b"Connection: close" in head


def test_a_page_that_is_not_utf8_is_read_with_replacements(
    serve: Callable[..., RawServer],
) -> None:
    body = b"<html>\xff\xfe Cong dich vu \xe0\xe1 \xc0</html>"
    sample = collect(url=serve(answer(body)).url(), expect_text="Cong dich vu")
    assert sample.outcome == "ok", sample.error
    assert sample.fields["bytes"] == len(body)


def test_a_chunked_page_is_searched_across_its_chunks(serve: Callable[..., RawServer]) -> None:
    def chunked(conn: socket.socket, _stop: threading.Event) -> None:
        encoded = PAGE.encode()
        cut = encoded.index("vụ".encode()) + 1  # inside the letter's bytes
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (encoded[:cut], encoded[cut:]):
            conn.sendall(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    sample = collect(url=serve(chunked).url(), expect_text="Dịch vụ công")
    assert sample.outcome == "ok", sample.error
    assert sample.fields["bytes"] == len(PAGE.encode())


def test_garbage_instead_of_http_is_a_bad_response(serve: Callable[..., RawServer]) -> None:
    def garbage(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    sample = collect(url=serve(garbage).url())
    assert sample.outcome == "bad_response"
    assert sample.error.startswith("not an HTTP answer: b'SSH-2.0")


# ---- down ------------------------------------------------------------------------------


def test_a_closed_port_is_down_refused() -> None:
    port = free_port()
    sample = collect(url=f"http://127.0.0.1:{port}/")
    assert sample.outcome == "down"
    assert sample.error == f"127.0.0.1:{port} refused the connection"
    assert sample.fields == {"up": False}


def test_a_name_whose_every_address_refuses_is_refused_not_unreachable() -> None:
    """A name with an IPv6 and an IPv4 address fails in one OSError naming each attempt,
    as asyncio words it (this machine's localhost has one address: the words are built)."""
    from agent.systemprobe import _all_refused

    def attempts(*codes: int) -> OSError:
        tried = [
            f"[Errno {c}] Connect call failed ('{a}', 443)"
            for c, a in zip(codes, ("::1", "127.0.0.1"), strict=True)
        ]
        return OSError("Multiple exceptions: " + ", ".join(tried))

    assert _all_refused(attempts(errno.ECONNREFUSED, errno.ECONNREFUSED))
    assert not _all_refused(attempts(errno.EHOSTUNREACH, errno.ECONNREFUSED))
    assert not _all_refused(OSError("no errno at all"))


def test_a_name_that_does_not_resolve_is_down_by_dns() -> None:
    sample = collect(url="https://motcua.dong-nai.invalid/", expect_text="Dịch vụ công")
    assert sample.outcome == "down"
    assert sample.error == "DNS: no such name motcua.dong-nai.invalid"
    assert sample.fields == {"up": False}


def test_a_tcp_system_is_up_with_its_connect_time_or_down() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    try:
        sample = collect(host="127.0.0.1", port=port, kind="lgsp")
    finally:
        listener.close()
    assert sample.outcome == "ok", sample.error
    assert sample.target == f"127.0.0.1:{port}"
    assert set(sample.fields) == {"up", "connect_ms"} and sample.fields["up"] is True
    assert sample.tags == {"network": "tslcd", "kind": "lgsp"}
    closed = collect(host="127.0.0.1", port=port)
    assert closed.outcome == "down" and "refused" in closed.error
    unknown = collect(host="lgsp.dong-nai.invalid", port=8443)
    assert (unknown.outcome, unknown.error) == ("down", "DNS: no such name lgsp.dong-nai.invalid")


# ---- hostile servers: bounded by the timeout and the read caps --------------------------


def bounded(**options: object) -> tuple[Sample, float, int]:
    """The sample, the run's duration and the memory it took at its peak."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        sample = collect(**options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return sample, time.monotonic() - started, peak


def test_a_slowloris_costs_the_timeout_and_no_more(serve: Callable[..., RawServer]) -> None:
    def slowloris(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.1):
            conn.sendall(b"X")

    sample, took, _ = bounded(url=serve(slowloris).url(), timeout=Duration(0.6))
    assert took < 1.6
    assert sample.outcome == "down"
    assert sample.error == "timed out after 0.6 s: the answer's headers were still arriving"
    assert float(sample.fields["ttfb_ms"]) < 600


def test_a_slowloris_body_is_down_with_what_it_had_said(serve: Callable[..., RawServer]) -> None:
    def dribble(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.wait(0.1):
            conn.sendall(b"a")

    sample, took, _ = bounded(url=serve(dribble).url(), timeout=Duration(0.6))
    assert took < 1.6
    assert sample.outcome == "down"
    assert sample.error.startswith("timed out after 0.6 s: answered 200 but the page was still")
    assert sample.fields["status"] == 200


def test_a_whole_answer_on_a_connection_held_open_is_ok_and_costs_a_second_more(
    serve: Callable[..., RawServer], pki: Pki
) -> None:
    """The server never closes nor answers the TLS goodbye: the page is in, so the wait
    to close politely (a second at most, outside the request's deadline) changes nothing."""

    def hold(conn: socket.socket, stop: threading.Event) -> None:
        answer(PAGE)(conn, stop)
        stop.wait(10)

    sample, took, _ = bounded(
        url=serve(hold, tls(pki)).url(), verify_tls=False, timeout=Duration(0.5)
    )
    assert sample.outcome == "ok", sample.error
    assert took < 2.0


def test_endless_headers_are_cut_at_the_cap(serve: Callable[..., RawServer]) -> None:
    def endless(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while True:
            conn.sendall(b"X-Filler: " + b"a" * 2000 + b"\r\n")

    sample, took, peak = bounded(url=serve(endless).url(), timeout=Duration(5))
    assert took < 2.0 and peak < 4 * 2**20
    assert (sample.outcome, sample.error) == ("bad_response", "more than 64 KiB of headers")


def test_a_header_line_without_end_is_cut_at_the_cap(serve: Callable[..., RawServer]) -> None:
    def endless(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Filler: ")
        while True:
            conn.sendall(b"a" * 4096)

    sample, took, peak = bounded(url=serve(endless).url(), timeout=Duration(5))
    assert took < 2.0 and peak < 4 * 2**20
    assert (sample.outcome, sample.error) == ("bad_response", "a header line longer than 16 KiB")


@pytest.mark.parametrize("length", ["", "Content-Length: 1000000000000\r\n"], ids=["none", "huge"])
def test_an_endless_body_is_read_up_to_the_cap(
    serve: Callable[..., RawServer], length: str
) -> None:
    def endless(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\n{length}\r\n".encode() + PAGE.encode())
        while True:
            conn.sendall(b"a" * 65536)

    sample, took, peak = bounded(url=serve(endless).url(), timeout=Duration(5))
    assert took < 2.0 and peak < 4 * 2**20
    assert sample.outcome == "ok", sample.error
    assert sample.fields["bytes"] == MAX_BODY
    missing = collect(url=serve(endless).url(), expect_text="Hệ thống")
    assert missing.outcome == "bad_response"
    assert "not in the page (its first 256 KiB)" in missing.error


# ---- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({}, "url", "either url"),
        ({"url": "https://a.vn/", "host": "a.vn", "port": 443}, "url", "either url"),
        ({"url": "ftp://a.vn/"}, "url", "http:// or https://"),
        ({"url": "https://:443/"}, "url", "http:// or https://"),
        ({"url": "https://a.vn:99999/"}, "url", "not a URL"),
        ({"url": "https://admin:pw@a.vn/"}, "url", "no user or password"),
        ({"url": "https://a.vn/", "port": 443}, "port", "in the url"),
        ({"host": "a.vn"}, "port", "needs its port"),
        ({"host": "a.vn", "port": 443, "expect_text": "x"}, "expect_text", "no page"),
        ({"url": "https://a..vn/"}, "url", "not a host name"),
        ({"name": "", "url": "https://a.vn/"}, "name", "catalogue's id"),
    ],
)
def test_a_system_table_that_cannot_work_is_refused_by_key(
    options: dict[str, object], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigProblem) as caught:
        SystemOptions(**({"name": "x", "network": "tslcd"} | options)).validate()  # type: ignore[arg-type]
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_every_key_of_a_system_table_may_come_from_the_collector() -> None:
    from agent.config import parse_checks

    table = {
        "name": "mot-cua",
        "url": "https://motcua.dongnai.gov.vn/",
        "network": "tslcd",
        "expect_status": [200],
        "expect_text": "Dịch vụ công",
        "verify_tls": True,
        "timeout": "10s",
        "interval": "2m",
        "system": "Hệ thống một cửa điện tử",
        "kind": "one-stop",
    }
    assert set(table) == set(SystemOptions.__struct_fields__) - {"host", "port"}
    assert not SystemOptions.local_only_keys
    checks = parse_checks({"system": [table]}, "collector config v3", remote=True)
    assert checks.system[0].expect_text == "Dịch vụ công"
    tcp = {"name": "lgsp", "host": "lgsp.dongnai.gov.vn", "port": 8443, "network": "tslcd"}
    assert (
        parse_checks({"system": [tcp]}, "collector config v3", remote=True).system[0].port == 8443
    )


def test_a_profile_may_name_systems_and_a_commune_its_own_website(tmp_path: Path) -> None:
    from collector.rollout.profiles import ProfileError, parse_profiles

    def profiles(website: str) -> dict[str, object]:
        return {
            "province": "dong-nai",
            "communes": {"la-nga": {"website": website}},
            "profiles": {
                "poller": {
                    "checks": {
                        "system": [
                            {"name": "mot-cua", "url": "https://motcua.dongnai.gov.vn/",
                             "network": "tslcd", "expect_text": "Dịch vụ công",
                             "kind": "one-stop"},
                            {"name": "website", "url": "${website}", "network": "internet",
                             "kind": "website"},
                        ]
                    }
                }
            },
        }  # fmt: skip

    loaded = parse_profiles(profiles("https://langa.dongnai.gov.vn/"), "dong-nai.toml", tmp_path)
    effective = loaded.effective("la-nga", "poller", "poller")
    assert [c["url"] for c in effective.checks["system"]] == [
        "https://motcua.dongnai.gov.vn/",
        "https://langa.dongnai.gov.vn/",
    ]
    with pytest.raises(ProfileError, match=r"checks\.system\[1\]\.url: an http:// or https://"):
        parse_profiles(profiles("langa.dongnai.gov.vn"), "dong-nai.toml", tmp_path)  # at load


# ---- the whole path: agent config, runner, envelope, collector ingest, store --------------


def test_system_samples_travel_from_the_agents_config_to_the_collectors_store(
    tmp_path: Path, serve: Callable[..., RawServer], pki: Pki
) -> None:
    from agent.config import load_config
    from agent.runner import run_once
    from agent.wire import encode
    from collector.ingest.ingestor import Ingestor, Message
    from collector.state.store import StateStore, agent_key

    healthy = serve(answer(PAGE), tls(pki, days=5))
    login = serve(answer(LOGIN))
    closed = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
province = "dong-nai"
commune = "la-nga"
id = "poller"
state_dir = "{tmp_path / "state"}"

[[checks.system]]
name = "mot-cua"
url = "{healthy.url()}"
network = "tslcd"
verify_tls = false
expect_text = "Dịch vụ công"
system = "Hệ thống một cửa điện tử"
kind = "one-stop"

[[checks.system]]
name = "qlvb"
url = "{login.url()}"
network = "tslcd"
expect_text = "Văn bản đến"
kind = "documents"

[[checks.system]]
name = "lgsp"
host = "127.0.0.1"
port = {closed}
network = "tslcd"
timeout = "2s"
kind = "lgsp"
""",
        encoding="utf-8",
    )
    envelopes = run_once(load_config(config))
    store = StateStore(tmp_path / "state.sqlite")
    try:
        ingestor = Ingestor(store, "commune")
        ingestor.process(
            Message("commune/dong-nai/la-nga/poller/data", encode(e), time.time(), lambda: None)
            for e in envelopes
        )
        assert ingestor.stats.applied_envelopes == 3
        assert not ingestor.stats.rejected
        latest = {s.name: s for s in store.latest(agent_key("dong-nai", "la-nga", "poller"))}
        subjects = {s.name: s for s in store.subjects("system")}
    finally:
        store.close()
    assert {name: s.outcome for name, s in latest.items()} == {
        "mot-cua": "ok",
        "qlvb": "bad_response",
        "lgsp": "down",
    }
    assert latest["mot-cua"].tags["system"] == "Hệ thống một cửa điện tử"
    assert 4.9 < latest["mot-cua"].fields["cert_days"] <= 5.0
    assert latest["qlvb"].error.startswith("answered 200 but 'Văn bản đến' not in the page")
    assert latest["lgsp"].target == f"127.0.0.1:{closed}"
    # up feeds each system's history, seen from this commune, on its network.
    assert {name: (s.state, s.network) for name, s in subjects.items()} == {
        "mot-cua": ("up", "tslcd"),
        "qlvb": ("down", "tslcd"),
        "lgsp": ("down", "tslcd"),
    }


def test_the_collectors_pages_and_api_take_a_commune_with_system_samples(tmp_path: Path) -> None:
    """Before the console has a page of systems, their samples break none of the others."""
    from agent.wire import Envelope
    from collector.config import ApiSection, ConsoleSection
    from collector.state.health import HealthModel
    from collector.web.factory import create_app
    from tests.servers import AppServer
    from tests.test_health import INVENTORY, T0, build_province

    store = build_province(tmp_path)
    looks = [
        Sample(ts=T0 + 2000, check="system", name="mot-cua", outcome="ok",
               target="https://motcua.dongnai.gov.vn/",
               fields={"up": True, "status": 200, "ttfb_ms": 180.5, "total_ms": 240.0,
                       "connect_ms": 30.1, "cert_days": 4.5, "bytes": 51234},
               tags={"network": "tslcd", "system": "Hệ thống một cửa điện tử",
                     "kind": "one-stop"}),
        Sample(ts=T0 + 2000, check="system", name="lgsp", outcome="down",
               target="lgsp.dongnai.gov.vn:8443", fields={"up": False},
               tags={"network": "tslcd", "kind": "lgsp"},
               error="lgsp.dongnai.gov.vn:8443 refused the connection"),
    ]  # fmt: skip
    store.apply(
        [Envelope(v=1, agent="poller", province="dong-nai", commune="la-nga", seq=9,
                  ts=T0 + 2000, samples=looks)]
    )  # fmt: skip
    app = create_app(HealthModel(store, [INVENTORY]), store,
                     ApiSection(listen="127.0.0.1:0", open_on_loopback=True),
                     console=ConsoleSection())  # fmt: skip
    served = AppServer(app).start()
    try:
        for path in ("/", "/communes/la-nga", "/agents/dong-nai/la-nga/poller",
                     "/api/v1/province", "/api/v1/communes/la-nga",
                     "/api/v1/agents/dong-nai/la-nga/poller"):  # fmt: skip
            with urllib.request.urlopen(served.url + path, timeout=10) as response:
                assert response.status == 200, path
                page = response.read().decode()
            if path.startswith("/agents/"):
                assert "mot-cua" in page and "refused the connection" in page
        assert {s.name: s.state for s in store.subjects("system")} == {
            "mot-cua": "up",
            "lgsp": "down",
        }
    finally:
        served.stop()
        store.close()
