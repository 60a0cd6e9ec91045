"""Health model benchmark: how long the IOC waits for a province's roll-up.

    .venv/bin/python bench/health_bench.py [--communes 95] [--pcs 50] [--hours 24] [--every 30]

Builds a state store with the fleet simulator (a province of ``--communes`` x
(``--pcs`` PCs + a poller), ``--hours`` of history at one cycle every
``--every`` minutes, lines going down about 20 times a day so there is outage
history to compute), then times what the API serves: every commune
(/api/v1/communes), the province (/api/v1/province) and one commune. The
baseline, measured in the same run, is reading the facts alone (agents, latest
samples, subjects: the store's share of the work).

Then the same questions of the live model (``state/livehealth.py``, what
``commune-collector run`` serves): its first answer (the province read into memory),
an answer with nothing changed since, and one after every agent's next cycle was
committed (every commune changed): before (full recomputation) and after, in the
same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent import wire  # noqa: E402
from collector.state.health import HealthModel  # noqa: E402
from collector.state.livehealth import LiveHealth  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402


def timed(action: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communes", type=int, default=95)
    parser.add_argument("--pcs", type=int, default=50)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--every", type=float, default=30, help="minutes between cycles")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="commune-health-") as tmp:
        store = StateStore(Path(tmp) / "state.sqlite")
        slugs = [f"c{i:03d}" for i in range(args.communes)]
        fleet = Fleet("dong-nai", slugs, args.pcs, seed=1, outages_per_day=20)
        start = time.time() - args.hours * 3600
        births = [(wire.decode_status(p), start) for _, p, _ in fleet.births(start)]
        store.apply(statuses=births)
        built = time.perf_counter()
        steps = int(args.hours * 60 / args.every)
        for step in range(steps):
            now = start + 60 * args.every * step
            store.apply(
                [
                    wire.decode_envelope(payload)
                    for agent in fleet.agents
                    for _, payload, _ in fleet.cycle(agent, now)
                ]
            )
        built = time.perf_counter() - built
        model = HealthModel(store)
        subjects = len(store.subjects())
        print(
            f"province: {args.communes} communes, {len(fleet.agents)} agents, {subjects} subjects "
            f"with history, {steps} cycles built in {built:.1f} s"
        )
        floor = timed(lambda: model._facts("dong-nai"))
        communes = timed(lambda: model.communes("dong-nai"))
        province = timed(lambda: model.province("dong-nai"))
        one = timed(lambda: model.commune(slugs[len(slugs) // 2], "dong-nai"))
        print(f"  reading the facts (baseline)  {floor:7.1f} ms")
        print(f"  every commune                 {communes:7.1f} ms  ({communes / floor:.1f} x)")
        print(f"  the province                  {province:7.1f} ms  ({province / floor:.1f} x)")
        print(f"  one commune                   {one:7.1f} ms")
        live = LiveHealth(store)
        live.install(store)
        slug = slugs[len(slugs) // 2]
        first = timed(lambda: live.communes("dong-nai"), repeat=1)
        live.province("dong-nai")
        live.commune(slug, "dong-nai")
        print("live model (kept current by the store's observer):")
        print(f"  every commune, first asked    {first:7.1f} ms  (the province read into memory)")
        asked = {
            "every commune": lambda: live.communes("dong-nai"),
            "the province": lambda: live.province("dong-nai"),
            "one commune": lambda: live.commune(slug, "dong-nai"),
        }
        full = {"every commune": communes, "the province": province, "one commune": one}
        for label, ask in asked.items():
            same = timed(ask)
            print(f"  {label + ', nothing changed':30}{same:7.1f} ms  "
                  f"(full / live = {full[label] / same:.0f} x)")  # fmt: skip
        last = start + 60 * args.every * (steps - 1)
        minutes = 0
        for label, ask in asked.items():
            times: list[float] = []
            for _ in range(3):
                # Every agent's next cycle committed (not timed), then asked.
                minutes += 1  # a minute later each time, as agents report
                at = last + 60 * minutes
                store.apply([wire.decode_envelope(payload) for agent in fleet.agents
                             for _, payload, _ in fleet.cycle(agent, at)])  # fmt: skip
                began = time.perf_counter()
                ask()
                times.append(1000 * (time.perf_counter() - began))
            after = statistics.median(times)
            print(f"  {label + ', all changed':30}{after:7.1f} ms  "
                  f"(full / live = {full[label] / after:.1f} x)")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
