"""Report benchmark: how long a province's month and the country's take, in every format.

    .venv/bin/python bench/report_bench.py [--short] [--scope both|province|country]
        [--pcs 49] [--pc-every-hours 96] [--poller-every-hours 6] [--outages-per-day 1]
        [--repeat 3] [--keep DIR] [--code CHECKOUT ...] [--per-province] [--formats md,docx]

Builds state stores with the fleet simulator (fleet/scenario.py) for October 2025:

- the province: the shipped inventory of Đồng Nai (deploy/inventory/dong-nai.toml, 95
  communes) and its catalogue of shared systems (9 systems and 95 websites), each
  commune with ``--pcs`` PCs and a poller;
- the country: the 34 provinces and 3,321 communes of the official register
  (vietnam-provinces, as ``commune-collector inventory`` writes them; the repository
  ships Đồng Nai's inventory only, so the others are generated here), each province
  with a catalogue like Đồng Nai's (its addresses renamed, a website per commune).

History at coarse cycles, so that a province builds in a minute and the country in
about half an hour (5.8 million line outages; keep it with ``--keep``): the PCs'
every check (host, anti-malware, dedicated-line probe) every ``--pc-every-hours``,
the pollers' (router, Polycom, line, the shared systems) every
``--poller-every-hours``, and every
change of a commune's line (the simulator's outages, ``--outages-per-day`` per
commune on average) seen when it happens by every probe of the commune: the line
outages a real month records (each one a row per PC). The alert engine follows the
batches (alerts with the simulated times) and a few maintenance windows are planned.

Then times ``commune-collector report`` itself, each run a process of its own (wall
time from its start, imports and config included), median of ``--repeat`` rounds,
with its CPU time (user and system, its worker processes' included) and its peak
resident memory (ru_maxrss from wait4: the highest of the process and its workers;
with --jobs 2 two workers hold a province each at once):

- the province's report in each format (md, csv, html, xlsx, docx);
- the country's report in each format: every province's, as a national collector
  makes them (``--province all``: one process, every inventory's province in turn,
  one file each); a checkout without ``--province all`` (``--code``, the code before
  it) runs one ``--province X`` process per province, 34 runs, as it had to; so does
  ``--per-province``, for comparison;
- the baseline, in the same rounds: a process that imports the same CLI and reads
  the rows the report is made of (each province's subjects, the month's outages and
  alerts) with plain SQL, nothing computed.

and prints each figure with its ratio to the baseline and to the bound of the issue:
a province's month within 5 s in each format, the country's within 60 s, memory
bounded (one province's report held at a time). ``--code A --code B`` times two
checkouts in alternation, round after round (a machine's speed drifts: compare
figures of the same run only).

``--short`` (for ``make bench``): a dozen communes of Đồng Nai and a two-province
"country", the same measurements, in under a minute. ``--keep DIR`` keeps the stores
(and reuses them when they are there: the country's takes minutes to build).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent import wire  # noqa: E402
from agent.wire import Envelope, Sample  # noqa: E402
from collector.alerts.engine import AlertEngine  # noqa: E402
from collector.alerts.rules import default_rules  # noqa: E402
from collector.outputs.report.build import month_bounds  # noqa: E402
from collector.state import maintenance  # noqa: E402
from collector.state.inventory import from_register, load_inventory  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from collector.state.systems import read_toml  # noqa: E402
from fleet.scenario import TSLCD_GATEWAY, Fleet, Plan, PlannedCheck, SimAgent  # noqa: E402

MONTH = "2025-10"
FORMATS = ("md", "csv", "html", "xlsx", "docx")
PROVINCE_BOUND_S = 5.0
COUNTRY_BOUND_S = 60.0
INVENTORY = REPO / "deploy" / "inventory" / "dong-nai.toml"
CATALOGUE = REPO / "deploy" / "inventory" / "dong-nai.systems.toml"


# ---------------------------------------------------------------------------------------
# The places: inventories and catalogues written as a collector's config reads them.


def _toml_text(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    return str(value)


def _catalogue_toml(data: dict[str, object]) -> str:
    lines = [f"province = {_toml_text(data['province'])}"]
    for table in ("systems", "websites"):
        for entry in data[table]:  # type: ignore[attr-defined]
            lines += ["", f"[[{table}]]"]
            lines += [f"{key} = {_toml_text(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def write_places(folder: Path, provinces: list[str], communes: int | None, pcs: int) -> list[str]:
    """Each province's inventory and catalogue in ``folder``; the province slugs. Đồng
    Nai's are the shipped ones (its PCs counted in); the others from the register, with a
    catalogue like Đồng Nai's. ``communes``: the first so many of each province only."""
    folder.mkdir(parents=True, exist_ok=True)
    shipped = read_toml(CATALOGUE)
    for province in provinces:
        text = from_register(
            province,
            load_inventory(INVENTORY) if province == "dong-nai" else None,
            defaults={"pcs": pcs, "routers": 1, "polycoms": 1},
        )
        if communes is not None:  # the heading and the first communes
            blocks = text.split("\n[[communes]]")
            text = "\n[[communes]]".join(blocks[: communes + 1])
        (folder / f"{province}.toml").write_text(text)
        inventory = load_inventory(folder / f"{province}.toml")
        host = province.replace("-", "")
        systems = []
        for system in shipped["systems"]:
            entry = {k: v for k, v in system.items() if k != "route"}  # no routes here
            for key in ("url", "host"):
                if key in entry:
                    entry[key] = str(entry[key]).replace("dongnai", host)
            if entry.get("communes"):
                entry["communes"] = [c.slug for c in inventory.communes][::3]
            systems.append(entry)
        websites = [
            {"commune": c.slug, "url": f"https://{c.slug.replace('-', '')}.{host}.gov.vn/"}
            for c in inventory.communes
        ]
        catalogue = {"province": province, "systems": systems, "websites": websites}
        (folder / f"{province}.systems.toml").write_text(_catalogue_toml(catalogue))
    return provinces


def write_config(folder: Path, store: Path, provinces: list[str]) -> Path:
    """A collector's config naming the store, every inventory and every catalogue."""
    inventories = [str(folder / f"{p}.toml") for p in provinces]
    catalogues = [str(folder / f"{p}.systems.toml") for p in provinces]
    path = folder / "collector.toml"
    path.write_text(
        "[collector]\n"
        f"inventory = {_toml_text(inventories)}\n"
        f"systems = {_toml_text(catalogues)}\n\n"
        f"[store]\npath = {_toml_text(str(store))}\n"
    )
    return path


# ---------------------------------------------------------------------------------------
# The month's history, from the fleet simulator.


def poller_plan(catalogue: dict[str, object], commune: str, every_s: float) -> Plan:
    """What the collector sends a commune's poller: its router, Polycom and line, and
    the shared systems the commune uses (its website among them)."""
    checks = [
        PlannedCheck("snmp", "router", "192.168.1.1"),
        PlannedCheck("polycom", "polycom", "192.168.1.20"),
        PlannedCheck("link", "tslcd-province", TSLCD_GATEWAY),
    ]
    for system in catalogue["systems"]:  # type: ignore[attr-defined]
        if system.get("communes") and commune not in system["communes"]:
            continue
        target = system.get("url") or f"{system['host']}:{system['port']}"
        checks.append(
            PlannedCheck("system", system["id"], target, system.get("network", "tslcd"),
                         system=system["name"], system_kind=system["kind"])
        )  # fmt: skip
    for site in catalogue["websites"]:  # type: ignore[attr-defined]
        if site["commune"] == commune:
            checks.append(
                PlannedCheck("system", "website", site["url"], "internet",
                             system=f"Trang thông tin điện tử {commune}", system_kind="website")
            )  # fmt: skip
    return Plan(1, "0" * 64, every_s, tuple(checks))


def line_probe(agent: SimAgent, province: str, ts: float, up: bool) -> Envelope:
    """One dedicated-line probe's run at a change of its commune's line."""
    fields: dict[str, wire.FieldValue] = {
        "up": int(up), "sent": 3, "received": 3 if up else 0,
        "loss_percent": 0.0 if up else 100.0,
    }  # fmt: skip
    if up:
        fields["rtt_ms"] = 18.0
    sample = Sample(ts=ts, check="link", name="tslcd-province",
                    outcome="ok" if up else "timeout", target=TSLCD_GATEWAY, fields=fields,
                    tags={"network": "tslcd", "method": "icmp"})  # fmt: skip
    return Envelope(v=wire.SCHEMA_VERSION, agent=agent.agent, province=province,
                    commune=agent.commune.slug, seq=agent.next_seq(), ts=ts,
                    samples=[sample])  # fmt: skip


@dataclass
class Built:
    agents: int
    subjects: int
    outages: int
    alerts: int
    seconds: float


def build_store(
    path: Path,
    folder: Path,
    provinces: list[str],
    *,
    pc_every_h: float,
    poller_every_h: float,
    outages_per_day: float,
    progress: Callable[[str], None],
) -> Built:
    started = time.perf_counter()
    store = StateStore(path)
    clock = [0.0]
    AlertEngine(default_rules(), clock=lambda: clock[0]).install(store)
    month_start, month_end = month_bounds(MONTH)
    begin = month_start - 3600
    fleets: list[Fleet] = []
    for index, province in enumerate(provinces):
        inventory = load_inventory(folder / f"{province}.toml")
        catalogue = read_toml(folder / f"{province}.systems.toml")
        slugs = [c.slug for c in inventory.communes]
        pcs = inventory.communes[0].pcs or 0
        fleet = Fleet(province, slugs, pcs, seed=index + 1, outages_per_day=outages_per_day,
                      interval=pc_every_h * 3600)  # fmt: skip
        for agent in fleet.agents:
            if agent.poller:
                agent.plan = poller_plan(catalogue, agent.commune.slug, poller_every_h * 3600)
        fleets.append(fleet)
        statuses = [(wire.decode_status(p), begin) for _, p, _ in fleet.births(begin)]
        clock[0] = begin
        store.apply(statuses=statuses, received=begin)

    def apply(envelopes: list[Envelope], at: float) -> None:
        clock[0] = at
        for offset in range(0, len(envelopes), 20_000):
            store.apply(envelopes[offset : offset + 20_000], received=at)

    def cycle(agents: list[SimAgent], fleet: Fleet, at: float) -> Iterator[Envelope]:
        for agent in agents:
            for _, payload, _ in fleet.cycle(agent, at):
                yield wire.decode_envelope(payload)

    members: list[dict[int, list[SimAgent]]] = []
    for fleet in fleets:
        by_commune: dict[int, list[SimAgent]] = {id(c): [] for c in fleet.communes}
        for agent in fleet.agents:
            by_commune[id(agent.commune)].append(agent)
        members.append(by_commune)
    step = min(pc_every_h, poller_every_h) * 3600
    now, last_pc = begin, -float("inf")
    while now < month_end + step:
        # The lines' changes until ``now``, in time order, every probe of the commune.
        changes: list[tuple[float, int, Fleet, int, bool]] = []
        for f_index, fleet in enumerate(fleets):
            for c_index, commune in enumerate(fleet.communes):
                moment = now
                while True:
                    up = commune.line_up(moment)  # the simulator's line, advanced
                    moment = commune.next_outage_at if up else commune.line_down_until
                    if moment >= now + step:
                        break
                    changes.append((moment, f_index, fleet, c_index, not up))
        changes.sort(key=lambda c: (c[0], c[1], c[3]))
        batch: list[Envelope] = []
        for at, f_index, fleet, c_index, up in changes:
            commune = fleet.communes[c_index]
            if up and commune.held:  # what waited while the line was down
                batch += [wire.decode_envelope(p) for _, p, _ in commune.held]
                commune.held = []
            for agent in members[f_index][id(commune)]:
                batch.append(line_probe(agent, fleet.province, at, up))
            if len(batch) >= 20_000:
                apply(batch, at)
                batch = []
        apply(batch, now + step)
        now += step
        pc_cycle = now - last_pc >= pc_every_h * 3600 - 1
        last_pc = now if pc_cycle else last_pc
        envelopes = [
            envelope
            for fleet in fleets
            for envelope in cycle(
                [a for a in fleet.agents if a.poller or pc_cycle], fleet, min(now, month_end)
            )
        ]
        apply(envelopes, min(now, month_end))
        progress(f"history to {time.strftime('%d/%m %H:%M', time.localtime(now))}")
    # Maintenance: the province's dedicated line one night, a system's weekly window.
    for province in provinces:
        first = load_inventory(folder / f"{province}.toml").communes[0].slug
        maintenance.add(store, province=province, commune=first, device="tslcd",
                        starts=month_start + 9 * 86400, ends=month_start + 9 * 86400 + 4 * 3600,
                        created_by="bench", now=month_start, reason="line work")  # fmt: skip
        maintenance.add(store, province=province, device="mot-cua", every="week",
                        starts=month_start + 2 * 3600, ends=month_start + 4 * 3600,
                        until=month_end, created_by="bench", now=month_start,
                        reason="system updates")  # fmt: skip
    with store.reading() as db:
        counts = [
            db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("agents", "subjects", "outages", "alerts")
        ]
    store.close()
    return Built(*counts, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------
# Measuring: each figure a child process's wall time and peak memory.


@dataclass
class Run:
    seconds: float
    peak_mib: float
    cpu_s: float
    """User and system time, its workers' included: what a loaded machine's wall time
    hides."""


def run_child(command: list[str], cwd: Path) -> Run:
    """Wall time of ``command`` and its peak resident memory (its own, from wait4)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode})")
    return Run(seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)  # KiB


def report_commands(
    config: Path, provinces: list[str], fmt: str, out: Path, all_at_once: bool
) -> list[list[str]]:
    """The CLI runs that make the report of ``provinces`` in ``fmt``: one run for them
    all (``--province all``), or one per province."""
    base = [sys.executable, "-m", "collector.cli", "report", "-c", str(config),
            "--month", MONTH, "--format", fmt]  # fmt: skip
    if all_at_once:
        return [[*base, "--province", "all", "-o", str(out)]]
    return [[*base, "--province", p, "-o", str(out / f"{p}-{MONTH}.{fmt}")] for p in provinces]


def baseline_child(store: str, provinces: list[str]) -> None:
    """The floor: a process that imports the CLI and reads the rows a month's report is
    made of (subjects, the month's outages, alerts), province by province, nothing
    computed. Plain SQL, so that it stays the same whatever the report's code does."""
    import sqlite3

    import collector.cli.main  # noqa: F401 - the same imports as the report's process

    start, end = month_bounds(MONTH)
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    for province in provinces:
        lo, hi = f"{province}/", f"{province}/\U0010ffff"
        db.execute("SELECT * FROM subjects WHERE agent_key >= ? AND agent_key < ?",
                   (lo, hi)).fetchall()  # fmt: skip
        db.execute(
            """SELECT o.subject_id, o.start, o.end FROM subjects s
               JOIN outages o ON o.subject_id = s.id
               WHERE s.agent_key >= ? AND s.agent_key < ?
                 AND o.start < ? AND (o.end IS NULL OR o.end > ?)""",
            (lo, hi, end, start),
        ).fetchall()
        db.execute("SELECT * FROM alerts WHERE province = ? AND started_at >= ? "
                   "AND started_at < ?", (province, start, end)).fetchall()  # fmt: skip
    db.close()


def all_at_once(code: Path) -> bool:
    """Whether the report command of ``code`` makes every province's in one run."""
    found = subprocess.run(
        [sys.executable, "-m", "collector.cli", "report", "--help"], cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return "all" in found.stdout.split("--province", 1)[-1].split("--", 1)[0]


@dataclass
class Figure:
    """One measured thing, for one checkout: its times and peaks over the rounds."""

    seconds: list[float]
    peaks: list[float]
    cpu: list[float]

    def add(self, runs: list[Run]) -> None:
        self.seconds.append(sum(r.seconds for r in runs))
        self.peaks.append(max(r.peak_mib for r in runs))
        self.cpu.append(sum(r.cpu_s for r in runs))

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_scope(
    label: str,
    config: Path,
    store: Path,
    provinces: list[str],
    codes: list[Path],
    *,
    bound: float,
    repeat: int,
    per_province: bool,
    formats: list[str],
) -> None:
    """The baseline and every format's report, for each checkout in turn, round after
    round (so that the checkouts compare on a machine whose speed drifts)."""
    out = config.parent / "out"
    out.mkdir(exist_ok=True)
    floor_cmd = [sys.executable, str(REPO / "bench" / "report_bench.py"),
                 "--baseline-child", str(store), *provinces]  # fmt: skip
    run_child(floor_cmd, REPO)  # the store into the page cache first
    plans: dict[Path, list[tuple[str, bool]]] = {}
    for code in codes:
        together = len(provinces) > 1 and all_at_once(code)
        ways = [("one run", True)] if together else []
        if not together or per_province:
            ways.insert(0, ("a run each" if len(provinces) > 1 else "", False))
        plans[code] = ways
    figures: dict[tuple[Path, str, str], Figure] = {}

    def figure(code: Path, how: str, fmt: str) -> Figure:
        return figures.setdefault((code, how, fmt), Figure([], [], []))

    for _ in range(repeat):
        for code in codes:
            figure(code, "", "baseline").add([run_child(floor_cmd, code)])
            for how, together in plans[code]:
                for fmt in formats:
                    commands = report_commands(config, provinces, fmt, out, together)
                    figure(code, how, fmt).add([run_child(c, code) for c in commands])
    for code in codes:
        name = f" [{code}]" if len(codes) > 1 else ""
        floor = figures[(code, "", "baseline")]
        print(f"  {label}{name}: baseline (store reads) {floor.median:.2f} s, "
              f"cpu {statistics.median(floor.cpu):.1f} s, {max(floor.peaks):.0f} MiB")  # fmt: skip
        for how, _together in plans[code]:
            total = 0.0
            for fmt in formats:
                found = figures[(code, how, fmt)]
                total += found.median
                ratio = found.median / bound
                cpu = statistics.median(found.cpu)
                print(
                    f"    {fmt:5} {how:10} {found.median:7.2f} s  cpu {cpu:6.1f} s"
                    f"  peak {max(found.peaks):5.0f} MiB"
                    f"  {found.median / floor.median:5.1f} x baseline  {ratio:5.2f} x bound"
                    f" ({bound:g} s){'' if ratio <= 1 else '  OVER'}"
                )
            said = "every format" if len(formats) == len(FORMATS) else "in all"
            print(f"    {said} {how} {total:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="a quick run for make bench")
    parser.add_argument("--scope", choices=["both", "province", "country"], default="both")
    parser.add_argument("--pcs", type=int, default=49, help="PCs per commune (and a poller)")
    parser.add_argument("--pc-every-hours", type=float, default=96.0)
    parser.add_argument("--poller-every-hours", type=float, default=6.0)
    parser.add_argument("--outages-per-day", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, help="rounds (default 3; 1 with --short)")
    parser.add_argument("--keep", type=Path, help="keep the stores here (reused when there)")
    parser.add_argument(
        "--code", type=Path, action="append", default=[],
        help="a checkout whose report code to time (repeat to compare; default this one)",
    )  # fmt: skip
    parser.add_argument(
        "--per-province", action="store_true",
        help="the country also as one report process per province",
    )  # fmt: skip
    parser.add_argument("--formats", default=",".join(FORMATS), help="e.g. md,docx")
    parser.add_argument("--build-only", action="store_true", help="build the stores, no timing")
    parser.add_argument("--baseline-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.short else 3)
    if args.baseline_child:
        baseline_child(args.baseline_child[0], args.baseline_child[1:])
        return
    from collector.state import register

    country = ["dong-nai", "lam-dong"] if args.short else sorted(register.provinces())
    scopes = [("province", ["dong-nai"], PROVINCE_BOUND_S), ("country", country, COUNTRY_BOUND_S)]
    communes = 12 if args.short else None

    def progress(line: str) -> None:
        if sys.stdout.isatty():
            print(f"  {line}", end="\r", flush=True)

    with tempfile.TemporaryDirectory(prefix="commune-report-") as tmp:
        root = args.keep or Path(tmp)
        for scope, provinces, bound in scopes:
            if args.scope not in ("both", scope):
                continue
            folder = root / f"{scope}{'-short' if args.short else ''}"
            store = folder / "state.sqlite"
            if not store.exists():
                write_places(folder, provinces, communes, args.pcs)
                built = build_store(
                    folder / "building.sqlite", folder, provinces,
                    pc_every_h=args.pc_every_hours, poller_every_h=args.poller_every_hours,
                    outages_per_day=args.outages_per_day, progress=progress,
                )  # fmt: skip
                (folder / "building.sqlite").rename(store)
                print(
                    f"{scope}: {len(provinces)} province(s), {built.agents:,} agents, "
                    f"{built.subjects:,} subjects, {built.outages:,} outages, "
                    f"{built.alerts:,} alerts; built in {built.seconds:.0f} s" + " " * 20
                )
            config = write_config(folder, store, provinces)
            if args.build_only:
                continue
            print(f"{scope}: {len(provinces)} province(s), {store.stat().st_size / 2**20:.0f} MiB "
                  f"store, October 2025, median of {args.repeat}")  # fmt: skip
            time_scope(
                scope, config, store, provinces, args.code or [REPO], bound=bound,
                repeat=args.repeat, per_province=args.per_province,
                formats=args.formats.split(","),
            )  # fmt: skip


if __name__ == "__main__":
    main()
