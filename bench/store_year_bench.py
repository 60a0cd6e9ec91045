"""State store growth over a year: a province's month and the country's days, table by table.

    .venv/bin/python bench/store_year_bench.py --short    # about a minute (make bench)
    .venv/bin/python bench/store_year_bench.py            # the full run, ~30 minutes

Simulated, through the collector's real commit path (``Ingestor`` -> ``StateStore`` with
the built-in alert rules in its transactions, the sink's spool drained as the sink does,
the notifier delivering to one route, the housekeeping of ``commune-collector run``:
agents gone silent, the alert timers, retention), on one simulated clock shared by the
agents and the collector, from a Monday 00:00 in Vietnam:

- a province: 95 communes of 49 PCs and a poller (Dong Nai's shape), 30 days (--short:
  fewer communes and days);
- the country: 3,321 communes, 166,050 agents, 2 days (--short: a sample of communes,
  N and 2N, scaled per commune, their linearity shown);

with the events of ``fleet/life.py``: office hours and weekends, lines down and flapping,
power cuts, anti-malware going stale or switched off, Polycoms on for meetings only,
disks filling, PCs replaced (the old agent forgotten after 30 days), every poller
probing the province's nine shared systems and its commune's website.

Thinned sampling, and its proof. 166,050 agents at a 60-second cycle are ~250 million
messages a day: hours of commit path per simulated hour here. What grows does so per
event (an outage, an alert, a notification), per time bucket (the line's 5-minute
history, an hour's histogram) or per agent, not per sample; so the runs above sample a
check every few minutes to hours while nothing it reports changes, and at the real
cycle around every change (``fleet.life.Sampling.thinned``). The first section proves
it: the same communes, the same events, one store at the real 60-second cycle and one
thinned, table by table (ratio 1.00 = equivalent). A table counted per answer (the
shared systems' response-time histograms) is said so, and its daily figure is taken
from the real cycle's run, per commune.

Reported: each table's size (pages in use, with its indexes, from sqlite's dbstat; the
sink's spool left out since it drains) after warm-up and its growth per simulated day,
then the 13 months with retention: what is pruned after the retention (400 days), what
after a shorter window, and what is never pruned (found by moving the clock 13 months
on over the province's store and running the retention: what remains was not pruned).
Targets: national growth <= 10 MB/day after warm-up, <= 5 GB at 13 months.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.notify import Notifier, Route  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.ingest.ingestor import Ingestor, Message  # noqa: E402
from collector.outputs.spool import Spool  # noqa: E402
from collector.state import systemtimes  # noqa: E402
from collector.state.housekeeping import Housekeeping, Task, mark_silent, retention  # noqa: E402
from collector.state.store import RTT_KEEP_S, AgentState, StateStore, UpdateStanding  # noqa: E402
from fleet.life import DAY_S, Life, Sampling, Settings  # noqa: E402
from fleet.scenario import Fleet  # noqa: E402
from fleet.scenario import Message as Published  # noqa: E402

#: Monday 1 June 2026, 00:00 in Vietnam.
MONDAY = 1_780_246_800.0
NATIONAL_COMMUNES = 3321
PCS = 49
RETENTION_DAYS = 400
FORGET_DAYS = 30
MONTHS_13_DAYS = 395
TARGET_DAY_MB = 10.0
TARGET_13_MONTHS_GB = 5.0
MB = 1e6
#: Counted per answer of a shared system: their growth follows the sampling, so their
#: daily figures come from the real cycle's run, per commune.
PER_ANSWER = ("system_times_hourly", "system_times_daily")
#: How long each table keeps what it gains a day (days), as the code prunes it; a table
#: not listed that grows is never pruned, and the retention check below shows it.
WINDOWS: dict[str, float] = {
    "outages": RETENTION_DAYS,
    "subject_gaps": RETENTION_DAYS,
    "system_times_daily": RETENTION_DAYS,
    "audit": RETENTION_DAYS,
    "rtt_history": RTT_KEEP_S / DAY_S,
    "loss_history": RTT_KEEP_S / DAY_S,
    "line_history": RTT_KEEP_S / DAY_S,
    "system_times_hourly": systemtimes.HOURLY_KEEP_S / DAY_S,
    # A replaced PC's rows go when it is forgotten.
    "agents": FORGET_DAYS,
    "latest": FORGET_DAYS,
    "ports": FORGET_DAYS,
    "agent_updates": FORGET_DAYS,
    "agent_refusals": FORGET_DAYS,
    # Resolved alerts, and the states and subjects not heard from, after the retention.
    "alerts": RETENTION_DAYS,
    "alert_steps": RETENTION_DAYS,
    "alert_subjects": RETENTION_DAYS,
    "subjects": RETENTION_DAYS,
    "silences": RETENTION_DAYS,
    "notifications": 0,
}


class SimClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def table_bytes(path: Path, used: bool = False) -> dict[str, int]:
    """Bytes of pages each table uses, its indexes included; the spool left out.
    ``used``: the bytes in use on them (a small store's tables are mostly empty pages)."""
    measure = "SUM(pgsize - unused)" if used else "SUM(pgsize)"
    with contextlib.closing(sqlite3.connect(path)) as db:
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
        sizes: dict[str, int] = defaultdict(int)
        query = f"SELECT name, {measure} FROM dbstat GROUP BY name"
        for name, size in db.execute(query):
            sizes[owner.get(name, name)] += int(size)
    for kept_apart in ("spool", "sqlite_schema", "sqlite_master"):
        sizes.pop(kept_apart, None)
    return dict(sizes)


_AGENTS = """SELECT agent_key, province, commune, agent, state, state_since, reason, version,
                    last_seen, last_seq, interval FROM agents
             WHERE agent_key >= ? AND agent_key < ? ORDER BY agent_key"""
_UPDATES = """SELECT agent_key, state, version, reason, ts, failures FROM agent_updates
              WHERE agent_key >= ? AND agent_key < ?"""


class ChangedPlaces:
    """The store as a thinned run's alert rounds see it: only the communes where an
    agent's state may have moved since the last round (a status came, or a timed rule
    is pending or resolving there), all their agents.

    Elsewhere the round would find what the last one found: every agent and commune
    either fine and never otherwise (the engine skips them) or firing unchanged, whose
    next change needs a status first. So the rounds run at every tick, as at the real
    cycle, at the cost of what changed; the equivalence section compares them with the
    engine reading every agent every round."""

    def __init__(self, store: StateStore, timed: Sequence[str]) -> None:
        self.store = store
        self.timed = tuple(timed)
        self.changed: set[str] = set()
        """Places ("province/commune") whose agents sent a status since the last round."""
        self._places: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _gather(self) -> list[str]:
        marks = ",".join("?" * len(self.timed))
        with self.store.reading() as db:
            waiting = db.execute(
                f"SELECT subject FROM alert_subjects WHERE state IN ('pending', 'resolving') "
                f"AND rule IN ({marks})",
                self.timed,
            ).fetchall()
            silent = db.execute(
                "SELECT province || '/' || commune FROM agents WHERE reason = 'silent'"
            ).fetchall()
        places = set(self.changed) | {str(p) for (p,) in silent}
        places |= {"/".join(str(key).split("/")[:2]) for (key,) in waiting}
        self.changed.clear()
        return sorted(places)

    def agents(self) -> list[AgentState]:
        self._places = self._gather()
        found: list[AgentState] = []
        with self.store.reading() as db:
            for place in self._places:
                lo = place + "/"
                found += [AgentState(*row) for row in db.execute(_AGENTS, (lo, lo + "\uffff"))]
        return found

    def update_reports(self, key: str | None = None) -> dict[str, UpdateStanding]:
        reports: dict[str, UpdateStanding] = {}
        with self.store.reading() as db:
            for place in self._places:
                lo = place + "/"
                for row in db.execute(_UPDATES, (lo, lo + "\uffff")):
                    reports[row[0]] = UpdateStanding(*row[1:])
        return reports


@dataclass
class Collector:
    """The collector's commit path and housekeeping, on a simulated clock."""

    path: Path
    clock: SimClock
    thinned: bool
    messages: int = 0
    rounds_s: float = 0.0
    store: StateStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = StateStore(self.path, clock=self.clock)
        rules = default_rules()
        self.engine = AlertEngine(rules, clock=self.clock)
        self.engine.install(self.store)
        self.view = ChangedPlaces(self.store, [r.name for r in rules if r.on != "sample"])
        self.spool = Spool(self.store).attach()
        self.ingestor = Ingestor(self.store, "commune")
        # Every notification is delivered on one route (recorded as a step of its alert).
        route = Route("technicians", ("json://localhost",))
        self.notifier = Notifier(self.store, [route], rules, send=lambda *_: True, clock=self.clock)
        keep, forget = RETENTION_DAYS * DAY_S, FORGET_DAYS * DAY_S
        # Agents declare a 60 s interval. A thinned run's checks are hours apart while
        # nothing changes: "silent" waits longer than that (every loss here comes with a
        # Last Will or a goodbye; at the real cycle this task never finds anyone either).
        silent = mark_silent(self.store, 3 * 720 if self.thinned else 3, 60.0)
        self.housekeeping = Housekeeping(
            [
                Task("silence", silent),
                Task("alerts", self._alerts),
                Task("retention", retention(self.store, keep, forget), every_s=3600.0),
            ],
            monotonic=self.clock,
        )

    def _alerts(self, now: float) -> None:
        started = time.perf_counter()
        self.engine.tick(self.view if self.thinned else self.store, now)  # type: ignore[arg-type]
        self.rounds_s += time.perf_counter() - started

    def feed(self, end: float, published: Sequence[Published]) -> None:
        """A tick's messages, received at its end and committed (1,000 a batch); then the
        sink takes the spool, the notifier sends, the housekeeping runs."""
        self.clock.now = end
        batch = [Message(topic, payload, end, _nothing) for topic, payload, _ in published]
        for topic, _, retained in published:
            if retained:  # a status: birth, goodbye or Last Will
                self.view.changed.add("/".join(topic.split("/")[1:3]))
        for offset in range(0, len(batch), 1000):
            self.ingestor.process(batch[offset : offset + 1000])
        self.spool.done(2**62)
        self.notifier.run_once()
        self.housekeeping.run(end)
        self.messages += len(batch)

    def close(self) -> None:
        self.store.close()


def _nothing() -> None:
    pass


@dataclass
class Run:
    """One simulated store: its tables' bytes at the end of each simulated day."""

    name: str
    communes: int
    days: list[dict[str, int]] = field(default_factory=list)
    messages: int = 0
    wall_s: float = 0.0
    rounds_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    path: Path = Path()


def simulate(
    workdir: Path,
    name: str,
    communes: int,
    ticks: int,
    *,
    sampling: Sampling,
    settings: Settings | None = None,
    start: float = MONDAY,
    pcs: int = PCS,
    seed: int = 7,
    say: Callable[[str], None] | None = None,
) -> Run:
    """Play ``communes`` communes for ``ticks`` minutes from ``start``, every PC known to
    the collector from the start (as after a week)."""
    path = workdir / f"{name}.sqlite"
    for old in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        old.unlink(missing_ok=True)
    fleet = Fleet("dong-nai", [f"x{i:04d}" for i in range(communes)], pcs, seed=seed)
    life = Life(fleet, start, settings=settings or Settings(), sampling=sampling, seed=seed)
    collector = Collector(path, SimClock(start), thinned=not sampling.real)
    run = Run(name, communes, path=path)
    started = time.perf_counter()
    collector.feed(start, life.births(known=True))
    for tick in range(ticks):
        end, messages = life.step()
        collector.feed(end, messages)
        if (tick + 1) % 1440 == 0 or tick + 1 == ticks:
            run.days.append(table_bytes(path))
            if say and (tick + 1) % 1440 == 0:
                say(
                    f"    {name}: day {len(run.days)}, {collector.messages:,} messages, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    run.messages = collector.messages
    run.wall_s = time.perf_counter() - started
    run.rounds_s = collector.rounds_s
    run.counts = dict(life.counts)
    collector.close()
    return run


def growth(run: Run, first: int = 1) -> dict[str, float]:
    """Bytes a day each table gained from the end of day ``first`` to the last day."""
    days = len(run.days) - first
    start, end = run.days[first - 1], run.days[-1]
    return {t: (end.get(t, 0) - start.get(t, 0)) / days for t in set(start) | set(end)}


def mb(value: float) -> str:
    return f"{value / MB:9.3f}"


def rows(path: Path, tables: Sequence[str]) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}


def equivalence(workdir: Path, communes: int, hours: float, say: Callable[[str], None]) -> None:
    """The same communes and events at the real cycle and thinned, table by table."""
    start = MONDAY + 6 * 3600  # the PCs come on within the window
    say(
        f"1. thinned vs the real 60 s cycle: {communes} communes x{PCS + 1} agents, {hours:g} h "
        "from Monday 06:00, stormy (weeks of line drops, flaps, power cuts, stale and "
        "switched-off anti-malware, replaced PCs in hours); the same events in both"
    )
    ticks = round(hours * 60)
    stormy = Settings.stormy()
    real = simulate(workdir, "real", communes, ticks, sampling=Sampling(), settings=stormy,
                    start=start)  # fmt: skip
    thin = simulate(workdir, "thinned", communes, ticks, sampling=Sampling.thinned(),
                    settings=stormy, start=start)  # fmt: skip
    assert real.counts | {"envelopes": 0} == thin.counts | {"envelopes": 0}, "events differ"
    a, b = real.days[-1], thin.days[-1]
    counted = ["outages", "subject_gaps", "alerts", "alert_steps", "alert_subjects", "subjects",
               "agents", "latest", "line_history"]  # fmt: skip
    ra, rb = rows(real.path, counted), rows(thin.path, counted)
    say(f"   {'table':22s} {'real, B':>10s} {'thinned, B':>10s} {'ratio':>6s}   rows real/thinned")
    for table in sorted(set(a) | set(b)):
        if max(a.get(table, 0), b.get(table, 0)) <= 3 * 4096:
            continue  # empty: enrollment, maintenance, rollouts...
        ratio = b.get(table, 0) / a[table] if a.get(table) else float("nan")
        note = f"   {ra[table]:7d} / {rb[table]:<7d}" if table in ra else ""
        note += "   (per answer: see below)" if table in PER_ANSWER else ""
        say(f"   {table:22s} {a.get(table, 0):10d} {b.get(table, 0):10d} {ratio:6.2f}{note}")
    events = ", ".join(f"{k} {v}" for k, v in sorted(real.counts.items()) if k != "envelopes")
    say(f"   events: {events}")
    say(
        f"   messages: real {real.messages:,}, thinned {thin.messages:,} "
        f"(x{real.messages / max(1, thin.messages):.1f} fewer); wall {real.wall_s:.0f} s vs "
        f"{thin.wall_s:.0f} s"
    )


def per_answer(
    workdir: Path, communes: int, days: int, say: Callable[[str], None]
) -> dict[str, float]:
    """How much more the response-time histograms hold at the real cycle than thinned: the
    pollers alone (no PC probes a shared system), both ways over the same days, the bytes
    in use compared (a few pollers fill a page or two)."""
    ticks = days * 1440
    real = simulate(workdir, "answers-real", communes, ticks, sampling=Sampling(), pcs=0)
    thin = simulate(workdir, "answers-thin", communes, ticks, sampling=Sampling.thinned(), pcs=0)
    a, b = table_bytes(real.path, used=True), table_bytes(thin.path, used=True)
    factors = {t: a.get(t, 0) / max(1, b.get(t, 0)) for t in PER_ANSWER}
    say(
        f"   per answer: {communes} pollers, {days} days, real cycle vs thinned: "
        + ", ".join(f"{t} x{f:.2f}" for t, f in factors.items())
        + " (applied to the thinned runs' figures of these tables)"
    )
    return factors


def report_run(
    run: Run, daily: dict[str, float], say: Callable[[str], None], static: int = 0
) -> None:
    """Per table: size after day ``static`` (warm-up), growth a day, size at the end."""
    say(f"   {'table':22s} {'after warm-up':>13s} {'MB/day':>9s} {'at the end':>10s}")
    first, last = run.days[static], run.days[-1]
    for table in sorted(last, key=lambda t: -daily.get(t, 0)):
        if last[table] <= 3 * 4096 and not daily.get(table):
            continue
        say(f"   {table:22s} {mb(first.get(table, 0))}    {mb(daily.get(table, 0))} "
            f"{mb(last[table])}")  # fmt: skip
    say(
        f"   {'all':22s} {mb(sum(first.values()))}    {mb(sum(daily.values()))} "
        f"{mb(sum(last.values()))}"
    )


def corrected(daily: dict[str, float], factors: dict[str, float]) -> dict[str, float]:
    return {t: v * factors.get(t, 1.0) for t, v in daily.items()}


def retention_check(run: Run, workdir: Path, say: Callable[[str], None]) -> set[str]:
    """Move the clock 401 days on over a copy of the store (nothing received since) and run
    the housekeeping: a table that keeps all it held is never pruned. What remains of the
    others is the fleet's state (its agents and subjects, alerts still firing)."""
    copy = workdir / "later.sqlite"
    copy.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(run.path)) as src,
        contextlib.closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)
    before = table_bytes(copy)
    later = MONDAY + (len(run.days) + RETENTION_DAYS + 1) * DAY_S
    with StateStore(copy, clock=lambda: later) as store:
        mark_silent(store, 3, 60.0)(later)
        retention(store, RETENTION_DAYS * DAY_S, FORGET_DAYS * DAY_S)(later)
    after = table_bytes(copy)
    never = {t for t in before if before[t] > 3 * 4096 and after.get(t, 0) >= before[t]}
    say(f"4. retention: the province's store {RETENTION_DAYS + 1} days later, housekeeping run")
    say(f"   {'table':22s} {'before':>9s} {'after':>9s}")
    for table in sorted(before, key=lambda t: -before[t]):
        if before[table] > 3 * 4096:
            flag = "   NEVER PRUNED" if table in never else ""
            say(f"   {table:22s} {mb(before[table])} {mb(after.get(table, 0))}{flag}")
    return never


def extrapolate(
    static: dict[str, float], daily: dict[str, float], never: set[str], say: Callable[[str], None]
) -> None:
    say(f"   {'table':22s} {'MB/day':>9s} {'kept':>10s} {'at 13 months':>14s}")
    total = steady = 0.0
    for table in sorted(set(static) | set(daily), key=lambda t: -daily.get(t, 0)):
        gain = max(0.0, daily.get(table, 0))
        window = WINDOWS.get(table)
        unbounded = table in never or (window is None and gain > 0)
        days = MONTHS_13_DAYS if unbounded or window is None else min(window, MONTHS_13_DAYS)
        size = static.get(table, 0) + gain * days
        total += size
        steady += gain if days > 8 else 0.0
        if size > 1e6:
            label = "NEVER" if unbounded else f"{window:g} days" if window else "-"
            say(f"   {table:22s} {mb(gain)} {label:>10s} {size / 1e9:11.3f} GB")
    first = sum(max(0.0, v) for v in daily.values())
    say(
        f"   growth a day after warm-up: {first / MB:.1f} MB, {first / MB / TARGET_DAY_MB:.2f} "
        f"of the target ({TARGET_DAY_MB:g} MB); once the windows of 8 days or less are full: "
        f"{steady / MB:.1f} MB, {steady / MB / TARGET_DAY_MB:.2f} of the target"
    )
    say(
        f"   at 13 months: {total / 1e9:.2f} GB, {total / 1e9 / TARGET_13_MONTHS_GB:.2f} of the "
        f"target ({TARGET_13_MONTHS_GB:g} GB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="about a minute (make bench)")
    parser.add_argument("--keep", type=Path, help="keep the stores in this directory")
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, flush=True)

    short = args.short
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="store-year-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        equivalence(workdir, 2 if short else 4, 2 if short else 24, say)
        factors = per_answer(workdir, 2 if short else 6, 1 if short else 2, say)

        communes, days = (12, 4) if short else (95, 30)
        say(f"2. a province: {communes} communes x{PCS + 1} agents, {days} days from a Monday, "
            "thinned")  # fmt: skip
        province = simulate(workdir, "province", communes, days * 1440,
                            sampling=Sampling.thinned(), say=None if short else say)  # fmt: skip
        # After warm-up: the second half (two weeks of the full run: weekends included).
        half = days // 2
        daily = corrected(growth(province, half), factors)
        say(f"   {province.messages:,} messages in {province.wall_s:.0f} s; growth a day over "
            f"days {half + 1}-{days}")  # fmt: skip
        report_run(province, daily, say, static=half - 1)
        events = {k: v / communes / days for k, v in province.counts.items() if k != "envelopes"}
        listed = ", ".join(f"{k} {v:.2f}" for k, v in sorted(events.items()))
        say(f"   events a commune a day: {listed}")

        small = 6 if short else 40
        say(f"3. the country: {small} and {2 * small} communes, 2 days each; per commune x"
            f"{NATIONAL_COMMUNES:,}")  # fmt: skip
        one = simulate(workdir, "national-n", small, 2 * 1440, sampling=Sampling.thinned())
        two = simulate(workdir, "national-2n", 2 * small, 2 * 1440, sampling=Sampling.thinned())
        for label, n, m in (("size after day 1", one.days[0], two.days[0]),
                            ("growth on day 2", growth(one), growth(two))):  # fmt: skip
            say(f"   {label}: {sum(n.values()) / MB:.2f} MB ({small}), "
                f"{sum(m.values()) / MB:.2f} MB ({2 * small}): "
                f"x{sum(m.values()) / max(1, sum(n.values())):.2f} for x2 communes")  # fmt: skip
        scale = NATIONAL_COMMUNES / two.communes
        static = {t: v * scale for t, v in two.days[0].items()}
        national_daily = {t: v * NATIONAL_COMMUNES / communes for t, v in daily.items()}
        say(f"   the country: the 2x run's size after day 1 x{scale:.1f}; growth a day: the "
            f"province's per commune x{NATIONAL_COMMUNES:,} (two weeks, weekends included; "
            "a day-2 figure would be a weekday's and include warm-up)")  # fmt: skip
        national = Run("national", NATIONAL_COMMUNES, days=[static, static])  # type: ignore[list-item]
        report_run(national, national_daily, say)

        never = retention_check(province, workdir, say)
        say(f"5. the country at 13 months ({MONTHS_13_DAYS} days), retention {RETENTION_DAYS} days")
        extrapolate(static, national_daily, never, say)
        say(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
