"""Slow and abusive HTTP clients against `commune-collector run` serving HTTPS, alone (no
reverse proxy): slow-loris, slow bodies, idle keep-alive, TLS handshakes that never end,
connection floods from one address and from many, garbage requests.

Each time a good client on 127.0.0.1 keeps asking for /healthz on new connections and
must be answered within seconds all along; the attackers' connections are closed at the
cap or at their deadline, counted in /metrics by reason; and the collector's log grows by
a few lines, not one per connection (a review once saw 206 MB in a minute).

The server's limits are lowered for the tests to take seconds: deadlines of 2 s (1 s for
keep-alive), 8 connections per address, 100 in all.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.slow import (
    GoodClient,
    HttpsConnection,
    close_all,
    connect,
    is_closed,
    is_tls_closed,
    send_quietly,
    slowloris,
    source,
    tls_connect,
)
from tests.servers import API_TOKEN, REPO, CollectorProcess, Mosquitto, wait_for, wait_tcp
from tests.tls import make_pki

DEADLINE_S = 2.0
PER_ADDRESS, TOTAL = 8, 100
LIMITS = f"""\
header_timeout = "{DEADLINE_S:g}s"
body_timeout = "{DEADLINE_S:g}s"
keep_alive_timeout = "1s"
tls_handshake_timeout = "{DEADLINE_S:g}s"
max_requests_per_connection = 3
max_connections = {TOTAL}
max_connections_per_address = {PER_ADDRESS}
"""
#: How long past a deadline a connection may stay open on a busy 2-core machine: the
#: handshake sweep runs every half second, the loop may lag.
SLACK_S = 6.0
#: What the good client may wait for an answer, retries included.
ANSWER_WITHIN_S = 5.0
#: What the log may grow by during one attack: a few lines, one per reason at most.
LOG_LINES, LOG_BYTES = 8, 2000


class LimitedCollector(CollectorProcess):
    """`commune-collector run` with its open-file limit lowered (prlimit)."""

    def __init__(self, *args: object, nofile: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nofile = nofile

    def start(self) -> LimitedCollector:
        command = [sys.executable, "-m", "collector.cli", "run", "-c", str(self.config)]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                ["prlimit", f"--nofile={self.nofile}:{self.nofile}", *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_tcp(self.api_port, 20)
        return self


@dataclass
class Site:
    collector: CollectorProcess
    tls: ssl.SSLContext

    @property
    def port(self) -> int:
        return self.collector.api_port

    def good_client(self) -> GoodClient:
        return GoodClient(self.port, self.tls, give_up_s=ANSWER_WITHIN_S * 3)

    def metrics(self) -> str:
        for _ in range(50):  # the connection itself may meet a cap being tested: again
            connection = HttpsConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
            try:
                connection.request(
                    "GET", "/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"}
                )
                with connection.getresponse() as answer:
                    assert answer.status == 200, answer.status
                    return answer.read().decode()
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
            finally:
                connection.close()
        raise AssertionError("/metrics did not answer")

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        line = f"{name}{{{wanted}}}" if labels else name
        for text in self.metrics().splitlines():
            if text.startswith(line + " "):
                return float(text.rsplit(" ", 1)[1])
        raise AssertionError(f"{line} not in /metrics")

    def log_size(self) -> int:
        return self.collector.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.collector.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


def start_site(workdir: Path, api: str = LIMITS, nofile: int = 0) -> Iterator[Site]:
    pki = make_pki(workdir / "pki")
    api_lines = f'tls_cert_file = "{pki.server_cert}"\ntls_key_file = "{pki.server_key}"\n' + api
    broker = Mosquitto(workdir / "broker").start()
    collector: CollectorProcess
    if nofile:
        collector = LimitedCollector(
            workdir / "collector", broker.port, api=api_lines, nofile=nofile
        )
    else:
        collector = CollectorProcess(workdir / "collector", broker.port, api=api_lines)
    try:
        collector.start()
        site = Site(collector, ssl.create_default_context(cafile=str(pki.ca)))
        assert site.good_client().ask() < ANSWER_WITHIN_S
        # The start's last word (the console's warm-up, in a thread of its own) is said
        # before the abuse begins: on a busy machine it came amid a test's log.
        deadline = time.monotonic() + 120
        while not any(w in site.log_since(0) for w in ("overview warmed", "could not warm")):
            assert time.monotonic() < deadline, site.log_since(0)[-3000:]
            time.sleep(0.2)
        yield site
    finally:
        collector.stop()
        broker.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from start_site(tmp_path_factory.mktemp("slow-clients"))


def check_the_log(site: Site, offset: int, *allowed: str) -> str:
    """The log grew by a few lines at most, each about the API's connections (or one of
    ``allowed``), and not one line per connection."""
    grown = site.log_since(offset)
    lines = grown.splitlines()
    assert len(lines) <= LOG_LINES and len(grown.encode()) <= LOG_BYTES, grown[-3000:]
    assert "Traceback" not in grown and "out of system resource" not in grown, grown[-3000:]
    for line in lines:
        assert "api: " in line or any(word in line for word in allowed), line
    return grown


def check_served(good: GoodClient) -> None:
    assert good.unanswered == 0 and len(good.latencies) >= 3, good.summary()
    assert max(good.latencies) < ANSWER_WITHIN_S, good.summary()
    assert all(status in (200, 503) for status in good.statuses), good.statuses


def test_slowloris_connections_are_closed_at_the_header_deadline(site: Site) -> None:
    """The review's case: TLS connections each holding half a request line, from 12
    addresses (8 each, the per-address cap): all of them closed ~2 s in."""
    before = site.metric("commune_collector_http_connections_timed_out_total", phase="headers")
    offset = site.log_size()
    with site.good_client().throughout() as good:
        started = time.monotonic()
        held = slowloris(site.port, [source(i) for i in range(12)], PER_ADDRESS, site.tls)
        assert len(held) == 12 * PER_ADDRESS
        try:
            wait_for(
                lambda: all(is_tls_closed(s) for s in held),  # type: ignore[arg-type]
                DEADLINE_S + SLACK_S,
                "slow-loris connections still open past the header deadline",
            )
            took = time.monotonic() - started
        finally:
            close_all(held)
    assert took >= DEADLINE_S * 0.9  # closed by the deadline, not at once
    after = site.metric("commune_collector_http_connections_timed_out_total", phase="headers")
    assert after - before >= len(held)
    check_served(good)
    check_the_log(site, offset)


def test_a_slow_body_is_cut_at_the_body_deadline(site: Site) -> None:
    before = site.metric("commune_collector_http_connections_timed_out_total", phase="body")
    offset = site.log_size()
    head = (
        "POST /api/v1/silences HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    with site.good_client().throughout() as good:
        started = time.monotonic()
        dribbling = []
        for i in range(15):
            sock = tls_connect(site.port, source(30 + i % 3), site.tls)
            assert sock is not None
            assert send_quietly(sock, head + b'{"commune": "la-nga", ')
            dribbling.append(sock)
        try:
            while time.monotonic() - started < DEADLINE_S + SLACK_S:
                open_ones = [s for s in dribbling if not is_tls_closed(s)]
                if not open_ones:
                    break
                for sock in open_ones:
                    sock.setblocking(True)
                    send_quietly(sock, b" ")  # a byte every 0.2 s: 1,000 would take minutes
                time.sleep(0.2)
            took = time.monotonic() - started
        finally:
            close_all(dribbling)
    assert DEADLINE_S * 0.9 <= took < DEADLINE_S + SLACK_S, took
    after = site.metric("commune_collector_http_connections_timed_out_total", phase="body")
    assert after - before >= len(dribbling)
    check_served(good)
    check_the_log(site, offset)


def test_keep_alive_is_bounded_in_time_and_in_requests(site: Site) -> None:
    before = site.metric("commune_collector_http_connections_timed_out_total", phase="idle")
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    idle = tls_connect(site.port, source(40), site.tls)
    assert idle is not None
    idle.sendall(request)
    assert read_answer(idle)[0] in (200, 503)
    answered = time.monotonic()
    wait_for(lambda: is_tls_closed(idle), 1 + SLACK_S, "an idle connection stayed open")
    assert time.monotonic() - answered >= 0.9
    idle.close()
    assert (
        site.metric("commune_collector_http_connections_timed_out_total", phase="idle") - before
        >= 1
    )
    # Three requests on one connection at most: the third answer says so, then it ends.
    busy = tls_connect(site.port, source(41), site.tls)
    assert busy is not None
    headers = []
    for _ in range(3):
        busy.sendall(request)
        headers.append(read_answer(busy)[1])
    assert ["connection: close" in h.lower() for h in headers] == [False, False, True]
    wait_for(lambda: is_tls_closed(busy), SLACK_S, "the connection outlived its last request")
    busy.close()


def read_answer(sock: ssl.SSLSocket) -> tuple[int, str]:
    """One HTTP answer (status, headers) with its Content-Length body, read whole."""
    sock.setblocking(True)
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode()
    length = int(re.search(r"content-length: (\d+)", text, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)
    return int(text.split(" ", 2)[1]), text


def test_a_tls_handshake_that_never_ends_is_cut(site: Site) -> None:
    """Connections that say nothing, or half a ClientHello, after TCP's handshake."""
    before = site.metric("commune_collector_http_connections_timed_out_total", phase="handshake")
    offset = site.log_size()
    with site.good_client().throughout() as good:
        started = time.monotonic()
        silent = [connect(site.port, source(50 + i // 8)) for i in range(40)]
        held = [s for s in silent if s is not None]
        for sock in held[::2]:
            send_quietly(sock, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        try:
            wait_for(
                lambda: all(is_closed(s) for s in held),
                DEADLINE_S + SLACK_S,
                "handshakes still open past their deadline",
            )
            took = time.monotonic() - started
        finally:
            close_all(held)
    assert len(held) == 40 and took >= DEADLINE_S * 0.9
    after = site.metric("commune_collector_http_connections_timed_out_total", phase="handshake")
    assert after - before >= len(held)
    check_served(good)
    check_the_log(site, offset)


def test_a_flood_from_one_address_is_refused_at_accept(site: Site) -> None:
    before = site.metric("commune_collector_http_connections_refused_total", reason="per_address")
    offset = site.log_size()
    with site.good_client().throughout() as good:
        flood = [connect(site.port, "127.0.0.200") for _ in range(300)]
        held = [s for s in flood if s is not None]
        try:
            # Over the cap: reset at once, before any TLS work.
            wait_for(
                lambda: sum(not is_closed(s) for s in held) <= PER_ADDRESS,
                SLACK_S,
                "more connections open from one address than its cap",
            )
            assert sum(not is_closed(s) for s in held) == PER_ADDRESS
            time.sleep(1)  # the good client asks a few times meanwhile
        finally:
            close_all(held)
    refused = (
        site.metric("commune_collector_http_connections_refused_total", reason="per_address")
        - before
    )
    assert refused >= 300 - PER_ADDRESS
    check_served(good)
    grown = check_the_log(site, offset)
    assert grown.count("max_connections_per_address") <= 1


def test_a_flood_from_many_addresses_meets_the_total_cap_and_the_good_client_gets_in(
    site: Site,
) -> None:
    """200 connections held by 25 addresses against a cap of 100 in all: the newcomers
    over it are refused, and a good client coming after them takes the place of one that
    has waited (a second) without a request."""
    refused_before = site.metric("commune_collector_http_connections_refused_total", reason="total")
    evicted_before = site.metric("commune_collector_http_connections_evicted_total")
    offset = site.log_size()
    flood: list[socket.socket | None] = []
    for i in range(25):
        flood += [connect(site.port, source(60 + i)) for _ in range(PER_ADDRESS)]
    held = [s for s in flood if s is not None]
    try:
        with site.good_client().throughout() as good:
            time.sleep(1.5)
    finally:
        close_all(held)
    refused = site.metric("commune_collector_http_connections_refused_total", reason="total")
    evicted = site.metric("commune_collector_http_connections_evicted_total")
    # Each one over the cap was refused, or (on a slow machine, a second into the flood)
    # took the place of one that had waited; the good client's did.
    assert (refused - refused_before) + (evicted - evicted_before) >= 25 * PER_ADDRESS - TOTAL
    assert evicted > evicted_before
    check_served(good)
    check_the_log(site, offset)


def test_garbage_requests_leave_one_line_in_the_log(site: Site) -> None:
    offset = site.log_size()
    for i in range(60):
        sock = tls_connect(site.port, source(90 + i % 6), site.tls)
        assert sock is not None
        send_quietly(sock, b"\x00\x01 NOT HTTP AT ALL\r\n\r\n")
        sock.close()
    assert site.good_client().ask() < ANSWER_WITHIN_S
    wait_for(
        lambda: "Invalid HTTP request" in site.log_since(offset),
        SLACK_S,
        "uvicorn did not log the bad requests at all",
    )
    time.sleep(0.5)
    grown = check_the_log(site, offset, "Invalid HTTP request")
    assert grown.count("Invalid HTTP request") == 1, grown


def test_accept_never_runs_out_of_descriptors_under_a_low_open_file_limit(
    tmp_path: Path,
) -> None:
    """The review's end state: with the open-file limit lowered to 400, 320 connections
    from 40 addresses. The cap in all is lowered to fit (400 less 256 for the rest, with a
    warning naming the key), accept() never meets EMFILE, /healthz answers throughout."""
    api = LIMITS.replace(f"max_connections = {TOTAL}", "max_connections = 1000")
    for site in start_site(tmp_path, api, nofile=400):
        assert site.metric("commune_collector_http_connections_max") == 400 - 256
        assert "max_connections = 1000 cannot be held" in site.collector.log
        offset = site.log_size()
        with site.good_client().throughout() as good:
            flood = [connect(site.port, source(i // 8)) for i in range(320)]
            held = [s for s in flood if s is not None]
            try:
                time.sleep(1.5)
            finally:
                close_all(held)
        assert site.metric("commune_collector_http_accept_out_of_descriptors_total") == 0
        assert site.metric("commune_collector_http_connections_refused_total", reason="total") > 0
        check_served(good)
        check_the_log(site, offset)
