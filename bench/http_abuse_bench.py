"""HTTP abuse benchmark: a slow-loris attack on the collector's API, this server against the
one it replaced, measured in the same run.

    .venv/bin/python bench/http_abuse_bench.py [--sockets 1000] [--addresses 40]
        [--seconds 20] [--nofile 1024 512] [--limiter-only]

Serves the collector's app over HTTPS from a process of its own, its open-file limit
lowered to each ``--nofile`` in turn (1024: what a process started from a shell gets
on Debian; 512: below the attack's size, as the review lowered it to show where such
an attack leads; the systemd unit's 65536 only moves that point), by two servers:

- baseline: uvicorn as ``Collector._start_api`` configured it before (no header
  deadline, no connection caps);
- hardened: ``collector/web/server.py`` with the default ``[api]`` limits (headers
  within 10 s, 32 connections per address, 1,000 in all, lowered to fit the limit).

Against each, ``--sockets`` TLS connections from ``--addresses`` loopback addresses
(127.0.0.2, ...) each send half a request line and hold on, while a good client on
127.0.0.1 asks for /healthz on a new connection every 0.2 s for ``--seconds``.
Prints, for each server: the good client's latency (p50, p99, max; a request not
answered within 5 s counts as unanswered), the attack's connections still open at the
end, and what the server's log grew by (lines, bytes, and its first line; counted as
it streams, not kept: the baseline's reaches gigabytes); then the hardened server's
figures as ratios of the baseline's.

First, the wrong-token limiter (``collector/web/ratelimit.py``) under a spray of
addresses: the time per failure with its table holding 100 addresses and holding
10,000 (its bound; every failure then evicts one), alternated in the same run, and
their ratio: about 1 when a failure costs the same however full the table is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.hostile.slow import (  # noqa: E402
    HALF_A_REQUEST_LINE,
    GoodClient,
    close_all,
    is_tls_closed,
    send_quietly,
    source,
    tls_connect,
)
from tests.servers import free_port, stop_process, wait_tcp  # noqa: E402
from tests.tls import make_pki  # noqa: E402

SERVERS = ("baseline", "hardened")


def serve(kind: str, port: int, cert: str, key: str, workdir: Path) -> None:
    """The collector's app over HTTPS on 127.0.0.1:``port``, by ``kind`` of server, until
    killed. Logs as the collector does, to stderr."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from collector.config import ApiSection
    from collector.state.health import HealthModel
    from collector.web.factory import create_app
    from tests.test_health import INVENTORY, build_province

    store = build_province(workdir)
    app = create_app(HealthModel(store, [INVENTORY]), store, ApiSection())
    if kind == "hardened":
        from collector.web.server import ApiServer, ServerLimits

        server = ApiServer(ServerLimits(), "127.0.0.1", port, cert, key).start(app)
        while server.alive():
            time.sleep(1)
        return
    import uvicorn

    # As Collector._start_api configured it before collector/web/server.py.
    uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
            proxy_headers=False, ssl_certfile=cert, ssl_keyfile=key,
        )
    ).run()  # fmt: skip


class LogCounter:
    """Lines and bytes of a process's output, counted as they come and thrown away."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines = 0
        self.bytes = 0
        self.first_line_after = b""
        self._mark: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
            if self._mark is not None and not self.first_line_after:
                self.first_line_after = chunk.split(b"\n", 1)[0][:300]
            self.lines += chunk.count(b"\n")
            self.bytes += len(chunk)

    def mark(self) -> None:
        self._mark = (self.lines, self.bytes)

    def since_mark(self) -> tuple[int, int]:
        lines, size = self._mark or (0, 0)
        return self.lines - lines, self.bytes - size


@dataclass
class Outcome:
    kind: str
    good: GoodClient
    opened: int
    still_open: int
    log_lines: int
    log_bytes: int
    log_first: bytes
    refused_at_connect: int


def attack(
    port: int, tls: ssl.SSLContext, sockets: int, addresses: int, until: float
) -> tuple[list[ssl.SSLSocket], int]:
    """Up to ``sockets`` TLS connections holding half a request line, spread over
    ``addresses``: (those held, those that could not be made). A server that no longer
    accepts leaves each attempt hanging for a second: after 20 in a row, or at ``until``,
    the rest are not tried (and counted as not made)."""
    held: list[ssl.SSLSocket] = []
    failed = in_a_row = 0
    for index in range(sockets):
        if in_a_row >= 20 or time.monotonic() >= until:
            return held, failed + sockets - index
        sock = tls_connect(port, source(index % addresses), tls, timeout=1.0)
        if sock is None or not send_quietly(sock, HALF_A_REQUEST_LINE):
            failed += 1
            in_a_row += 1
            if sock is not None:
                sock.close()
            continue
        in_a_row = 0
        held.append(sock)
    return held, failed


def run(kind: str, nofile: int, args: argparse.Namespace, workdir: Path) -> Outcome:
    pki = make_pki(workdir / "pki")
    tls = ssl.create_default_context(cafile=str(pki.ca))
    port = free_port()
    command = [
        sys.executable, __file__, "--serve", kind, "--port", str(port),
        "--cert", str(pki.server_cert), "--key", str(pki.server_key), "--workdir", str(workdir),
    ]  # fmt: skip
    process = subprocess.Popen(
        ["prlimit", f"--nofile={nofile}:{nofile}", *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    log = LogCounter(process.stdout)
    try:
        wait_tcp(port, 30)
        good = GoodClient(port, tls, every_s=0.2, give_up_s=5.0)
        assert good.ask() < 5, f"{kind}: /healthz does not answer before the attack"
        good.latencies.clear()
        good.statuses.clear()
        good.retries = 0
        log.mark()
        with good.throughout():
            started = time.monotonic()
            held, failed = attack(port, tls, args.sockets, args.addresses, started + args.seconds)
            time.sleep(max(0.0, args.seconds - (time.monotonic() - started)))
        still_open = sum(not is_tls_closed(s) for s in held)
        close_all(held)
        lines, size = log.since_mark()
        return Outcome(kind, good, len(held), still_open, lines, size, log.first_line_after, failed)
    finally:
        stop_process(process)


def report(outcome: Outcome) -> None:
    good = outcome.good
    asked = len(good.latencies) + good.unanswered
    print(f"\n{outcome.kind}:")
    print(
        f"  attack: {outcome.opened} connections made and holding, "
        f"{outcome.refused_at_connect} refused, unanswered or not tried"
    )
    print(f"  attack connections still open at the end: {outcome.still_open}")
    print(f"  good client: {good.summary()} ({asked} asked)")
    print(f"  log grew by {outcome.log_lines:,} lines, {outcome.log_bytes:,} bytes")
    if outcome.log_first:
        print(f"  its first line: {outcome.log_first.decode(errors='replace')}")


LIMITER_FAILURES = 50_000
LIMITER_ROUNDS = 3


def limiter_microseconds(held: int) -> float:
    """Microseconds per failure of a spray of ``LIMITER_FAILURES`` fresh addresses, the
    limiter holding ``held`` addresses at most (full after the first ``held``)."""
    from collector.web.ratelimit import FailureLimiter

    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=300, lockout_s=600,
                             clock=lambda: now[0], max_addresses=held)  # fmt: skip
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(held)]
    for address in addresses:
        limiter.failed(address)
    sprayed = [f"11.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(LIMITER_FAILURES)]
    started = time.perf_counter()
    for address in sprayed:
        limiter.failed(address)
    spent = time.perf_counter() - started
    assert limiter.sizes()[0] == held
    return spent / LIMITER_FAILURES * 1e6


def limiter_figures() -> None:
    print(f"\n=== the wrong-token limiter: {LIMITER_FAILURES:,} failures from fresh addresses, "
          f"{LIMITER_ROUNDS} rounds alternated")  # fmt: skip
    small: list[float] = []
    full: list[float] = []
    for _ in range(LIMITER_ROUNDS):
        small.append(limiter_microseconds(100))
        full.append(limiter_microseconds(10_000))
    print(f"  table of 100 addresses: {min(small):.2f} µs per failure (best of {LIMITER_ROUNDS})")
    print(f"  table of 10,000 (full): {min(full):.2f} µs per failure (best of {LIMITER_ROUNDS})")
    print(f"  full / small: {ratio(min(full), min(small))}")


def ratio(new: float, old: float) -> str:
    if old == 0:
        return "n/a (baseline 0)"
    return f"{new / old:.3g}×"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--nofile", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--limiter-only", action="store_true",
                        help="Only the limiter's figures (a second), no HTTP server.")  # fmt: skip
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.cert, args.key, Path(args.workdir))
        return
    limiter_figures()
    if args.limiter_only:
        return
    # The attacker's own connections must not run out first.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, args.sockets * 2 + 256)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    with tempfile.TemporaryDirectory(prefix="http-abuse-bench-") as tmp:
        for nofile in args.nofile:
            print(
                f"\n=== {args.sockets} slow-loris TLS connections from {args.addresses} "
                f"addresses, {args.seconds:g} s, the server's open-file limit {nofile}; "
                f"{os.cpu_count()} cores"
            )
            outcomes = {}
            for kind in SERVERS:
                workdir = Path(tmp) / f"{kind}-{nofile}"
                workdir.mkdir()
                outcomes[kind] = run(kind, nofile, args, workdir)
                report(outcomes[kind])
            compare(outcomes["baseline"], outcomes["hardened"])


def compare(baseline: Outcome, hardened: Outcome) -> None:
    base, new = baseline.good, hardened.good
    print("\nhardened / baseline:")
    if base.latencies and new.latencies:
        print(f"  good client p50 {ratio(new.percentile(0.5), base.percentile(0.5))}, "
              f"p99 {ratio(new.percentile(0.99), base.percentile(0.99))}")  # fmt: skip
    print(f"  answered {len(new.latencies)} vs {len(base.latencies)}; "
          f"unanswered {new.unanswered} vs {base.unanswered}")  # fmt: skip
    print(f"  attack connections left open {hardened.still_open} vs {baseline.still_open}")
    print(f"  log bytes {ratio(hardened.log_bytes, baseline.log_bytes)} "
          f"({hardened.log_bytes:,} vs {baseline.log_bytes:,})")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
