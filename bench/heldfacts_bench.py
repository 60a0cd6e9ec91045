"""Held facts benchmark: the read process's model of a country, its memory and its
recomputing, against the code before in the same run.

    .venv/bin/python bench/heldfacts_bench.py [--communes 300] [--rounds 2]
        [--base-ref 2504230 | --base /path/to/a/checkout]
    .venv/bin/python bench/heldfacts_bench.py --communes 3321 --rounds 1   # the country
    .venv/bin/python bench/heldfacts_bench.py --communes 100 --rounds 1    # short

The read process answers the health model's reads from facts held in memory
(``collector/state/heldfacts.py``) and computes a commune again only when they
changed (``collector/state/livehealth.py``). Under ingest every commune changes
between two national reads, so a national page computes its 100 communes again; and
after a Reset (the feed overflowed, or the read process started again) the first
national read loads every province's facts from the store.

Each tree (this checkout, and ``--base``, or ``--base-ref`` checked out in a git worktree
made for the run) is measured in a process of its own, the two alternating round by
round, on a store of ``--communes`` simulated communes (``reads_bench.Country``: 49 PCs
and a poller each) filled with two cycles of every agent:

- the held facts' memory (``tracemalloc``, after a garbage collection) once every
  province is loaded, and after one more cycle of every agent fed through the store's
  observer (as ingest keeps them current in the collector; the read process's feed
  hands the same ``HeldFacts`` the same samples): what the process holds more than
  before the loading, the held facts most of it;
- the CPU time of loading every province (without ``tracemalloc``);
- the CPU time of computing again a page of 100 communes (the national list, without
  and with each commune's detail) after a cycle changed them all, the lower of two.

Printed: each figure for both trees and this tree's ratio to the base's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The code before this round's changes (held facts sharing their texts, quick reads).
BASE_REF = "2504230"
PAGE = 100
"""Communes on a national page."""

FIGURES = {
    "loaded_mib": "held facts, every province loaded (MiB)",
    "fed_mib": "held facts after a fed cycle (MiB)",
    "load_cpu_s": "loading every province (CPU s)",
    "list_ms": f"{PAGE} changed communes, national list (CPU ms)",
    "detail_ms": f"{PAGE} changed communes, with detail (CPU ms)",
}


def measure(tree: Path, communes: int) -> dict[str, float]:
    """The figures of the code in ``tree`` (run in a process of its own)."""
    sys.path[:0] = [str(tree), str(tree / "bench")]
    import gc
    import time
    import tracemalloc

    from reads_bench import Country  # type: ignore[import-not-found]

    from collector.alerts.engine import AlertEngine
    from collector.alerts.rules import default_rules
    from collector.ingest.ingestor import Ingestor
    from collector.state.livehealth import LiveHealth
    from collector.state.store import StateStore

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="commune-held-") as name:
        country = Country(communes)
        store = StateStore(Path(name) / "state.sqlite")
        AlertEngine(default_rules()).install(store)
        ingestor = Ingestor(store, "commune")
        now = time.time()

        def cycle(at: float) -> None:
            messages = country.cycle(at)
            for i in range(0, len(messages), 1000):
                ingestor.process(messages[i : i + 1000])

        for minutes in (5, 4):
            cycle(now - 60 * minutes)
        provinces = [inventory.province for inventory in country.inventories]

        # The load's CPU, untraced, on a model of its own.
        timed = LiveHealth(store, country.inventories)
        timed.install(store)
        gc.collect()
        started = time.process_time()
        timed.facts.load(store, provinces)
        figures["load_cpu_s"] = time.process_time() - started
        store.observers.remove(timed.facts.observe)
        store.watchers.remove(timed.facts)
        timed.close()
        del timed

        model = LiveHealth(store, country.inventories)
        model.install(store)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        model.facts.load(store, provinces)
        gc.collect()
        figures["loaded_mib"] = (tracemalloc.get_traced_memory()[0] - base) / 2**20
        cycle(now - 180)
        gc.collect()
        figures["fed_mib"] = (tracemalloc.get_traced_memory()[0] - base) / 2**20
        tracemalloc.stop()

        model.communes(None, detail=False)
        model.communes(None, detail=True)
        page = model.places(None)[:PAGE]
        lists, details = [], []
        for minutes in (2, 1):
            cycle(now - 60 * minutes)  # every commune changes
            for detail, times in ((False, lists), (True, details)):
                started = time.process_time()
                model.some(page, detail=detail)
                times.append(1000 * (time.process_time() - started))
        figures["list_ms"] = min(lists)
        figures["detail_ms"] = min(details)
        model.close()
        store.close()
    return figures


def run_tree(tree: Path, communes: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(tree), "--communes", str(communes)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{tree}: the measuring process failed\n{done.stderr}")
    return {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def report(
    communes: int, rounds: list[tuple[dict[str, float], dict[str, float]]], base: str
) -> None:
    print(f"held facts: {communes} communes ({communes * 50} agents); before: {base}")
    for key, label in FIGURES.items():
        ours = [mine[key] for mine, _ in rounds]
        theirs = [before[key] for _, before in rounds]
        shown = " / ".join(f"{a:.2f}" if a < 10 else f"{a:.1f}" for a in ours)
        shown_base = " / ".join(f"{b:.2f}" if b < 10 else f"{b:.1f}" for b in theirs)
        ratio = sum(ours) / sum(theirs) if sum(theirs) else float("nan")
        said = label.replace(str(PAGE), str(min(PAGE, communes)))  # a short run's page
        print(f"  {said:<48} {shown:>16}  before {shown_base:>16}  x {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="each tree measured this often")
    parser.add_argument("--base", type=Path, help="a checkout of the code before")
    parser.add_argument(
        "--base-ref", default=BASE_REF, help="else this git ref, checked out for the run"
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.communes)))
        return
    # Here, not at the top: the measuring process imports the tree it measures first.
    sys.path.insert(0, str(REPO))
    from bench.pc_agent import baseline_tree, remove_tree

    with tempfile.TemporaryDirectory(prefix="commune-held-") as name:
        base = args.base or baseline_tree(args.base_ref, Path(name))
        try:
            rounds = []
            for turn in range(args.rounds):
                print(f"  round {turn + 1} of {args.rounds}...", flush=True)
                rounds.append((run_tree(REPO, args.communes), run_tree(base, args.communes)))
            report(args.communes, rounds, str(args.base or args.base_ref))
        finally:
            if args.base is None:
                remove_tree(base)


if __name__ == "__main__":
    main()
