"""Round benchmark: the CPU of the housekeeping round at the national size, against main.

    .venv/bin/python bench/round_bench.py [--communes 3321] [--rounds 30]
        [--base-ref d38b2b8 | --base /path/to/a/checkout]
    .venv/bin/python bench/round_bench.py --communes 200 --rounds 5 --burst-rounds 2   # short

Every 10 s beside ingest the collector marks silent agents offline and runs the agent
and commune rules over every agent (``StateStore.mark_silent``, ``AlertEngine.tick``).
This fills a store with ``--communes`` communes of 49 PCs and a poller (one cycle of
each agent's checks and its birth, as ``collector_bench`` warms it), then makes the
night and day of a country: PCs stopped, agents lost without a word, whole communes
gone silent, agents refusing samples, update reports (some rolled back, some failing);
between rounds a few agents stop, start or fall silent, and data brings silent ones back;
then, for a few rounds, many (``--burst``: the offices opening or closing).

The same store twice: one copy gets the rounds of the code before (``--base``, a
checkout; or ``--base-ref``, checked out in a git worktree made for the run), the
other this code's, alternating round by round, each timed on its thread (CPU seconds).
The two copies must end with the same alerts, steps and notifications (checked).

Then the ingest's own cost per batch (a batch of envelopes, as the ingest commits
them), on the copy with what this code added to the store (its triggers) and on the
one without, alternating.
"""

from __future__ import annotations

import argparse
import functools
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: The code before this round's changes, timed beside it.
BASE_REF = "d38b2b8"
sys.path.insert(0, str(REPO))

from agent import wire  # noqa: E402
from agent.wire import Envelope, Sample, Status, UpdateReport  # noqa: E402
from bench.collector_bench import NATIONAL_COMMUNES, publisher_fleet, warm  # noqa: E402
from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.ingest.ingestor import Ingestor, Message  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402
from tests.test_round_held import decisions  # noqa: E402 - the same rows the property test compares

Round = Callable[[StateStore, float], None]
OFFLINE_AFTER = 3.0
DEFAULT_INTERVAL = 60.0


def load_base(base: Path) -> tuple[type[AlertEngine], Callable[..., list[str]]]:
    """The alert engine and ``mark_silent`` of the checkout at ``base``, beside this code's
    (its other modules are the same as this code's)."""

    def load(name: str, path: Path, replace: tuple[str, str] = ("", "")) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module  # dataclasses look their module up
        source = path.read_text(encoding="utf-8").replace(*replace)
        exec(compile(source, str(path), "exec"), module.__dict__)
        return module

    load("base_round", base / "collector/alerts/round.py")
    engine = load(
        "base_engine",
        base / "collector/alerts/engine.py",
        ("from collector.alerts import round as round_reads", "import base_round as round_reads"),
    )
    store = load("base_store", base / "collector/state/store.py")
    return engine.AlertEngine, store.StateStore.mark_silent


def fill(path: Path, communes: int, now: float) -> Fleet:
    """The national store as a steady day leaves it, and its fleet."""
    agents = communes * 50
    store = StateStore(path)
    started = time.monotonic()
    warm(store, 1, agents)
    fleet = publisher_fleet(0, agents)
    ingestor = Ingestor(store, "commune")
    births = [Message(topic, payload, now - 60) for topic, payload, _ in fleet.births(now - 120)]
    for offset in range(0, len(births), 1000):
        ingestor.process(births[offset : offset + 1000])
    rng = random.Random(7)
    pcs = [a for a in fleet.agents if not a.poller]
    stopped = rng.sample(pcs, len(pcs) // 20)
    lost = rng.sample(pcs, len(pcs) // 100)
    statuses = [Message(*fleet.goodbye(a, now - 100)[:2], now - 100) for a in stopped]
    statuses += [Message(*fleet.will(a)[:2], now - 90) for a in lost]
    for offset in range(0, len(statuses), 1000):
        ingestor.process(statuses[offset : offset + 1000])
    with store.transaction() as db:
        # Every agent updated once; a few rolled back or failing, a few refusing samples.
        db.execute(
            "INSERT INTO agent_updates SELECT agent_key, 'committed', '0.4.0', '0.3.0', '', ?, "
            "'1.0', ?, 0 FROM agents",
            (now - 3600, now - 3600),
        )
        keys = [str(k) for (k,) in db.execute("SELECT agent_key FROM agents ORDER BY agent_key")]
        for key in rng.sample(keys, max(1, len(keys) // 500)):
            db.execute(
                "UPDATE agent_updates SET state = 'rolled_back', reason = 'crash loop' "
                "WHERE agent_key = ?",
                (key,),
            )
        for key in rng.sample(keys, max(1, len(keys) // 1000)):
            db.execute(
                "UPDATE agent_updates SET state = 'failed', failures = 3 WHERE agent_key = ?",
                (key,),
            )
        for key in rng.sample(keys, 20):
            db.execute(
                "INSERT OR REPLACE INTO agent_refusals VALUES (?, 'series', 40, 40, ?, ?)",
                (key, now - 300, now - 300),
            )
        # Silent (no goodbye): 1 % of the agents, and every agent of 0.5 % of the communes.
        silent = rng.sample(keys, len(keys) // 100)
        places = sorted({k.rsplit("/", 1)[0] for k in keys})
        for place in rng.sample(places, max(1, len(places) // 200)):
            silent += [k for k in keys if k.startswith(place + "/")]
        db.executemany(
            "UPDATE agents SET last_seen = ?, status_ts = MIN(status_ts, ?) WHERE agent_key = ?",
            [(now - 1000, now - 1000, k) for k in silent],
        )
    store.close()
    print(
        f"  store      {agents} agents in {communes} communes, filled in "
        f"{time.monotonic() - started:.0f} s (not measured)",
        flush=True,
    )
    return fleet


class Churn:
    """What happens to the fleet between two rounds, the same on both stores."""

    def __init__(self, fleet: Fleet, changes: int) -> None:
        self.rng = random.Random(11)
        self.pcs = [a for a in fleet.agents if not a.poller]
        self.province = fleet.province
        self.changes = changes
        self.seq = 10**6

    def between(self, now: float) -> list[Callable[[StateStore], object]]:
        work: list[Callable[[StateStore], object]] = []
        statuses = []
        for agent in self.rng.sample(self.pcs, self.changes):
            state, reason = self.rng.choice(
                [("online", ""), ("online", ""), ("offline", "stopped"),
                 ("offline", "connection lost")]
            )  # fmt: skip
            update = UpdateReport(state="committed", version="0.4.0", ts=now - 5)
            statuses.append(
                Status(
                    v=wire.SCHEMA_VERSION,
                    state=state,
                    agent=agent.agent,  # type: ignore[arg-type]
                    province=self.province,
                    commune=agent.commune.slug,
                    ts=now - 5,
                    reason=reason,
                    interval=DEFAULT_INTERVAL,
                    update=update if state == "online" else None,
                )
            )
        work.append(lambda s: s.apply(statuses=[(st, now - 5) for st in statuses], received=now))
        # Data from two agents, maybe silent ones: brought back.
        self.seq += 1
        host = Sample(name="host", check="host", ts=now - 3, outcome="ok",
                      fields={"cpu_percent": 3.0})  # fmt: skip
        envelopes = [
            Envelope(
                v=wire.SCHEMA_VERSION,
                agent=a.agent,
                province=self.province,
                commune=a.commune.slug,
                seq=self.seq,
                ts=now - 3,
                samples=[host],
            )
            for a in self.rng.sample(self.pcs, 2)
        ]
        work.append(lambda s: s.apply(envelopes, received=now))
        # The others' data keeps them seen (the ingest does it with every batch).
        work.append(lambda s: _keep_seen(s, now))
        return work


def _keep_seen(store: StateStore, now: float) -> None:
    with store.transaction() as db:
        db.execute(
            "UPDATE agents SET last_seen = ? WHERE last_seen > ? AND last_seen < ?",
            (now, now - 150, now - 50),
        )


def timed(work: Callable[[], object]) -> float:
    started = time.thread_time()
    work()
    return time.thread_time() - started


def measure_rounds(
    tmp: Path, fleet: Fleet, base: Path, phases: list[tuple[int, int]], now: float
) -> tuple[StateStore, StateStore, float]:
    """``phases``: (rounds, agents changing state between two) each; the time after."""
    base_engine, base_mark_silent = load_base(base)
    shutil.copy(tmp / "state.sqlite", tmp / "main.sqlite")
    main_store, new_store = StateStore(tmp / "main.sqlite"), StateStore(tmp / "state.sqlite")
    with main_store.transaction() as db:  # main's store: no triggers
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f"DROP TRIGGER {name}")
    main_engine, new_engine = base_engine(default_rules()), AlertEngine(default_rules())
    main_engine.install(main_store)
    new_engine.install(new_store)

    def main_round(at: float) -> tuple[float, float]:
        silence = timed(lambda: base_mark_silent(main_store, at, OFFLINE_AFTER, DEFAULT_INTERVAL))
        return silence, timed(lambda: main_engine.tick(main_store, at))

    def new_round(at: float) -> tuple[float, float]:
        silence = timed(lambda: new_store.mark_silent(at, OFFLINE_AFTER, DEFAULT_INTERVAL))
        return silence, timed(lambda: new_engine.tick(new_store, at))

    sides = [("main", main_round), ("this", new_round)]
    first = {name: sum(round_(now)) for name, round_ in sides}  # reads everything: apart
    print(
        "  first round (reads every agent), CPU s: "
        + ", ".join(f"{name} {cpu:.3f}" for name, cpu in first.items()),
        flush=True,
    )
    number = 0
    for rounds, changes in phases:
        churn = Churn(fleet, changes)
        figures: dict[str, list[tuple[float, float]]] = {"main": [], "this": []}
        for _ in range(rounds):
            number += 1
            at = now + 10 * number
            for work in churn.between(at):
                work(main_store)
                work(new_store)
            for name, round_ in sides if number % 2 else reversed(sides):
                figures[name].append(round_(at))
        print(f"  {rounds} rounds, {changes} agents changing state between two; CPU s a round:")
        medians = {}
        for name, results in figures.items():
            silence = statistics.median(r[0] for r in results)
            tick = statistics.median(r[1] for r in results)
            medians[name] = statistics.median(sum(r) for r in results)
            print(
                f"    {name:5} mark_silent {silence:.4f}  tick {tick:.4f}  round "
                f"{medians[name]:.4f} (mean {statistics.mean(sum(r) for r in results):.4f})"
            )
        print(f"    main / this = {medians['main'] / medians['this']:.1f}x", flush=True)
    same = decisions(main_store) == decisions(new_store)
    with new_store.reading() as db:
        firing = db.execute("SELECT COUNT(*) FROM alerts WHERE state = 'firing'").fetchone()[0]
    print(f"  same alerts, steps and notifications: {'yes' if same else 'NO'} ({firing} firing)")
    if not same:
        raise SystemExit("the rounds decided differently")
    return main_store, new_store, now + 10 * number


def measure_ingest(store: StateStore, fleet: Fleet, batches: int, now: float) -> None:
    """CPU s a batch of ~900 envelopes (300 agents' cycles) on the same store, its
    triggers there for one batch and dropped for the next."""
    with store.reading() as db:
        triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        created = [(str(name), str(sql)) for name, sql in triggers]
    rng = random.Random(5)
    figures: dict[str, list[float]] = {"with triggers": [], "without": []}
    envelopes: list[Envelope] = []
    for number in range(batches):
        at = now + 400 + number
        agents = rng.sample(fleet.agents, 300)
        envelopes = [
            wire.decode_envelope(payload)
            for agent in agents
            for _, payload, _ in fleet.cycle(agent, at)
        ]
        with_triggers = number % 2 == 0
        if not with_triggers:
            with store.transaction() as db:
                for name, _ in created:
                    db.execute(f"DROP TRIGGER {name}")
        apply = functools.partial(store.apply, envelopes, received=at)
        figures["with triggers" if with_triggers else "without"].append(timed(apply))
        if not with_triggers:
            with store.transaction() as db:
                for _, sql in created:
                    db.execute(sql)
    print(f"  ingest, {batches} batches of ~{len(envelopes)} envelopes; CPU ms a batch (median):")
    for name, results in figures.items():
        print(f"    {name:14} {1000 * statistics.median(results):.2f}")
    print(
        f"    with / without = "
        f"{statistics.median(figures['with triggers']) / statistics.median(figures['without']):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communes", type=int, default=NATIONAL_COMMUNES)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--changes", type=int, default=30, help="agents changing between rounds")
    parser.add_argument(
        "--burst", type=int, default=1000, help="then as many, as when the offices open"
    )
    parser.add_argument("--burst-rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=40, help="ingest batches timed")
    parser.add_argument("--base", type=Path, help="a checkout of the code before")
    parser.add_argument(
        "--base-ref", default=BASE_REF, help="else this git ref, checked out for the run"
    )
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="commune-round-") as name:
        tmp = Path(name)
        if args.base is None:
            args.base = tmp / "base"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                 str(args.base), args.base_ref],
                check=True,
            )  # fmt: skip
        if not (args.base / "collector/alerts/engine.py").exists():
            raise SystemExit(f"{args.base}: not a checkout")
        print(f"round: {args.communes} communes; before: {args.base}", flush=True)
        try:
            run(args, tmp, now)
        finally:
            if args.base.is_relative_to(tmp):
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(args.base)],
                    check=False,
                )


def run(args: argparse.Namespace, tmp: Path, now: float) -> None:
    fleet = fill(tmp / "state.sqlite", args.communes, now)
    phases = [(args.rounds, args.changes), (args.burst_rounds, args.burst)]
    main_store, new_store, at = measure_rounds(tmp, fleet, args.base, phases, now)
    measure_ingest(new_store, fleet, args.batches, at)
    main_store.close()
    new_store.close()


if __name__ == "__main__":
    main()
