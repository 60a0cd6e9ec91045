"""Reads under ingest: the IOC's and the technicians' requests while the country's data commits.

    .venv/bin/python bench/reads_bench.py                    # the country: ~15 minutes
    .venv/bin/python bench/reads_bench.py --seconds 20 --communes 300   # short (make bench)

Builds a state store with the fleet simulator: ``--communes`` communes (3,321, the
country's) in provinces of 53, each of 49 PCs and a poller, with ``--hours`` of
history (one cycle every 30 minutes, lines going down 20 times a day) so that
availability has outages to compute. Serves the API and the console as
``commune-collector run`` does (FastAPI on the collector's uvicorn server, on
loopback, reading through its own connection), and reads it from other processes:

- the province's IOC, every 10 s: /api/v1/province, /api/v1/communes?province=
  and the firing alerts;
- a national reader, every 10 s: the first two pages of /api/v1/communes (100
  communes each) and /api/v1/alerts;
- ``--consoles`` technicians, each every ``--think`` seconds in turn: the
  overview (/), a commune's page, /api/v1/communes/{slug}, a commune's month of
  availability and, one time in four, the province's month;
- /healthz every second: the floor of one request.

Phases of ``--seconds`` each, measured in this run:

1. reads with ingest idle (the baseline), the live health model;
2. ingest alone, no reads: the commit path (decode, state, the built-in alert rules,
   the spool, as ``run`` wires it) fed ``--rate`` messages/s from a thread, the
   fleet's next cycles pre-encoded: what ingest holds on this machine now;
3. reads during the same ingest, the health model recomputed per request (before);
   only up to 1,000 communes unless ``--full-model on``: at the country's size one of
   its requests takes about a minute under ingest, so the phase measures a handful of
   them while its readers hold both cores long after ingest stopped
   (``bench/health_bench.py`` measures that model itself);
4. the same with the live health model, answered in the collector's process (before);
5. the same answered by the read process (``collector/web/readprocess.py``), as ``run``
   serves them: the collector's server (this process, where ingest runs) hands the
   reads over to a spawned process holding its own live model, fed what ingest commits;
   the collector's own model forgotten meanwhile (warmed again before phase 4). Both
   phases carry the feed to the read process.

``--rounds N`` runs phases 4 and 5 N times in turn: the two compared on the same
minutes of a machine whose load moves.

Each phase measures only itself: a reader stops asking at the phase's end and waits
for the answer it is owed (no time-out on the client, so no request is given up while
the server goes on computing it), and the next phase starts only once every server
has no request in flight (uvicorn's request tasks: one ends when its handler has
returned). How long the last requests ran past a phase's end is printed with it.
Each request of the plans is asked once before the phases: a process's first of a
kind imports and builds what the next ones reuse (50-400 ms, once after a start).

``--switch-ms 5,1`` takes the server's thread switch interval in turn from those (each
for about ``--alternate-s``) during every phase, and reports each request, and what
ingest committed, under the setting that held when it began: two settings compared on
the same moments of a machine whose load moves by the minute.

Prints p50 and p99 per request in each phase, the rate ingest held and how far
behind it ended (lag), and the targets: the province's API p99 <= 100 ms, the
national list's <= 250 ms, the console's pages <= 300 ms; and the garbage
collector's passes in each phase (a request waits for one out).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import logging
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.common.gctuning import pace_for_ingest  # noqa: E402
from collector.common.threadswitch import share_between_ingest_and_reads  # noqa: E402
from collector.config import ApiSection, ConsoleSection  # noqa: E402
from collector.ingest.ingestor import Ingestor, Message  # noqa: E402
from collector.outputs.spool import Spool  # noqa: E402
from collector.state.factsfeed import FactsFeed  # noqa: E402
from collector.state.health import OVERVIEW_DAYS, HealthModel  # noqa: E402
from collector.state.inventory import Commune, Inventory  # noqa: E402
from collector.state.livehealth import LiveHealth  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from collector.web.factory import create_app  # noqa: E402
from collector.web.readprocess import ReadProcess, ReadSettings  # noqa: E402
from fleet.scenario import Fleet, SimAgent  # noqa: E402
from tests.servers import AppServer  # noqa: E402

NATIONAL_COMMUNES = 3321
PER_PROVINCE = 53
NATIONAL_RATE = NATIONAL_COMMUNES * 50 * 3 / 60
TARGETS = {"province": 100.0, "national": 250.0, "console": 300.0}
"""p99 bounds (ms) by the kind of request."""


class Country:
    """The simulated provinces, their fleets and inventories."""

    def __init__(self, communes: int) -> None:
        count = math.ceil(communes / PER_PROVINCE)
        self.fleets: list[Fleet] = []
        self.inventories: list[Inventory] = []
        for index in range(count):
            province = f"p{index + 1:02d}"
            size = min(PER_PROVINCE, communes - index * PER_PROVINCE)
            slugs = [f"x{index + 1:02d}-{i:03d}" for i in range(size)]
            self.fleets.append(Fleet(province, slugs, 49, seed=index + 1, outages_per_day=20))
            listed = [Commune(slug=s, name=f"Xã {s}", pcs=50, polycoms=1) for s in slugs]
            self.inventories.append(
                Inventory(province=province, name=f"Tỉnh {index + 1}", communes=listed)
            )
        self.agents: list[tuple[Fleet, SimAgent]] = [(f, a) for f in self.fleets for a in f.agents]

    def cycle(self, at: float) -> list[Message]:
        """Every agent's cycle at ``at``."""
        return [Message(topic, payload, at, _nothing)
                for fleet, agent in self.agents
                for topic, payload, _ in fleet.cycle(agent, at)]  # fmt: skip

    def stream(self, start: float, rate: float, seconds: float) -> list[Message]:
        """``rate`` messages/s for ``seconds``: the agents in turn, each message stamped
        with the time it is due."""
        messages: list[Message] = []
        cursor = 0
        while len(messages) < rate * seconds:
            fleet, agent = self.agents[cursor % len(self.agents)]
            cursor += 1
            at = start + len(messages) / rate
            messages += [Message(t, p, at, _nothing) for t, p, _ in fleet.cycle(agent, at)]
        return messages


def _nothing() -> None:
    pass


# ingest --------------------------------------------------------------------------------


class Feeder(threading.Thread):
    """The commit path at a rate for ``seconds``: batches of up to 500 due messages, as
    the source hands them over. Records how late each batch committed after its last
    message was due, and what was still due, not committed, when the time was up."""

    def __init__(
        self, ingestor: Ingestor, messages: list[Message], rate: float, seconds: float
    ) -> None:
        super().__init__(name="feeder", daemon=True)
        self.ingestor, self.messages, self.rate, self.seconds = ingestor, messages, rate, seconds
        self.lags: list[float] = []
        self.batches: list[tuple[float, int, float]] = []
        """(when it committed (monotonic), messages, lag s) of each batch."""
        self.committed = 0
        self.span = 0.0
        self.behind_s = 0.0

    def run(self) -> None:
        started = time.monotonic()
        total = len(self.messages)
        while self.committed < total and time.monotonic() - started < self.seconds:
            due = min(total, int((time.monotonic() - started) * self.rate))
            if due <= self.committed:
                time.sleep(0.005)
                continue
            end = min(due, self.committed + 500)
            self.ingestor.process(self.messages[self.committed : end])
            now = time.monotonic()
            self.batches.append((now, end - self.committed, now - started - end / self.rate))
            self.committed = end
            self.lags.append(now - started - end / self.rate)
        self.span = time.monotonic() - started
        due = min(total, int(self.span * self.rate))
        self.behind_s = (due - self.committed) / self.rate

    def share(self, alternation: Alternation, interval: float) -> str:
        """What ingest held while ``interval`` did."""
        batches = [(n, lag) for when, n, lag in self.batches if alternation.at(when) == interval]
        seconds = alternation.seconds(interval, self.batches[-1][0] if self.batches else 0.0)
        lags = sorted(lag for _, lag in batches) or [0.0]
        return (
            f"{sum(n for n, _ in batches) / max(seconds, 1e-9):.0f} msg/s committed in its "
            f"{seconds:.0f} s, commit lag p50 {1000 * statistics.median(lags):.0f} ms, "
            f"p99 {1000 * percentile(lags, 0.99):.0f} ms"
        )

    def summary(self) -> str:
        lags = sorted(self.lags) or [0.0]
        return (
            f"{self.committed} messages in {self.span:.1f} s = "
            f"{self.committed / self.span:.0f} msg/s of {self.rate:.0f} offered; commit lag "
            f"p50 {1000 * statistics.median(lags):.0f} ms, p99 "
            f"{1000 * percentile(lags, 0.99):.0f} ms; {self.behind_s:.1f} s behind at the end"
        )


# readers (other processes) -------------------------------------------------------------


def _reader(port: int, plan: list[tuple[str, str, str]], every: float, seconds: float,
            seed: int, out: Any) -> None:  # fmt: skip
    """One reader: ``plan``'s requests (label, kind, path) in turn, one every ``every``
    seconds, for ``seconds``; (label, kind, ms, when it began) of each answered 200 put
    on ``out``."""
    rng = random.Random(seed)
    # No time-out: a request given up would go on in the server into the next phase
    # (a national page of the full model under ingest took minutes), disturbing what that
    # phase measures; a phase ends once its slowest request is answered.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
    found: list[tuple[str, str, float, float]] = []
    failed = 0
    deadline = time.monotonic() + seconds
    time.sleep(rng.uniform(0, every))  # not all at once
    step = 0
    while time.monotonic() < deadline:
        label, kind, path = plan[step % len(plan)]
        step += 1
        began = time.monotonic()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                found.append((label, kind, 1000 * (time.monotonic() - began), began))
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
        time.sleep(max(0.0, every - (time.monotonic() - began)))
    out.put((found, failed))


def _readers(port: int, country: Country, consoles: int, think: float, seconds: float,
             out: Any) -> list[multiprocessing.Process]:  # fmt: skip
    """The IOC, the national reader, the consoles and the floor, as processes."""
    rng = random.Random(7)
    first = country.inventories[0]
    month = time.time() - 30 * 86400
    plans: list[tuple[list[tuple[str, str, str]], float]] = [
        ([("GET /api/v1/province", "province", f"/api/v1/province?province={first.province}"),
          ("GET /api/v1/communes?province", "province",
           f"/api/v1/communes?province={first.province}"),
          ("GET /api/v1/alerts (province)", "province",
           f"/api/v1/alerts?province={first.province}&state=firing&limit=100")], 10.0 / 3),
        ([("GET /api/v1/communes (national p1)", "national", "/api/v1/communes"),
          ("GET /api/v1/communes (national p2)", "national",
           f"/api/v1/communes?cursor={_cursor(country, 99)}"),
          ("GET /api/v1/alerts (national)", "national", "/api/v1/alerts?limit=100")], 10.0 / 3),
        ([("GET /healthz (floor)", "floor", "/healthz")], 1.0),
    ]  # fmt: skip
    for _ in range(consoles):
        inventory = rng.choice(country.inventories)
        p = inventory.province
        slug = rng.choice(inventory.communes).slug
        plans.append(([
            ("GET / (overview)", "console", f"/?province={p}"),
            ("GET /communes/{slug} (page)", "console", f"/communes/{slug}?province={p}"),
            ("GET /api/v1/communes/{slug}", "province", f"/api/v1/communes/{slug}?province={p}"),
            ("GET /api/v1/availability (commune, month)", "province",
             f"/api/v1/availability?commune={slug}&province={p}&from={month:.0f}"),
            ("GET / (overview)", "console", f"/?province={p}"),
            ("GET /communes/{slug} (page)", "console", f"/communes/{slug}?province={p}"),
            ("GET /api/v1/communes/{slug}", "province", f"/api/v1/communes/{slug}?province={p}"),
            ("GET /api/v1/availability (province, month)", "province",
             f"/api/v1/availability?province={p}&from={month:.0f}"),
        ], think))  # fmt: skip
    processes = []
    # Two processes: the consoles' threads, and the others'.
    for group in (plans[:3], plans[3:]):
        process = multiprocessing.Process(target=_group, args=(port, group, seconds, out))
        process.start()
        processes.append(process)
    return processes


def _group(port: int, plans: list[tuple[list[tuple[str, str, str]], float]], seconds: float,
           out: Any) -> None:  # fmt: skip
    threads = [threading.Thread(target=_reader, args=(port, plan, every, seconds, i, out))
               for i, (plan, every) in enumerate(plans)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _warm_up(port: int, country: Country) -> None:
    """Each request of the readers' plans once."""
    inventory = country.inventories[0]
    slug = inventory.communes[0].slug
    p = inventory.province
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
    for path in ("/healthz", f"/api/v1/province?province={p}", f"/api/v1/communes?province={p}",
                 f"/api/v1/alerts?province={p}&state=firing&limit=100", "/api/v1/communes",
                 f"/?province={p}", f"/communes/{slug}?province={p}",
                 f"/api/v1/communes/{slug}?province={p}",
                 f"/api/v1/availability?commune={slug}&province={p}&from={time.time() - 86400:.0f}",
                 f"/api/v1/availability?province={p}&from={time.time() - 86400:.0f}"):  # fmt: skip
        connection.request("GET", path)
        connection.getresponse().read()
    connection.close()


def _cursor(country: Country, index: int) -> str:
    places = [(i.province, c.slug) for i in country.inventories for c in i.communes]
    return "/".join(places[min(index, len(places) - 1)])


# phases -----------------------------------------------------------------------------------


Measured = tuple[dict[str, list[float]], dict[str, str], int]
"""ms by request, kind by request, requests that failed."""


class Alternation(threading.Thread):
    """The server's thread switch interval taken in turn from ``intervals`` (s), each
    for about ``every`` seconds, while a phase runs: every setting meets the same moments
    of a machine whose load moves by the minute. Each turn's length is drawn from
    [every/2, 3 every/2]: a console asks every ``--think`` seconds, and turns of one
    length would give each of its requests the same setting every time. ``spans``
    says which held when."""

    def __init__(self, intervals: list[float], every: float) -> None:
        super().__init__(name="alternation", daemon=True)
        self.intervals, self.every = intervals, every
        self.spans: list[tuple[float, float]] = []
        """(from (monotonic), interval) in order."""
        self.done = threading.Event()

    def run(self) -> None:
        turn = 0
        rng = random.Random(11)
        while True:
            interval = self.intervals[turn % len(self.intervals)]
            sys.setswitchinterval(interval)
            self.spans.append((time.monotonic(), interval))
            turn += 1
            if self.done.wait(rng.uniform(0.5, 1.5) * self.every):
                return

    def at(self, when: float) -> float:
        held = self.spans[0][1]
        for began, interval in self.spans:
            if began > when:
                break
            held = interval
        return held

    def seconds(self, interval: float, end: float) -> float:
        """How long ``interval`` held until ``end``."""
        bounds = [b for b, _ in self.spans[1:]] + [end]
        return sum(hi - lo for (lo, i), hi in zip(self.spans, bounds, strict=True) if i == interval)


def phase(port: int, country: Country, args: argparse.Namespace, feeder: Feeder | None,
          alternation: Alternation | None = None) -> dict[float, Measured]:  # fmt: skip
    """Reads for ``args.seconds`` (while ``feeder`` ingests), by the switch interval that
    held when each request began."""
    out: Any = multiprocessing.Queue()
    processes = _readers(port, country, args.consoles, args.think, args.seconds, out)
    if alternation is not None:
        alternation.start()
    if feeder is not None:
        feeder.start()
    results: list[tuple[list[tuple[str, str, float, float]], int]] = []
    readers = 3 + args.consoles
    while len(results) < readers:
        results.append(out.get(timeout=args.seconds + 600))
    for process in processes:
        process.join()
    if alternation is not None:
        alternation.done.set()
    held = alternation.at if alternation is not None else (lambda _: sys.getswitchinterval())
    measured: dict[float, Measured] = {}
    failed = sum(failed for _, failed in results)
    for found, _ in results:
        for label, kind, ms, began in found:
            times, kinds, _ = measured.setdefault(held(began), (defaultdict(list), {}, failed))
            times[label].append(ms)
            kinds[label] = kind
    return measured


class Pauses:
    """The garbage collector's passes in this process (the server's): how many full
    ones, and the longest of any, since ``reset``: a request waits for a pass out."""

    def __init__(self) -> None:
        self.began = 0.0
        self.reset()
        gc.callbacks.append(self._seen)

    def reset(self) -> None:
        self.full = 0
        self.longest_ms = 0.0
        self.longest_generation = 0

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
            return
        ms = 1000 * (time.perf_counter() - self.began)
        self.full += info["generation"] == 2
        if ms > self.longest_ms:
            self.longest_ms, self.longest_generation = ms, info["generation"]

    def summary(self) -> str:
        return (
            f"{self.full} full collections, the longest pass {self.longest_ms:.0f} ms "
            f"(generation {self.longest_generation})"
        )


def quiesce(servers: dict[str, AppServer]) -> float:
    """Wait until no server has a request in flight (the phase's last answers written, its
    handlers returned); how long that took (seconds)."""
    began = time.monotonic()
    for server in servers.values():
        uvicorn_server = server.server.uvicorn_server
        assert uvicorn_server is not None
        while uvicorn_server.server_state.tasks:
            time.sleep(0.05)
    return time.monotonic() - began


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(names: list[str], measured: list[Measured]) -> None:
    labels = sorted({label for times, _, _ in measured for label in times},
                    key=lambda label: ("floor" not in label, label))  # fmt: skip
    header = "".join(f"{name:>26}" for name in names)
    print(f"  {'p50 / p99 ms (count)':44}{header}")
    for label in labels:
        cells = []
        for times, _, _ in measured:
            values = times.get(label, [])
            if not values:
                cells.append("—")
                continue
            median, p99 = statistics.median(values), percentile(values, 0.99)
            cells.append(f"{median:7.1f} /{p99:8.1f} ({len(values):3d})")
        print(f"  {label:44}" + "".join(f"{c:>26}" for c in cells))
    for name, (_, _, failed) in zip(names, measured, strict=True):
        if failed:
            print(f"  {name}: {failed} requests failed")


def verdicts(times: dict[str, list[float]], kinds: dict[str, str]) -> None:
    for kind, bound in TARGETS.items():
        worst = max(
            ((percentile(v, 0.99), label) for label, v in times.items() if kinds[label] == kind),
            default=None,
        )
        if worst is not None:
            verdict = "within" if worst[0] <= bound else "OVER"
            print(f"  {kind:9} p99 worst {worst[0]:7.1f} ms ({worst[1]}): {verdict} {bound:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communes", type=int, default=NATIONAL_COMMUNES)
    parser.add_argument("--rate", type=float, default=NATIONAL_RATE, help="messages/s ingested")
    parser.add_argument("--seconds", type=float, default=60, help="each phase's length")
    parser.add_argument("--hours", type=float, default=2, help="history built before")
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument(
        "--think", type=float, default=2.0, help="seconds between a console's requests"
    )
    parser.add_argument(
        "--full-model",
        choices=("auto", "on", "off"),
        default="auto",
        help="phase 3 (the model recomputed per request): auto = up to 1,000 communes",
    )
    parser.add_argument(
        "--switch-ms",
        default=None,
        help="the interpreter's thread switch interval in the server (ms; default: the "
        "collector's own); several (5,0.5) are taken in turn during each phase, each "
        "request and batch counted under the one that held when it began",
    )
    parser.add_argument(
        "--alternate-s", type=float, default=2.0, help="how long each --switch-ms holds"
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="phases 4 (reads in the collector's process) and 5 (the read process) this "
        "many times in turn",
    )  # fmt: skip
    args = parser.parse_args()
    # The read process says what it does at INFO (warming, its long garbage-collection
    # passes): it takes this process's level. The collector's parts here stay quiet.
    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s")
    logging.getLogger("collector").setLevel(logging.WARNING)
    share_between_ingest_and_reads()  # as `run` does
    intervals = [float(ms) / 1000 for ms in args.switch_ms.split(",")] if args.switch_ms else []
    if intervals:
        sys.setswitchinterval(intervals[0])
    full_model = args.full_model == "on" or (args.full_model == "auto" and args.communes <= 1000)
    country = Country(args.communes)
    with tempfile.TemporaryDirectory(prefix="commune-reads-") as tmp:
        path = Path(tmp) / "state.sqlite"
        store = StateStore(path)
        AlertEngine(default_rules()).install(store)
        Spool(store).attach()
        reader = StateStore(path)
        live = LiveHealth(reader, country.inventories)
        live.install(store)  # the last observer, as `run` installs it
        ingestor = Ingestor(store, "commune")
        built = time.perf_counter()
        start = time.time() - args.hours * 3600 - 120
        steps = int(args.hours * 2)
        for step in range(steps + 1):
            batch = country.cycle(start + 1800 * step)
            for i in range(0, len(batch), 500):
                ingestor.process(batch[i : i + 500])
        print(f"reads under ingest: {args.communes} communes in {len(country.fleets)} provinces, "
              f"{len(country.agents)} agents, {steps + 1} cycles of history built in "
              f"{time.perf_counter() - built:.0f} s; {args.consoles} consoles, "
              f"{args.rate:.0f} msg/s, {args.seconds:.0f} s a phase; thread switch interval "
              f"{1000 * sys.getswitchinterval():g} ms", flush=True)  # fmt: skip
        warming = time.perf_counter()
        live.warm()  # as `run` does at start: every province held, the overviews computed
        warmed = time.perf_counter() - warming
        live.communes(days=OVERVIEW_DAYS)  # what the lists ask: computed once before
        gc.freeze()  # as `run` does once warm
        pace_for_ingest()  # and as it sets the garbage collector
        print(f"  live model warmed in {warmed:.1f} s (`run` does it at start), every "
              f"commune's detail first computed in {time.perf_counter() - warming - warmed:.1f} s",
              flush=True)  # fmt: skip
        settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
        console = ConsoleSection()
        # As `run` wires it: the read process follows what the writer commits.
        feed = FactsFeed()
        store.observers.append(feed.observe)
        store.watchers.append(feed)
        reads = ReadProcess(feed)
        handing = create_app(live, reader, settings, console=console,
                             read_channel=reads.channel)  # fmt: skip
        warming = time.perf_counter()
        reads.start(ReadSettings(str(path), tuple(country.inventories), settings, console))
        while not reads.warmed:
            if not reads.running:
                raise SystemExit("the read process ended while warming")
            time.sleep(0.1)
        print(f"  read process started and warmed in {time.perf_counter() - warming:.1f} s",
              flush=True)  # fmt: skip
        servers = {
            "reads": AppServer(handing).start(),
            "live": AppServer(create_app(live, reader, settings, console=console)).start(),
            "full": AppServer(create_app(HealthModel(reader, country.inventories), reader,
                                         settings, console=console)).start(),
        }  # fmt: skip
        # A process's first request of a kind imports and builds what the next ones reuse
        # (anyio's thread backend, pydantic's schemas: 50-400 ms once): asked once before
        # the phases, so that a phase's p99 is of the requests that follow.
        for model in ("live", "reads", "full") if full_model else ("live", "reads"):
            _warm_up(servers[model].port, country)
        # As `run`'s housekeeping does every 10 s: the figures that depend on time alone
        # computed again before they pass their bound, off the requests' path.
        refreshing = threading.Event()

        def housekeeping() -> None:
            while not refreshing.wait(10.0):
                live.refresh()

        threading.Thread(target=housekeeping, name="housekeeping", daemon=True).start()
        names, measured, ingest = [], [], []
        pauses = Pauses()
        phases = [
            ("idle, live model", "live", False),
            ("ingest alone", "", True),
            ("ingest, full model", "full", True),
        ]
        for turn in range(args.rounds):
            suffix = f" ({turn + 1})" if args.rounds > 1 else ""
            phases += [
                (f"ingest, live model{suffix}", "live", True),
                (f"ingest, read process{suffix}", "reads", True),
            ]
        if not full_model:
            phases.remove(("ingest, full model", "full", True))
            print("  (no phase with the full model at this size: --full-model on)", flush=True)
        for name, model, ingesting in phases:
            waited = quiesce(servers)
            if waited > 0.05:
                print(f"  (the last requests went on {waited:.1f} s before this phase)")
            # As `run` holds them: the collector's own model warm only while it answers
            # the reads itself (before), forgotten while the read process does.
            if model == "reads":
                live.forget()
            elif model == "live" and not live.facts.holds_any():
                live.warm()
                live.communes(days=OVERVIEW_DAYS)
            feeder = None
            if ingesting:
                stream = country.stream(time.time(), args.rate, args.seconds)
                gc.freeze()  # the benchmark's own messages: not the collector's to collect
                feeder = Feeder(ingestor, stream, args.rate, args.seconds)
            print(f"  phase: {name} ...", flush=True)
            pauses.reset()
            began = time.monotonic()
            alternation = Alternation(intervals, args.alternate_s) if len(intervals) > 1 else None
            if model:
                by_interval = phase(servers[model].port, country, args, feeder, alternation)
                added = len(by_interval)
                for interval, figures in sorted(by_interval.items(), reverse=True):
                    names.append(name if alternation is None else f"{name}, {1000 * interval:g} ms")
                    measured.append(figures)
                late = time.monotonic() - began - args.seconds
                print(f"  {name}: its last requests answered {max(0.0, late):.1f} s after "
                      f"its end", flush=True)  # fmt: skip
            elif feeder is not None:  # no reads: what ingest does on its own, for reference
                if alternation is not None:
                    alternation.start()
                feeder.start()
            if feeder is not None:
                feeder.join()
            if alternation is not None:
                alternation.done.set()
                alternation.join()
            print(f"  {name}: garbage collector: {pauses.summary()}", flush=True)
            if feeder is not None:
                ingest.append(f"  {name}: {feeder.summary()}")
                if alternation is not None:
                    for interval in sorted(set(intervals), reverse=True):
                        ingest.append(f"    {1000 * interval:g} ms: "
                                      f"{feeder.share(alternation, interval)}")  # fmt: skip
                print("\n".join(ingest[-1 - (len(set(intervals)) if alternation else 0):]),
                      flush=True)  # fmt: skip
            if model:
                report(names[-added:], measured[-added:])
            if intervals:
                sys.setswitchinterval(intervals[0])
        print("all phases:")
        report(names, measured)
        print("ingest:")
        for line in ingest:
            print(line)
        for name, (times, kinds, _) in zip(names, measured, strict=True):
            print(f"targets, {name}:")
            verdicts(times, kinds)
        sys.stdout.flush()
        refreshing.set()
        for server in servers.values():
            server.stop()
        print(f"read process: {reads.channel.handed} reads answered, "
              f"{reads.channel.kept} served by the collector, {reads.channel.timed_out} "
              f"timed out; the feed's resets: {feed.resets}")  # fmt: skip
        reads.stop()
        reader.close()
        store.close()


if __name__ == "__main__":
    main()
