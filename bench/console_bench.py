"""Console benchmark: how long a technician waits for the province's overview page.

    .venv/bin/python bench/console_bench.py [--pcs 50] [--days 7] [--every 30]
        [--outages-per-day 2] [--repeat 15]

Builds a state store with the fleet simulator over the shipped inventory of Đồng
Nai (95 communes of the official register; each with ``--pcs`` PCs and a poller,
``--days`` of history at one cycle every ``--every`` minutes, each commune's line
going down ``--outages-per-day`` times a day, seen by every PC's probe: 2 is a
bad line, 20 a line flapping all week, the stress case), serves the
console and the API as ``commune-collector run`` does (FastAPI on uvicorn, on
loopback), and times, over HTTP from this process:

- ``GET /`` the overview (95 rows, each with its seven-day strip), also searched and
  filtered;
- ``GET /api/v1/communes``, the same health figures as JSON: the baseline measured
  in the same run, since the page adds its strips and its HTML to that work;
- ``GET /healthz``: the floor of one request;
- the line cache's warming, which ``commune-collector run`` does at start.

The history ends an hour ago; the "live" overview is timed with the fleet's next
cycle (every agent, a minute later each time) applied before each request, as
ingest does while technicians look: lines that changed are read again, the others
come from the health model's line cache. The first request (nothing cached) is
reported on its own.

Prints the median and the 95th percentile of each, and the page's ratio to the
baseline. The issue's bound: the overview in under a second on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from agent import wire  # noqa: E402
from collector.config import ApiSection, ConsoleSection  # noqa: E402
from collector.state.health import HealthModel  # noqa: E402
from collector.state.inventory import load_inventory  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from collector.web.factory import create_app  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402
from tests.servers import AppServer  # noqa: E402

INVENTORY = REPO / "deploy" / "inventory" / "dong-nai.toml"


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, 95th percentile) wall time in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def fetch(url: str) -> Callable[[], bytes]:
    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=60) as response:
            body: bytes = response.read()
        return body

    return get


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pcs", type=int, default=50)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--every", type=float, default=30, help="minutes between cycles")
    parser.add_argument("--outages-per-day", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    inventory = load_inventory(INVENTORY)
    slugs = [c.slug for c in inventory.communes]
    with tempfile.TemporaryDirectory(prefix="commune-console-") as tmp:
        store = StateStore(Path(tmp) / "state.sqlite")
        fleet = Fleet("dong-nai", slugs, args.pcs, seed=1, outages_per_day=args.outages_per_day)
        now = time.time() - 3600  # the last hour is played live, between requests
        start = now - args.days * 86400
        store.apply(statuses=[(wire.decode_status(p), start) for _, p, _ in fleet.births(start)])
        built = time.perf_counter()
        steps = int(args.days * 24 * 60 / args.every)
        for step in range(steps + 1):
            at = min(start + 60 * args.every * step, now)
            store.apply(
                [
                    wire.decode_envelope(payload)
                    for agent in fleet.agents
                    for _, payload, _ in fleet.cycle(agent, at)
                ]
            )
        built = time.perf_counter() - built
        with store.reading() as db:
            (outages,) = db.execute("SELECT COUNT(*) FROM outages").fetchone()
        print(
            f"Đồng Nai: {len(slugs)} communes, {len(fleet.agents)} agents, "
            f"{len(store.subjects())} subjects with history, {outages} outages recorded, "
            f"{steps} cycles over {args.days:g} days built in {built:.0f} s"
        )
        reader = StateStore(Path(tmp) / "state.sqlite")
        settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
        model = HealthModel(reader, [inventory])
        # What `commune-collector run` does at start, before anyone asks.
        warming = time.perf_counter()
        model.warm()
        warming = 1000 * (time.perf_counter() - warming)
        app = create_app(model, reader, settings, console=ConsoleSection())
        served = AppServer(app).start()
        base = served.url
        first = time.perf_counter()
        page = fetch(base + "/")()
        first = 1000 * (time.perf_counter() - first)
        rows = page.count(b"<tr class=")
        print(f"  the overview: {len(page) / 1024:.0f} KiB of HTML, {rows} rows")
        floor = timed(fetch(base + "/healthz"), args.repeat)
        baseline = timed(fetch(base + "/api/v1/communes"), args.repeat)
        minute = [0]

        def live() -> bytes:
            """The fleet's next cycle is ingested (not timed), then the page is read."""
            minute[0] += 1
            at = now + 60 * minute[0]
            batch = [wire.decode_envelope(payload) for agent in fleet.agents
                     for _, payload, _ in fleet.cycle(agent, at)]  # fmt: skip
            store.apply(batch)
            started = time.perf_counter()
            body = fetch(base + "/")()
            times.append(1000 * (time.perf_counter() - started))
            return body

        times: list[float] = []
        for _ in range(args.repeat):
            live()
        times.sort()
        overview = (statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))])
        searched = timed(fetch(base + "/?q=xuan&status=&sort=code"), args.repeat)
        critical = timed(fetch(base + "/?status=critical"), args.repeat)
        print(f"  warming the line cache at start    {warming:7.1f} ms (before anyone asks)")
        print(f"  GET / overview, first request      {first:7.1f} ms")
        for label, (median, p95) in (
            ("GET /healthz (floor)", floor),
            ("GET /api/v1/communes (baseline)", baseline),
            ("GET / overview, live", overview),
            ("GET /?q=xuan&sort=code", searched),
            ("GET /?status=critical", critical),
        ):
            page_request = label.startswith("GET /?") or label.startswith("GET / ")
            ratio = f"  ({median / baseline[0]:.2f} x baseline)" if page_request else ""
            print(f"  {label:34} median {median:7.1f} ms  p95 {p95:7.1f} ms{ratio}")
        for label, value in (("live p95", overview[1]), ("first request", first)):
            verdict = "under" if value < 1000 else "OVER"
            print(f"  the overview's {label} is {verdict} the one-second bound")
        served.stop()
        reader.close()
        store.close()


if __name__ == "__main__":
    main()
