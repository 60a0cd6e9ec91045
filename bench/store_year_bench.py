"""State store growth over a year: a province's month and the country's days, table by table.

    .venv/bin/python bench/store_year_bench.py --short    # about a minute (make bench)
    .venv/bin/python bench/store_year_bench.py            # the full run: ~30 minutes here
    .venv/bin/python bench/store_year_bench.py --keep DIR # and keep the stores to look into

Everything goes through the collector's real commit path: ``Ingestor`` -> ``StateStore``
with the built-in alert rules in its transactions and the sink's spool (drained as the
sink does), the notifier delivering to one route (its steps recorded), and the
housekeeping of ``commune-collector run`` (agents gone silent, the alert rounds, the
retention), on one simulated clock shared by the agents and the collector. The agents
are ``fleet/life.py``'s: office hours in Vietnam's time and weekends, lines down and
flapping, power cuts, anti-malware going stale or switched off, Polycoms on for meetings
only, disks filling, PCs replaced (the old agent forgotten after 30 days), every poller
probing the province's nine shared systems and its commune's website; PCs run the
province's office profile (host, anti-malware every 10 minutes, two line probes).

Simulated:
1. the same few communes for a day (--short: 2 hours) at the real 60 s cycle and
   thinned, with weeks of events packed in (``Settings.stormy``): table by table, the
   proof that thinning changes what grows by less than a few percent; and the pollers
   alone for two days (--short: one) both ways, for the histograms counted per answer;
2. a province, 95 communes of 49 PCs and a poller (Dong Nai's shape), 30 days from a
   Monday (--short: 12 communes, 4 days), thinned;
3. N and 2N communes (40 and 80; --short: 6 and 12) for 2 days, thinned.
Extrapolated:
- the country's size after warm-up: the 2N run's after its first day, per commune x3,321
  (3. shows the sizes and growth scale with the communes);
- the country's growth a day: the province's over its second half (two weeks, weekends
  included), per commune x3,321; the per-answer tables' thinned figures multiplied by
  what 1. measured;
- 13 months: each table's size after warm-up plus its growth a day for as long as it
  keeps it (its window: 400 days' retention, 8 days for the line's history, 2 for the
  hourly response times, 30 for a forgotten agent's rows), or for all 395 days if it
  is never pruned; which tables are pruned is checked by moving the clock 401 days on
  over the province's store and running the housekeeping (4.).

Why thinned: 166,050 agents at a 60 s cycle are ~250 million messages a day, days of
commit path here per simulated day. What grows does so per event (an outage, an alert,
a notification), per time bucket (the line's 5-minute history, an hour's histogram) or
per agent, not per sample: a thinned run samples a check every 15 minutes to 12 hours
while nothing it reports changes, and at the real cycle around every change
(``fleet.life.Sampling.thinned``); its alert rounds are the engine's, which read only
the agents whose facts some rule holds for (``collector.alerts.round``). The shared
systems' response-time histograms do grow with the answers (a bucket answered once
more is one more pair), hence their correction.

Reported: each table's bytes (sqlite's dbstat, pages with their indexes; the sink's
spool left out: it drains) after warm-up and its growth a day, for the province and the
country; the 13-month extrapolation; ratios to the targets: national growth <= 10 MB a
day after warm-up, <= 5 GB at 13 months.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.notify import Notifier, Route  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.config import StoreSection  # noqa: E402
from collector.ingest.ingestor import Ingestor, Message  # noqa: E402
from collector.outputs.spool import Spool  # noqa: E402
from collector.state import systemtimes  # noqa: E402
from collector.state.housekeeping import Housekeeping, Task, mark_silent, retention  # noqa: E402
from collector.state.packed import histogram_counts, line_values  # noqa: E402
from collector.state.store import RTT_KEEP_S, StateStore  # noqa: E402
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
#: The alerts' tables: resolved alerts are kept the retention, and at most [store]
#: max_alerts of them (its default).
ALERT_TABLES = ("alerts", "alert_steps")
MAX_ALERTS = StoreSection().max_alerts
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
                Task("retention", retention(self.store, keep, forget, MAX_ALERTS), every_s=3600.0),
            ],
            monotonic=self.clock,
        )

    def _alerts(self, now: float) -> None:
        started = time.perf_counter()
        self.engine.tick(self.store, now)
        self.rounds_s += time.perf_counter() - started

    def feed(self, end: float, published: Sequence[Published]) -> None:
        """A tick's messages, received at its end and committed (1,000 a batch); then the
        sink takes the spool, the notifier sends, the housekeeping runs."""
        self.clock.now = end
        batch = [Message(topic, payload, end, _nothing) for topic, payload, _ in published]
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
    alerts: list[int] = field(default_factory=list)
    """Alerts raised by the end of each day (their ids)."""
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
            with collector.store.reading() as db:
                run.alerts.append(
                    int(db.execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0])
                )
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


def progress(text: str) -> None:
    print(f"   ({text.strip()})", flush=True)


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


def equivalence(
    workdir: Path, communes: int, hours: float, say: Callable[[str], None]
) -> dict[str, float]:
    """The same communes and events at the real cycle and thinned, table by table; the
    ratios (thinned / real)."""
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
    return {t: b.get(t, 0) / a[t] for t in a if a[t]}


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
        retention(store, RETENTION_DAYS * DAY_S, FORGET_DAYS * DAY_S, MAX_ALERTS)(later)
    after = table_bytes(copy)
    never = {t for t in before if before[t] > 3 * 4096 and after.get(t, 0) >= before[t]}
    say(f"4. retention: the province's store {RETENTION_DAYS + 1} days later, housekeeping run")
    say(f"   {'table':22s} {'before':>9s} {'after':>9s}")
    for table in sorted(before, key=lambda t: -before[t]):
        if before[table] > 3 * 4096:
            flag = "   NEVER PRUNED" if table in never else ""
            say(f"   {table:22s} {mb(before[table])} {mb(after.get(table, 0))}{flag}")
    return never


@dataclass
class Table:
    """One table of the country's store, from the province's per commune."""

    name: str
    end: float
    """Bytes after the province's month (its windows of 30 days or less are full)."""
    daily: float
    """Bytes a day it gains once warm (the province's second half)."""
    filling: float
    """Bytes a day it gains while its window fills (a short window is full by then)."""
    kept: float
    """Days of its growth it holds at 13 months."""
    measured: int
    """Days simulated: the 13-month figure adds what comes after."""
    note: str

    @property
    def at_13_months(self) -> float:
        return self.end + self.daily * max(0.0, self.kept - self.measured)

    @property
    def gain(self) -> float:
        """Bytes a day while it grows."""
        return self.filling if self.kept <= self.measured else self.daily


def country(
    province: Run, factors: dict[str, float], ratios: dict[str, float], never: set[str]
) -> list[Table]:
    """The country's tables: the province's per commune x3,321, corrected where counted per
    answer; each kept as the code prunes it."""
    scale = NATIONAL_COMMUNES / province.communes
    days = len(province.days)
    half = days // 2
    warm = growth(province, half)
    alerts_a_day = (province.alerts[-1] - province.alerts[half - 1]) / (days - half) * scale
    tables = []
    for name in province.days[-1]:
        factor = factors.get(name, 1.0)
        end = province.days[-1][name] * scale * factor
        daily = max(0.0, warm.get(name, 0.0)) * scale * factor
        window = WINDOWS.get(name)
        note = ""
        if name in ALERT_TABLES:
            window = min(float(RETENTION_DAYS), MAX_ALERTS / max(1.0, alerts_a_day))
            note = f"max_alerts {MAX_ALERTS:,}: {alerts_a_day:,.0f} alerts a day"
        if name == "alert_subjects":
            # One row per rule and subject once troubled: filled at the real cycle within a
            # day, slowly thinned (section 1): taken as full, growing no more.
            end, daily, note = end / ratios.get(name, 1.0), 0.0, "full (section 1's ratio)"
        if name in never or (window is None and daily > 0):
            window, note = float(MONTHS_13_DAYS), "NEVER PRUNED"
        kept = min(window or 0.0, float(MONTHS_13_DAYS))
        filling = daily
        if 0 < kept <= half:
            filled = province.days[int(kept)].get(name, 0) - province.days[0].get(name, 0)
            filling = max(0.0, filled) / kept * scale * factor
        tables.append(Table(name, end, daily, filling, kept, days, note))
    return tables


def extrapolate(tables: list[Table], say: Callable[[str], None]) -> None:
    say(f"   {'table':22s} {'MB/day':>8s} {'kept, days':>10s} {'at 13 months':>13s}")
    for t in sorted(tables, key=lambda t: -t.at_13_months):
        if t.at_13_months > 5e6:
            say(f"   {t.name:22s} {t.gain / MB:8.2f} {t.kept:10.0f} {t.at_13_months / 1e9:9.3f} GB"
                f"   {t.note}")  # fmt: skip
    # Growth a day as the windows fill one after the other.
    bounds = sorted({0.0, *(t.kept for t in tables if t.kept)})
    phases = []
    for first, last in itertools.pairwise(bounds):
        gain = sum(t.gain for t in tables if t.kept > first)
        phases.append(
            f"days {first + 1:.0f}-{last:.0f}: {gain / MB:.1f} MB ({gain / MB / TARGET_DAY_MB:.2f})"
        )
    say(
        f"   growth a day, and its ratio to the target ({TARGET_DAY_MB:g} MB): " + "; ".join(phases)
    )
    short = max((t.kept for t in tables if t.kept < MONTHS_13_DAYS), default=0.0)
    warm = sum(t.gain for t in tables if t.kept > short)
    total = sum(t.at_13_months for t in tables)
    ratio = warm / MB / TARGET_DAY_MB
    say(f"   after warm-up (day {short + 1:.0f} on: every window shorter than the retention "
        f"full): {warm / MB:.1f} MB a day, {ratio:.2f} of the target")  # fmt: skip
    say(f"   at 13 months: {total / 1e9:.2f} GB, {total / 1e9 / TARGET_13_MONTHS_GB:.2f} of the "
        f"target ({TARGET_13_MONTHS_GB:g} GB)")  # fmt: skip


#: The layouts before the store packed its figures (migrations 1, 4 and 10 made them).
EARLIER_LAYOUTS = (
    "CREATE TABLE rtt_history (place TEXT NOT NULL, bucket INTEGER NOT NULL, rtt REAL NOT NULL,"
    " PRIMARY KEY (place, bucket))",
    "CREATE TABLE loss_history (place TEXT NOT NULL, bucket INTEGER NOT NULL,"
    " loss REAL NOT NULL, PRIMARY KEY (place, bucket))",
    "CREATE TABLE system_times_hourly (subject_id INTEGER NOT NULL, hour INTEGER NOT NULL,"
    " bucket INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (subject_id, hour, bucket))"
    " WITHOUT ROWID",
    "CREATE TABLE system_times_daily (subject_id INTEGER NOT NULL, day INTEGER NOT NULL,"
    " bucket INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (subject_id, day, bucket))"
    " WITHOUT ROWID",
    "CREATE INDEX system_times_hourly_by_hour ON system_times_hourly (hour)",
    "CREATE INDEX system_times_daily_by_day ON system_times_daily (day)",
    "CREATE TABLE outages (subject_id INTEGER NOT NULL, start REAL NOT NULL, end REAL,"
    " PRIMARY KEY (subject_id, start))",
    "CREATE INDEX outages_open ON outages(subject_id) WHERE end IS NULL",
)


def compare_layouts(path: Path, workdir: Path, say: Callable[[str], None]) -> None:
    """The same rows in the earlier layouts, written in the order they came (by time)."""
    old = workdir / "earlier-layouts.sqlite"
    old.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(path)) as src,
        contextlib.closing(sqlite3.connect(old)) as dst,
    ):
        for statement in EARLIER_LAYOUTS:
            dst.execute(statement)
        line = src.execute("SELECT place, day, rtt, loss FROM line_history ORDER BY day, place")
        rtt, loss = [], []
        for place, day, rtts, losses in line:
            for found, values in ((rtt, rtts), (loss, losses)):
                found += [(place, day * 86400 + slot * 300, v) for slot, v in line_values(values)]
        rtt.sort(key=lambda row: row[1])
        loss.sort(key=lambda row: row[1])
        dst.executemany("INSERT INTO rtt_history VALUES (?, ?, ?)", rtt)
        dst.executemany("INSERT INTO loss_history VALUES (?, ?, ?)", loss)
        for table, period in (("system_times_hourly", "hour"), ("system_times_daily", "day")):
            rows = src.execute(
                f"SELECT subject_id, {period}, counts FROM {table} ORDER BY {period}"
            )
            dst.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                [
                    (subject, at, bucket, count)
                    for subject, at, counts in rows
                    for bucket, count in histogram_counts(counts).items()
                ],
            )
        outages = src.execute("SELECT subject_id, start, end FROM outages ORDER BY start")
        dst.executemany("INSERT INTO outages VALUES (?, ?, ?)", outages.fetchall())
        dst.commit()
    before, after = table_bytes(old), table_bytes(path)
    say("6. the packed layouts against the earlier ones: the province's rows as each keeps them")
    pairs = (
        ("line_history", ("rtt_history", "loss_history")),
        ("system_times_hourly", ("system_times_hourly",)),
        ("system_times_daily", ("system_times_daily",)),
        ("outages", ("outages",)),
    )
    for new, olds in pairs:
        was = sum(before.get(t, 0) for t in olds)
        now = after.get(new, 0)
        say(f"   {' + '.join(olds):32s} {mb(was)} MB -> {new:20s} {mb(now)} MB: "
            f"x{was / max(1, now):.1f} smaller")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="about a minute (make bench)")
    parser.add_argument("--keep", type=Path, help="keep the stores in this directory")
    parser.add_argument(
        "--layouts", type=Path, metavar="STORE", help="only section 6, on a kept province store"
    )
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, flush=True)

    if args.layouts:
        compare_layouts(args.layouts, args.layouts.parent, say)
        return
    short = args.short
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="store-year-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        communes, days = (12, 4) if short else (95, 30)
        small = 6 if short else 40
        # The province's month in a process of its own, beside the rest (two cores).
        with ProcessPoolExecutor(max_workers=1) as pool:
            show = None if short else progress
            month = pool.submit(simulate, workdir, "province", communes, days * 1440,
                                sampling=Sampling.thinned(), say=show)  # fmt: skip
            ratios = equivalence(workdir, 2 if short else 4, 2 if short else 24, say)
            factors = per_answer(workdir, 2 if short else 6, 1 if short else 2, say)
            one = simulate(workdir, "national-n", small, 2 * 1440, sampling=Sampling.thinned())
            two = simulate(workdir, "national-2n", 2 * small, 2 * 1440,
                           sampling=Sampling.thinned())  # fmt: skip
            province = month.result()

        half = days // 2
        say(f"2. a province: {communes} communes x{PCS + 1} agents, {days} days from a Monday, "
            f"thinned: {province.messages:,} messages in {province.wall_s:.0f} s; growth a day "
            f"over days {half + 1}-{days} (weekends included)")  # fmt: skip
        daily = {t: v * factors.get(t, 1.0) for t, v in growth(province, half).items()}
        report_run(province, daily, say, static=half - 1)
        events = {k: v / communes / days for k, v in province.counts.items() if k != "envelopes"}
        listed = ", ".join(f"{k} {v:.2f}" for k, v in sorted(events.items()))
        say(f"   events a commune a day: {listed}")
        alerts = (province.alerts[-1] - province.alerts[half - 1]) / (days - half) / communes
        say(f"   alerts a commune a day: {alerts:.1f}")

        say(f"3. the country, sampled: {small} and {2 * small} communes, 2 days each, thinned")
        for label, n, m in (("size after day 1", one.days[0], two.days[0]),
                            ("growth on day 2", growth(one), growth(two))):  # fmt: skip
            say(f"   {label}: {sum(n.values()) / MB:.2f} MB ({small}), "
                f"{sum(m.values()) / MB:.2f} MB ({2 * small}): "
                f"x{sum(m.values()) / max(1, sum(n.values())):.2f} for x2 communes")  # fmt: skip
        first = sum(two.days[0].values()) / two.communes * NATIONAL_COMMUNES
        say(f"   per commune x{NATIONAL_COMMUNES:,}: {first / 1e9:.2f} GB after day 1")

        never = retention_check(province, workdir, say)
        say(f"5. the country at 13 months ({MONTHS_13_DAYS} days): the province's month per "
            f"commune x{NATIONAL_COMMUNES:,}, then each table's growth for as long as it "
            "keeps it")  # fmt: skip
        extrapolate(country(province, factors, ratios, never), say)
        compare_layouts(province.path, workdir, say)
        say(f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
