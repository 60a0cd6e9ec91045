"""link probes against real loopback listeners: open, closed, silent, HTTP, ICMP."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.checks.link import LinkCheck
from agent.checks.options import LinkOptions
from agent.configtypes import Duration
from agent.wire import Sample
from tests.servers import free_port


def collect(**options: object) -> Sample:
    defaults: dict[str, object] = {
        "name": "probe",
        "network": "tslcd",
        "count": 3,
        "timeout": Duration(1),
    }
    samples = LinkCheck(LinkOptions(**(defaults | options))).collect()  # type: ignore[arg-type]
    assert len(samples) == 1
    return samples[0]


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_tcp_to_an_open_port_is_up_with_rtt(listener: int) -> None:
    sample = collect(method="tcp", target="127.0.0.1", port=listener)
    assert sample.outcome == "ok"
    assert sample.fields["up"] == 1
    assert sample.fields["sent"] == 3 and sample.fields["received"] == 3
    assert sample.fields["loss_percent"] == 0.0
    assert 0 < float(sample.fields["rtt_ms"]) < 1000
    assert sample.tags == {"network": "tslcd", "method": "tcp"}


def test_tcp_to_a_closed_port_is_refused_and_down() -> None:
    sample = collect(method="tcp", target="127.0.0.1", port=free_port())
    assert sample.outcome == "refused"
    assert sample.fields["up"] == 0
    assert sample.fields["loss_percent"] == 100.0
    assert "rtt_ms" not in sample.fields
    assert "refused" in sample.error


def test_tcp_to_a_silent_host_times_out() -> None:
    """A listener whose accept queue is full drops SYNs: the connect never completes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        sample = collect(
            method="tcp", target="127.0.0.1", port=port, count=2, timeout=Duration(0.5)
        )
    finally:
        for filler in fillers:
            filler.close()
        server.close()
    assert sample.outcome == "timeout"
    assert sample.fields["up"] == 0
    assert "within 0.5s" in sample.error


def test_unresolvable_name_is_down_not_a_crash() -> None:
    sample = collect(method="tcp", target="no-such-host.invalid", port=80, count=1)
    assert sample.outcome == "down"
    assert sample.fields["up"] == 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            threading.Event().wait(3)
        if self.path == "/superscript":  # "²00" is digits to str.isdigit(), not to int()
            self.wfile.write("HTTP/1.1 \u00b200 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"))
            return
        status = 503 if self.path == "/broken" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def serving(server: http.server.ThreadingHTTPServer, url: str) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    yield from serving(server, f"http://127.0.0.1:{server.server_address[1]}")


def test_http_ok(web: str) -> None:
    sample = collect(method="http", url=f"{web}/", network="internet")
    assert sample.outcome == "ok"
    assert sample.fields["status_code"] == 200
    assert sample.target == f"{web}/"
    assert sample.tags["network"] == "internet"


def test_http_server_error_is_a_bad_response(web: str) -> None:
    sample = collect(method="http", url=f"{web}/broken", network="internet", count=1)
    assert sample.outcome == "bad_response"
    assert sample.fields["up"] == 0
    assert sample.fields["status_code"] == 503


def test_http_expected_status_can_be_narrowed(web: str) -> None:
    sample = collect(method="http", url=f"{web}/", network="internet", count=1, expect_status=[204])
    assert sample.outcome == "bad_response"


def test_http_status_that_is_no_ascii_number_is_a_bad_response(web: str) -> None:
    sample = collect(method="http", url=f"{web}/superscript", network="internet", count=1)
    assert sample.outcome == "bad_response"
    assert "not an HTTP answer" in sample.error


def test_http_silence_is_a_timeout(web: str) -> None:
    sample = collect(
        method="http", url=f"{web}/slow", network="internet", count=1, timeout=Duration(0.5)
    )
    assert sample.outcome == "timeout"


@pytest.fixture
def trickling() -> Iterator[str]:
    """A server that answers a byte every 50 ms and never ends its status line."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            peer, _ = server.accept()
            with peer:
                while not stop.wait(0.05):
                    peer.sendall(b"H")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    server.close()
    thread.join(5)


def test_an_answer_trickling_a_byte_at_a_time_times_out_at_the_probes_deadline(
    trickling: str,
) -> None:
    """Each byte comes well within the timeout: only a deadline for the whole answer ends
    the probe (a timeout per read would wait for ever)."""
    sample = collect(method="http", url=trickling, network="internet", count=1,
                     timeout=Duration(0.5))  # fmt: skip
    assert sample.outcome == "timeout"


def _icmp_allowed_for(gid: int) -> bool:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    return low <= gid <= high


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check the privileged path")
def test_icmp_to_loopback_is_up_with_privileges() -> None:
    sample = collect(method="icmp", target="127.0.0.1")
    assert sample.outcome == "ok"
    assert sample.fields["received"] == 3


UNPRIVILEGED = """
import os, sys
from agent.checks.link import LinkCheck
from agent.checks.options import LinkOptions
import agent.probes, agent.wire, encodings.idna, random, statistics, concurrent.futures.thread
options = LinkOptions(name="p", network="tslcd", method="icmp", target="127.0.0.1", count=2)
check = LinkCheck(options)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sample = check.collect()[0]
print(sample.outcome, sample.fields.get("up"), sample.error)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_icmp_without_permission_is_unsupported_never_down() -> None:
    """As nobody: unprivileged ICMP works only if nogroup is in net.ipv4.ping_group_range."""
    result = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED],
        check=False,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    outcome, up, *error = result.stdout.split(" ", 2)
    if _icmp_allowed_for(65534):
        assert (outcome, up) == ("ok", "1")
    else:
        assert (outcome, up) == ("unsupported", "None")
        assert "ping_group_range" in error[0]


@pytest.fixture
def secure_web(tmp_path: Path) -> Iterator[str]:
    from tests.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from serving(server, f"https://localhost:{server.server_address[1]}/")


def test_https_with_an_untrusted_certificate_is_a_bad_response(secure_web: str) -> None:
    sample = collect(method="http", url=secure_web, network="internet", count=1)
    assert sample.outcome == "bad_response"
    assert "TLS" in sample.error and "CERTIFICATE_VERIFY_FAILED" in sample.error


def test_https_without_verification_is_up(secure_web: str) -> None:
    sample = collect(method="http", url=secure_web, network="internet", count=2, verify_tls=False)
    assert sample.outcome == "ok", sample.error
    assert sample.fields["status_code"] == 200


def test_icmp_not_permitted_says_what_to_do_on_each_system() -> None:
    from agent.probes import icmp_remedy

    assert "administrator" in icmp_remedy("win32") and "CommuneAgent" in icmp_remedy("win32")
    assert "ping_group_range" not in icmp_remedy("win32")
    assert "ping_group_range" in icmp_remedy("linux") and "CAP_NET_RAW" in icmp_remedy("linux")
