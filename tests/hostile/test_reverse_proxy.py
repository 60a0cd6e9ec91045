"""deploy/nginx/commune-collector.conf, run by Debian's nginx on loopback (its paths and ports
substituted, nothing else) in front of the collector's app on its own server: the client's
address is believed through it (the lockout counts the client, not the proxy), and the
proxy's own limits hold against slow and greedy clients."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.config import ApiSection, ApiToken, ConsoleSection
from collector.state.health import HealthModel
from collector.web.factory import create_app
from tests.hostile.slow import (
    HALF_A_REQUEST_LINE,
    HttpsConnection,
    close_all,
    connect,
    is_closed,
    is_tls_closed,
    send_quietly,
    source,
    tls_connect,
)
from tests.servers import REPO, AppServer, free_port, stop_process, wait_for, wait_tcp
from tests.test_health import INVENTORY, build_province
from tests.tls import make_pki

CONF = REPO / "deploy" / "nginx" / "commune-collector.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "technician-token-behind-nginx"
MAX_AUTH_FAILURES = 3
HEADER_TIMEOUT_S = 5.0  # client_header_timeout in the shipped config
SLACK_S = 6.0


def shipped(conf: str, name: str) -> str:
    """A directive's value in the shipped config, for the test to hold it to."""
    named = name.split()
    for line in conf.splitlines():
        words = line.strip().rstrip(";").split()
        if words[: len(named)] == named:
            return " ".join(words[len(named) :])
    raise AssertionError(f"{name} not in {CONF}")


@dataclass
class Proxy:
    port: int
    tls: ssl.SSLContext
    workdir: Path

    def request(
        self, method: str, path: str, address: str, body: bytes = b"", **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = HttpsConnection("127.0.0.1", self.port, timeout=10, context=self.tls,
                                     source_address=(address, 0))  # fmt: skip
        try:
            connection.request(method, path, body=body or None, headers=headers)
            with connection.getresponse() as answer:
                return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} missing: apt-get install nginx (.ci/run does)")
    workdir = tmp_path_factory.mktemp("nginx")
    store = build_province(workdir)
    secret = workdir / "console-secret"
    secret.write_text("s" * 48 + "\n")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = ApiSection(
        tokens=[ApiToken(name="tech", role="technician", sha256=digest)],
        trusted_proxies=["127.0.0.1"],
        max_auth_failures=MAX_AUTH_FAILURES,
    )
    app = create_app(HealthModel(store, [INVENTORY]), store, settings,
                     console=ConsoleSection(secret_file=str(secret)))  # fmt: skip
    collector = AppServer(app).start()
    pki = make_pki(workdir / "pki")
    port = free_port()
    site = (
        CONF.read_text()
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("/etc/commune-collector/api.crt", str(pki.server_cert))
        .replace("/etc/commune-collector/api.key", str(pki.server_key))
        .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{collector.port};")
    )
    (workdir / "commune-collector.conf").write_text(site)
    for kind in ("proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / kind).mkdir()
    # The main config Debian's package would hold, in the test's own directory.
    temp_paths = "".join(
        f"  {kind}_temp_path {workdir}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"user root;\ndaemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log info;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log {workdir}/access.log;\n{temp_paths}"
        f"  include {workdir}/commune-collector.conf;\n}}\n"
    )
    (workdir / "client_body").mkdir()
    check = subprocess.run(
        [NGINX, "-t", "-c", str(workdir / "nginx.conf")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-c", str(workdir / "nginx.conf")])
    try:
        wait_tcp(port, 10)
        yield Proxy(port, ssl.create_default_context(cafile=str(pki.ca)), workdir)
    finally:
        stop_process(process)
        collector.stop()
        store.close()


def test_the_shipped_config_holds_the_limits_the_tests_rely_on() -> None:
    conf = CONF.read_text()
    assert shipped(conf, "client_header_timeout") == f"{HEADER_TIMEOUT_S:g}s"
    assert shipped(conf, "proxy_set_header X-Forwarded-For") == "$remote_addr"
    assert shipped(conf, "limit_conn") == "commune_conn 32"


def test_the_lockout_counts_the_client_behind_the_proxy(proxy: Proxy) -> None:
    guesser, colleague = source(0), source(1)
    for _ in range(MAX_AUTH_FAILURES):
        status, _, _ = proxy.request(
            "GET", "/api/v1/province", guesser, Authorization="Bearer wrong-token",
            **{"X-Forwarded-For": "203.0.113.9"},  # its own claim: replaced by nginx
        )  # fmt: skip
        assert status == 401
    # The guesser is locked out, even with the right token...
    status, headers, body = proxy.request(
        "GET", "/api/v1/province", guesser, Authorization=f"Bearer {TOKEN}"
    )
    assert status == 429 and "too many wrong tokens" in json.loads(body)["detail"]
    assert int(headers["retry-after"]) > 0
    # ... and only the guesser: another client through the same proxy is served.
    status, _, _ = proxy.request(
        "GET", "/api/v1/province", colleague, Authorization=f"Bearer {TOKEN}"
    )
    assert status == 200


def test_logins_are_rate_limited_per_client_by_the_proxy(proxy: Proxy) -> None:
    """burst=5 at 10 a minute: the seventh login in a row from one address is refused by
    nginx (even with the right token: the collector would let it in)."""
    login = urllib.parse.urlencode({"token": TOKEN}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answers = [proxy.request("POST", "/login", source(2), login, **form) for _ in range(8)]
    assert [status for status, _, _ in answers] == [303] * 6 + [429] * 2
    assert all(b"nginx" in body for _, _, body in answers[6:])  # nginx's, not the app's
    # The form still shows, and another client's login is not held up.
    assert proxy.request("GET", "/login", source(2))[0] == 200
    assert proxy.request("POST", "/login", source(3), login, **form)[0] == 303


def test_the_proxy_closes_slow_clients_at_its_header_timeout(proxy: Proxy) -> None:
    """Half a request line after TLS, and a TLS handshake never begun: both closed by
    nginx at client_header_timeout, while a good client is answered."""
    started = time.monotonic()
    slow = [tls_connect(proxy.port, source(10 + i // 8), proxy.tls) for i in range(16)]
    held_tls = [s for s in slow if s is not None]
    for sock in held_tls:
        assert send_quietly(sock, HALF_A_REQUEST_LINE)
    silent = [connect(proxy.port, source(12)) for _ in range(8)]
    held = [s for s in silent if s is not None]
    assert len(held_tls) == 16 and len(held) == 8
    try:
        assert proxy.request("GET", "/healthz", "127.0.0.1")[0] in (200, 503)
        wait_for(
            lambda: all(is_tls_closed(s) for s in held_tls) and all(is_closed(s) for s in held),
            HEADER_TIMEOUT_S + SLACK_S,
            "nginx kept slow clients past client_header_timeout",
        )
        took = time.monotonic() - started
    finally:
        close_all([*held_tls, *held])
    assert took >= HEADER_TIMEOUT_S * 0.9, took
    assert proxy.request("GET", "/healthz", "127.0.0.1")[0] in (200, 503)


def test_the_proxy_bounds_requests_in_progress_per_client(proxy: Proxy) -> None:
    """40 requests from one address sending their bodies slowly: 32 held (limit_conn),
    the rest answered 429 at once; another address is served meanwhile."""
    head = (
        b"POST /api/v1/silences HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    greedy = [tls_connect(proxy.port, source(20), proxy.tls) for _ in range(40)]
    held = [s for s in greedy if s is not None]
    assert len(held) == 40
    answers = {id(s): b"" for s in held}

    def refused() -> int:
        for sock in held:
            answers[id(sock)] += waiting(sock)
        return sum(a.startswith(b"HTTP/1.1 429") for a in answers.values())

    try:
        for sock in held:
            assert send_quietly(sock, head)
        wait_for(lambda: refused() >= 40 - 32, SLACK_S, "nginx let every request in")
        assert proxy.request("GET", "/healthz", source(21))[0] in (200, 503)
        time.sleep(0.3)
        assert refused() == 40 - 32  # and the 32 others are still sending their bodies
        assert sum(a == b"" for a in answers.values()) == 32
    finally:
        close_all(held)
    log = (proxy.workdir / "error.log").read_text()
    assert log.count('limiting connections by zone "commune_conn"') >= 40 - 32


def waiting(sock: ssl.SSLSocket) -> bytes:
    """What the server has sent on this connection, without waiting for more."""
    sock.setblocking(False)
    try:
        return sock.recv(4096)
    except OSError:  # nothing yet (SSLWantReadError), or gone
        return b""
