"""Update benchmark: a province's PCs updating through the collector, in rings behind
gates, against the same files served as static files by nginx, in the same run.

    .venv/bin/python bench/update_bench.py [--agents 5000] [--communes 95] [--spread 30]
        [--rings lab,pilot:3-communes,10%,50%,100%] [--runs 1] [--servers collector,static]
        [--plain] [--quick] [--deadline 900] [--json FILE]

A real release repository (TUF metadata signed with real keys, root 2 of 3, as the
ceremony makes it) holds two releases built from this checkout. Each run serves it by
one of two servers, each in a process of its own whose CPU and peak RSS are read from
``/proc``:

- collector: the collector's web app on ``collector.web.server.ApiServer``, wired as
  ``commune-collector run`` wires it (default ``[api]`` limits, ``[releases]
  max_downloads`` and ``max_downloads_per_address`` at their defaults), except that the
  ``Retry-After`` of a busy answer is ``--retry-after`` (default 2 s, the collector's
  default is 60 s: the bench's spread is shortened as much);
- static: nginx (one worker, sendfile, the same TLS certificate) serving the same
  ``metadata/`` and ``targets/`` folders as plain files, with no cap.

The fleet is ``--agents`` PCs over ``--communes`` communes, enrolled in a real state
store; each commune's PCs come from one loopback address (127.1.x.y, their router's).
A rollout of the second release starts with the real ``collector.rollout.rollouts``
code: rings by the real membership (``--lab`` lab PCs named, then the pilot communes,
then the shares), the real gate (``collector.rollout.gates``) shortened to no soak on
any day (``soak=0s,soak-weekdays=no``; ≥ 95 % committed, rollbacks ≤ 1 %, offline
+2 points: as shipped), judged every ``--round`` seconds as the running collector's
round does (every 10 s there). An agent told to update starts at its own point of the
spread (``agent.update.follow.spread_delay`` over ``--spread`` seconds, counted from
when its ring opens) and does what the agent's update process asks over HTTP(S)
(``bench/update_load.py``: one TUF refresh and the bundle; a 503 waited out and the
process run again). Once it holds the verified bundle, its birth saying ``committed``
on the new version is applied to the store at the next round, as the collector's
ingest would (unpacking, self-check, restart and the launcher's health trial are not
simulated: their time is the PC's own, not the collector's).

Printed, per server: time to full rollout (every PC holding the release) and to the
rollout marked done, each ring's opening, promotion and last member; requests, bytes
served, 503s answered and connections; the agents' fetch time (first request to
verified bundle, waits included) p50/p99/max and one bundle's transfer p50/p99; the
server's CPU seconds and peak RSS; the client's CPU (it shares the machine); then the
collector's figures as ratios of the static server's. ``--runs N`` alternates the
two servers (collector, static; then static, collector; ...) and sums each one's
figures. ``--quick`` is a smoke run of a few PCs and seconds. A server that falls
behind is given ``--deadline`` seconds: the PCs it has not updated by then are given
up and counted as such (no time to full rollout is then printed).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import pwd
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.update.follow import spread_delay  # noqa: E402
from agent.wire import Status, UpdateReport  # noqa: E402
from bench.update_load import Server, Tally, update  # noqa: E402
from collector.config import ReleasesSection  # noqa: E402
from collector.rollout import registry  # noqa: E402
from collector.rollout.gates import parse_gate  # noqa: E402
from collector.rollout.rollouts import Rollouts, fleet  # noqa: E402
from collector.state import audit  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from tests.releases import make_releases  # noqa: E402
from tests.servers import free_port, stop_process, wait_tcp  # noqa: E402
from tests.tls import make_pki  # noqa: E402

PROVINCE = "dong-nai"
OLD, NEW = "1.0.0", "1.1.0"
TARGET = f"commune-agent-{NEW}.zip"
GATE = "soak=0s,soak-weekdays=no"
SERVERS = ("collector", "static")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


# the servers ------------------------------------------------------------------------


def serve_collector(args: argparse.Namespace) -> None:
    """The collector's web app serving the repository at ``args.repository`` until
    SIGTERM; then its own counters, as JSON, in ``args.stats``."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from collector.config import ApiSection
    from collector.state.health import HealthModel
    from collector.web.factory import create_app
    from collector.web.releases import ReleaseFiles
    from collector.web.server import ApiServer, ServerLimits

    section = ReleasesSection()
    files = ReleaseFiles(
        Path(args.repository),
        section.max_downloads,
        args.retry_after,
        section.max_downloads_per_address,
    )
    store = StateStore(Path(args.stats).with_suffix(".sqlite"))
    api = ApiSection()
    app = create_app(HealthModel(store, []), store, api, releases=files)
    server = ApiServer(ServerLimits.from_settings(api), "127.0.0.1", args.port,
                       args.cert, args.key).start(app)  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while server.alive() and not stop.wait(0.5):
        pass
    Path(args.stats).write_text(json.dumps({
        "requests": {f"{kind} {outcome}": n for (kind, outcome), n in files.requests.items()},
        "bytes_sent": files.bytes_sent, "peak_downloads": files.peak,
    }))  # fmt: skip
    os._exit(0)  # uvicorn's thread is not ours to wait for


def start_collector(
    work: Path, repository: Path, cert: str, key: str, retry_after: float
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    stats = work / f"collector-{port}.json"
    command = [
        sys.executable, __file__, "--serve-collector", "--port", str(port),
        "--repository", str(repository), "--cert", cert, "--key", key,
        "--retry-after", str(retry_after), "--stats", str(stats),
    ]  # fmt: skip
    with (work / "collector.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO)
    wait_tcp(port, 60)
    return process, port, stats


def start_nginx(
    work: Path, repository: Path, cert: str, key: str
) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving ``metadata/`` and ``targets/`` of the repository under /releases/
    (nothing else: no staged files, no listing), one worker, with the limits of the
    collector's connections that apply to a static file (keep-alive 5 s, 100 requests)."""
    port = free_port()
    folder = work / f"nginx-{port}"
    folder.mkdir()
    temp_paths = "".join(
        f"  {kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    tls = f"ssl_certificate {cert}; ssl_certificate_key {key};" if cert else ""
    # The repository's files are its owner's alone (0600): the worker runs as that user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n  access_log off;\n{temp_paths}"
        "  sendfile on; tcp_nopush on; keepalive_timeout 5s; keepalive_requests 100;\n"
        "  types { application/json json; application/zip zip; }\n"
        f"  server {{\n    listen 127.0.0.1:{port}{' ssl' if cert else ''};\n    {tls}\n"
        f"    location /releases/metadata/ {{ alias {repository}/metadata/; }}\n"
        f"    location /releases/targets/ {{ alias {repository}/targets/; }}\n"
        "    location / { return 404; }\n  }\n}\n"
    )
    check = subprocess.run(["nginx", "-t", "-c", str(folder / "nginx.conf")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    if check.returncode != 0:
        raise SystemExit(f"nginx refuses the bench's config: {check.stderr}")
    process = subprocess.Popen(["nginx", "-c", str(folder / "nginx.conf")])
    wait_tcp(port, 20)
    return process, port


def family(pid: int) -> list[int]:
    """A process and its children (nginx's worker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def memory_kb(pids: list[int], name: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` of the processes, added."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                total += int(line.split()[1])
    return total


# the province ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pc:
    key: str
    commune: int

    @property
    def agent(self) -> str:
        return self.key.rsplit("/", 1)[1]

    @property
    def source(self) -> str:
        """Its commune's router, on loopback."""
        return f"127.1.{self.commune // 250}.{self.commune % 250 + 1}"


def province(agents: int, communes: int) -> list[Pc]:
    return [Pc(f"{PROVINCE}/xa-{n % communes:03d}/pc-{n:05d}", n % communes) for n in range(agents)]


def birth(pc: Pc, version: str, now: float, committed: bool) -> tuple[Status, float]:
    province_, commune, agent = pc.key.split("/")
    report = UpdateReport("committed", version, OLD, ts=now) if committed else None
    status = Status(v=1, state="online", agent=agent, province=province_, commune=commune,
                    ts=now, version=version, update=report)  # fmt: skip
    return status, now


def enroll(store: StateStore, pcs: list[Pc]) -> None:
    """Every PC enrolled and online on the old version, as their births left them."""
    now = time.time()
    with store.transaction() as db:
        for pc in pcs:
            province_, commune, agent = pc.key.split("/")
            registry.enrolled(
                db, province=province_, commune=commune, agent=agent, username=f"{pc.key}@1",
                profile="office", token_id="bench", now=now,
            )  # fmt: skip
    store.apply(statuses=[birth(pc, OLD, now, committed=False) for pc in pcs])


# one run ------------------------------------------------------------------------------


@dataclass
class RingTimes:
    name: str
    members: int
    opened_s: float
    promoted_s: float | None
    last_member_s: float | None


@dataclass
class Outcome:
    server: str
    tally: Tally
    full_s: float | None
    """Every PC holds the release."""
    done_s: float | None
    """The rollout marked done (the last ring's gate held)."""
    rings: list[RingTimes]
    cpu_s: float
    peak_rss_kb: int
    rss_before_kb: int
    client_cpu_s: float
    server_stats: dict[str, Any] = field(default_factory=dict)


class Driver:
    """The collector's side of the rollout (store, rollouts, gate), on one thread of its
    own, and the agents (asyncio tasks) it tells to update."""

    def __init__(self, work: Path, pcs: list[Pc], args: argparse.Namespace) -> None:
        self.pcs = {pc.key: pc for pc in pcs}
        self.args = args
        self.thread = concurrent.futures.ThreadPoolExecutor(1, "store")
        self.store = self.thread.submit(StateStore, work / "state.sqlite").result()
        self.thread.submit(enroll, self.store, pcs).result()
        labs = [pc.key for pc in pcs[: args.lab]]  # pc-00000.. lie in as many communes
        self.book = Rollouts(self.store, lambda: {OLD, NEW}, lab=labs)
        self.asked: set[str] = set()
        self.finished: dict[str, float] = {}
        self.unapplied: list[str] = []
        self.failures: list[str] = []

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, work, *args)

    async def run(
        self, server: Server, tally: Tally
    ) -> tuple[float | None, float | None, list[RingTimes]]:
        actor = audit.Actor("bench", "admin", "127.0.0.1", "cli")
        gate, spread = parse_gate([GATE]), self.args.spread
        rollout = await self.call(
            lambda: self.book.start(
                NEW, self.args.rings, gate, actor, lab=self.book.lab, spread_s=spread
            )
        )
        wall0, started = rollout.created_at, time.monotonic() - (time.time() - rollout.created_at)
        agents: list[asyncio.Task[None]] = []
        done_s: float | None = None
        next_word = time.monotonic() + 10
        while time.monotonic() - started < self.args.deadline:
            now = time.time()
            applied, self.unapplied = self.unapplied, []
            if applied:
                await self.call(self.store.apply, (),
                                [birth(self.pcs[k], NEW, now, True) for k in applied])  # fmt: skip
            happened, changed = await self.call(self.book.follow)
            if happened or time.monotonic() >= next_word:
                next_word = time.monotonic() + 10
                print(f"  {time.monotonic() - started:6.1f} s: {len(self.finished):,} of "
                      f"{len(self.pcs):,} PCs hold it, {tally.busy:,} answered 503, "
                      f"{tally.connection_errors:,} connections refused or cut"
                      + (f"; {happened}" if happened else ""), flush=True)  # fmt: skip
            if changed:
                orders = await self.call(self.book.orders)
                for key, order in orders.items():
                    if key in self.asked or order.version != NEW or order.paused:
                        continue
                    self.asked.add(key)
                    delay = spread_delay(self.pcs[key].agent, order.spread_s)
                    agents.append(asyncio.create_task(self.agent(key, delay, server, tally)))
            now_rollout = await self.call(self.book.get, rollout.id)
            if now_rollout.state == "done" and done_s is None:
                done_s = time.monotonic() - started
            if now_rollout.state == "paused":
                raise SystemExit(f"the rollout paused: {now_rollout.why}")
            if done_s is not None and len(self.finished) + len(self.failures) == len(self.pcs):
                break
            await asyncio.sleep(self.args.round)
        else:
            print(f"  --deadline {self.args.deadline:g} s passed: the rest given up", flush=True)
            for task in agents:
                task.cancel()
        await asyncio.gather(*agents, return_exceptions=True)
        if self.failures:
            raise SystemExit(f"{len(self.failures)} agents failed: {self.failures[:3]}")
        everyone = len(self.finished) == len(self.pcs)
        full_s = max(self.finished.values()) - started if everyone else None
        return full_s, done_s, await self.call(self.rings, rollout.id, wall0, started)

    async def agent(self, key: str, delay: float, server: Server, tally: Tally) -> None:
        await asyncio.sleep(delay)
        try:
            got = await update(server, self.pcs[key].source, 1, TARGET, tally)
        except (RuntimeError, KeyError, ValueError) as exc:
            self.failures.append(f"{key}: {exc}")
            return
        if not got:
            self.failures.append(f"{key}: gave up")
            return
        self.finished[key] = time.monotonic()
        self.unapplied.append(key)

    def rings(self, rollout_id: str, wall0: float, started: float) -> list[RingTimes]:
        rollout = self.book.get(rollout_id)
        ring_of = self.book.members(rollout, fleet(self.store))
        out = []
        for state in rollout.ring_states:
            members = [k for k, at in ring_of.items() if at == state.position]
            held = [self.finished[k] - started for k in members if k in self.finished]
            last = max(held) if members and len(held) == len(members) else None
            out.append(RingTimes(
                state.name, len(members), (state.started_at or wall0) - wall0,
                state.promoted_at - wall0 if state.promoted_at else None, last,
            ))  # fmt: skip
        return out

    def close(self) -> None:
        self.thread.submit(self.store.close).result()
        self.thread.shutdown()


def one_run(
    kind: str, work: Path, repository: Path, pki: tuple[str, str, str], args: argparse.Namespace
) -> Outcome:
    cert, key, ca = pki
    tls = ssl.create_default_context(cafile=ca) if cert else None
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    driver = Driver(folder, province(args.agents, args.communes), args)
    stats: Path | None = None
    if kind == "collector":
        process, port, stats = start_collector(folder, repository, cert, key, args.retry_after)
    else:
        process, port = start_nginx(folder, repository, cert, key)
    try:
        server = Server("127.0.0.1", port, "/releases", tls)
        # A first agent from elsewhere: what is loaded on first use is not counted.
        warm = Tally()
        assert asyncio.run(update(server, "127.0.0.1", 1, TARGET, warm)), "warm-up failed"
        pids = family(process.pid)
        cpu_before, rss_before = cpu_seconds(pids), memory_kb(pids, "VmRSS")
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        tally = Tally()
        full_s, done_s, rings = asyncio.run(driver.run(server, tally))
        client = resource.getrusage(resource.RUSAGE_SELF)
        cpu = cpu_seconds(pids) - cpu_before
        peak = memory_kb(pids, "VmHWM")
    finally:
        stop_process(process)
        driver.close()
    client_cpu = sum(client[:2]) - sum(client_before[:2])  # user and system time
    server_stats = json.loads(stats.read_text()) if stats and stats.exists() else {}
    return Outcome(kind, tally, full_s, done_s, rings, cpu, peak, rss_before, client_cpu,
                   server_stats)  # fmt: skip


# the report -------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def figures(outcome: Outcome) -> dict[str, Any]:
    tally = outcome.tally
    return {
        "server": outcome.server,
        "agents_updated": tally.got,
        "full_rollout_s": None if outcome.full_s is None else round(outcome.full_s, 2),
        "rollout_done_s": None if outcome.done_s is None else round(outcome.done_s, 2),
        "rings": [vars(ring) for ring in outcome.rings],
        "requests": tally.total_requests,
        "bytes": tally.bytes,
        "busy_503": tally.busy,
        "connections": tally.connections,
        "connection_errors": tally.connection_errors,
        "fetch_p50_s": percentile(tally.fetch_s, 0.50),
        "fetch_p99_s": percentile(tally.fetch_s, 0.99),
        "fetch_max_s": max(tally.fetch_s, default=float("nan")),
        "bundle_p50_s": percentile(tally.bundle_s, 0.50),
        "bundle_p99_s": percentile(tally.bundle_s, 0.99),
        "server_cpu_s": round(outcome.cpu_s, 2),
        "server_peak_rss_kb": outcome.peak_rss_kb,
        "server_rss_before_kb": outcome.rss_before_kb,
        "client_cpu_s": round(outcome.client_cpu_s, 2),
        "server_counters": outcome.server_stats,
    }


ROWS = (
    ("time to full rollout (s)", "full_rollout_s", "{:.1f}"),
    ("rollout marked done (s)", "rollout_done_s", "{:.1f}"),
    ("agents updated", "agents_updated", "{:,}"),
    ("requests answered", "requests", "{:,}"),
    ("bytes served", "bytes", "{:,}"),
    ("503 Retry-After answered", "busy_503", "{:,}"),
    ("connections", "connections", "{:,}"),
    ("connections refused or cut", "connection_errors", "{:,}"),
    ("fetch p50 (s)", "fetch_p50_s", "{:.3f}"),
    ("fetch p99 (s)", "fetch_p99_s", "{:.3f}"),
    ("fetch max (s)", "fetch_max_s", "{:.3f}"),
    ("one bundle p50 (s)", "bundle_p50_s", "{:.4f}"),
    ("one bundle p99 (s)", "bundle_p99_s", "{:.4f}"),
    ("server CPU (s)", "server_cpu_s", "{:.2f}"),
    ("server peak RSS (MB)", "server_peak_rss_kb", "{:.1f}", 1 / 1024),
    ("server RSS before (MB)", "server_rss_before_kb", "{:.1f}", 1 / 1024),
    ("client CPU (s)", "client_cpu_s", "{:.2f}"),
)
RATIOS = ("full_rollout_s", "requests", "bytes", "fetch_p50_s", "fetch_p99_s", "fetch_max_s",
          "bundle_p50_s", "server_cpu_s", "server_peak_rss_kb")  # fmt: skip


def summed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's runs: counts and seconds added, percentiles and RSS at their worst."""
    out = dict(runs[0])
    for run in runs[1:]:
        for key, value in run.items():
            if not isinstance(value, int | float) or value is None:
                continue
            if key.endswith(("_p50_s", "_p99_s", "_max_s", "_rss_kb", "rss_before_kb")):
                out[key] = max(out[key], value)
            else:
                out[key] += value
    return out


def report(runs: list[dict[str, Any]], args: argparse.Namespace, size: int) -> dict[str, Any]:
    print(f"\nupdate benchmark: {args.agents:,} agents in {args.communes} communes, rings "
          f"{args.rings}, gate {GATE} (otherwise as shipped), spread {args.spread:g} s, round "
          f"{args.round:g} s, bundle {size:,} bytes, "
          f"{'plain HTTP' if args.plain else 'HTTPS'}, collector Retry-After "
          f"{args.retry_after:g}-{2 * args.retry_after + 1:g} s, "
          f"{args.runs} run(s) each")  # fmt: skip
    for run in runs:
        print(f"\n{run['server']}: rings (opened / promoted / last member holds it, s)")
        for ring in run["rings"]:
            promoted = "-" if ring["promoted_s"] is None else f"{ring['promoted_s']:.1f}"
            last = "-" if ring["last_member_s"] is None else f"{ring['last_member_s']:.1f}"
            print(f"  {ring['name']:>16} {ring['members']:>5} PCs  {ring['opened_s']:6.1f} / "
                  f"{promoted:>6} / {last:>6}")  # fmt: skip
        counters = run["server_counters"]
        if counters:
            print(f"  the collector's own counters: {counters}")
    by_server = {kind: summed([r for r in runs if r["server"] == kind]) for kind in SERVERS
                 if any(r["server"] == kind for r in runs)}  # fmt: skip
    if len(by_server) < len(SERVERS):
        return {"runs": runs, "by_server": by_server}
    print(f"\n{'':30} {'collector':>14} {'static':>14} {'collector/static':>17}")
    for label, key, form, *scale in ROWS:
        factor = scale[0] if scale else 1
        cells = []
        for kind in SERVERS:
            value = by_server[kind][key]
            cells.append("-" if value is None else form.format(value * factor))
        a, b = by_server["collector"][key], by_server["static"][key]
        ratio = f"{a / b:.2f}" if key in RATIOS and a is not None and b else ""
        print(f"{label:30} {cells[0]:>14} {cells[1]:>14} {ratio:>17}")
    return {"runs": runs, "by_server": by_server}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=None, help="default 5000 (quick: 40)")
    parser.add_argument("--communes", type=int, default=None, help="default 95 (quick: 8)")
    parser.add_argument("--lab", type=int, default=None, help="lab PCs, default 5 (quick: 2)")
    parser.add_argument("--rings", default=None,
                        help="default lab,pilot:3-communes,10%%,50%%,100%% "
                             "(quick: lab,pilot:1-communes,50%%,100%%)")  # fmt: skip
    parser.add_argument("--spread", type=float, default=None, help="s, default 30 (quick: 1)")
    parser.add_argument("--round", type=float, default=None,
                        help="the gate judged every ROUND s, default 1 (quick: 0.2)")  # fmt: skip
    parser.add_argument("--retry-after", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="which to run: collector,static (default both)")  # fmt: skip
    parser.add_argument("--deadline", type=float, default=900.0,
                        help="s per server; the PCs not updated by then are given up")  # fmt: skip
    parser.add_argument("--plain", action="store_true", help="HTTP, not HTTPS")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few PCs, seconds")
    parser.add_argument("--json", help="write the figures there too")
    parser.add_argument("--serve-collector", action="store_true", help=argparse.SUPPRESS)
    for internal in ("--port", "--repository", "--cert", "--key", "--stats"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_collector:
        args.port = int(args.port)
        serve_collector(args)
        return
    quick = args.quick
    defaults = {
        "agents": (5000, 40), "communes": (95, 8), "lab": (5, 2), "spread": (30.0, 1.0),
        "round": (1.0, 0.2),
        "rings": ("lab,pilot:3-communes,10%,50%,100%", "lab,pilot:1-communes,50%,100%"),
    }  # fmt: skip
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    work = Path(tempfile.mkdtemp(prefix="commune-update-bench-"))
    releases = make_releases(work)
    releases.add(OLD)
    releases.add(NEW)
    repository = releases.repo.path
    bundle_size = releases.target_file(NEW).stat().st_size
    pki = ("", "", "")
    if not args.plain:
        made = make_pki(work / "pki")
        pki = (str(made.server_cert), str(made.server_key), str(made.ca))
    chosen = tuple(kind for kind in SERVERS if kind in args.servers.split(","))
    order = [chosen if n % 2 == 0 else chosen[::-1] for n in range(args.runs)]
    runs = []
    for kinds in order:
        for kind in kinds:
            print(f"{kind}: rolling {NEW} out to {args.agents:,} PCs ...", flush=True)
            runs.append(figures(one_run(kind, work, repository, pki, args)))
    result = report(runs, args, bundle_size)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
