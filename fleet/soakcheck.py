"""The chaos soak's checker: was every envelope any agent created stored exactly once?

After a soak (bench/soak.py) it compares, per agent:

- what the agent created (its creation ledger, agent/ledger.py) with what the store
  applied (its applied record, collector/state/applied.py), what the outbox counted
  as dropped by its bounds (age, size, a full disk) and what the collector refused
  whole by a stated rule (an agent's clock too far off): ``lost = created - applied -
  dropped - refused``, 0 or the missing seqs are listed. Envelopes still in an outbox
  at the end are ``waiting``: the run did not drain, nothing is proven about them;
- each applied envelope's points in VictoriaMetrics (``/api/v1/export``): present at its
  first and last sample's time, and no series holding a timestamp twice (``duplicated``);
- the outages the harness caused on probed targets (``truth.jsonl``) with the store's
  availability history: each within one probe interval at each end, and none there
  that the harness did not cause (on the agents it watched). A busy machine runs a
  probe a fraction of its interval late, and the first sample after a change then comes
  more than one interval after it: such an end still matches when the change lies
  between the last sample before it (the store's ``up_seen`` for a start,
  ``down_seen`` for an end) and the stored end (the first sample after it), and those
  two are at most 1.5 intervals apart (a probe late by less than half its interval,
  not one missed). Such outages are counted apart; the errors reported are the true
  ones;
- the recovery time after each kind of fault the nemesis caused;
- for each agent whose version the soak switched (an update and its rollback, the
  truth's ``version_switch``): its outbox the same file after as before (device and
  inode), and its seqs, created or applied, one unbroken run. An outbox made anew would
  number from its creation time, a jump; a lost file, envelopes never created.

The run directory holds ``run.json`` (written by the harness)::

    {"ledger": "ledger", "store": "collector/state.sqlite",
     "victoria_url": "http://127.0.0.1:8428", "probe_interval": 10,
     "outboxes": {"<province>/<commune>/<agent>": "agents/pc-01/outbox.sqlite", ...},
     "watched_agents": ["<province>/<commune>/<agent>", ...]}

(paths relative to the run directory; ``watched_agents``: whose availability history
must hold the truth's outages and nothing else, by default those the truth names) and
``truth.jsonl``. ``python -m fleet.soakcheck RUN_DIR`` prints one table and one verdict
line, and exits 1 unless the verdict is that nothing was lost.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from agent.ledger import SUFFIX, Created, read_ledger
from collector.state.applied import applied_counts, refusals

#: The identity labels the sink gives every point (collector/outputs/lineproto.py).
_IDENTITY = ("province", "commune", "agent")
#: Missing seqs listed per agent at most in the table.
LISTED_SEQS = 10
#: Reasons the collector refuses a whole envelope by a stated rule, not by a fault: the
#: agent's clock beyond ``[collector] max_clock_ahead`` or ``max_sample_age``. Any other
#: (``apply_failed``: the store could not apply it) is a loss.
STATED_REFUSALS = frozenset({"clock_ahead", "clock_behind"})


@dataclass(frozen=True)
class SoakRun:
    """Where a soak left what the checker reads."""

    ledger: Path
    """The creation ledgers' directory (``COMMUNE_MONITOR_LEDGER``)."""
    outboxes: dict[str, Path]
    """Agent key -> its outbox file (the drop counters, what still waits)."""
    store: Path
    """The collector's state store, run with ``[store] ledger = true``."""
    victoria_url: str
    truth: Path
    probe_interval: float
    watched_agents: frozenset[str] | None = None
    """Agents whose availability history must match the truth; None: those it names."""

    @classmethod
    def from_dir(cls, run_dir: Path) -> SoakRun:
        described = json.loads((run_dir / "run.json").read_text())
        watched = described.get("watched_agents")
        return cls(
            ledger=run_dir / described.get("ledger", "ledger"),
            outboxes={key: run_dir / path for key, path in described["outboxes"].items()},
            store=run_dir / described["store"],
            victoria_url=str(described["victoria_url"]),
            truth=run_dir / described.get("truth", "truth.jsonl"),
            probe_interval=float(described["probe_interval"]),
            watched_agents=frozenset(watched) if watched is not None else None,
        )


@dataclass(frozen=True)
class Outage:
    agent_key: str
    check: str
    target: str
    start: float
    end: float | None
    up_seen: float | None = None
    """Stored outages: the last "up" sample before the start (None: none seen)."""
    down_seen: float | None = None
    """Stored outages: the last "down" sample before the end."""


@dataclass(frozen=True)
class Fault:
    fault: str
    at: float
    recovered: float | None


@dataclass(frozen=True)
class Switch:
    """An agent's versions switched by the harness (``version_switch`` in the truth)."""

    agent_key: str
    outbox_before: tuple[int, ...]
    """The outbox file's (device, inode) before the switch; () if there was none."""
    outbox_after: tuple[int, ...]
    decisions: tuple[str, ...]
    """The launcher's decisions, in order (committed, rolled_back)."""


@dataclass
class AgentTally:
    created: int = 0
    applied: int = 0
    """Created envelopes the store applied (once or more)."""
    redelivered: int = 0
    """Of those, applied more than once (harmless to the state; one point each)."""
    dropped: int = 0
    """The outbox's drop counters (age, size, error)."""
    refused: int = 0
    """Created, never applied, refused whole by the collector by a stated rule (its clock)."""
    waiting: int = 0
    missing: list[int] = field(default_factory=list)
    """Created seqs neither applied, nor waiting, nor refused by a stated rule."""
    unledgered: int = 0
    """Applied seqs the ledger lacks (a kill -9 between the outbox's commit and its line)."""

    @property
    def lost(self) -> int:
        # A drop counted may be of an envelope the broker had already taken (its PUBACK
        # not yet seen), or of one that never got a seq (a full disk): more drops than
        # missing envelopes are not a loss.
        return max(0, len(self.missing) - self.dropped)


@dataclass
class Verdict:
    agents: dict[str, AgentTally]
    duplicated_points: int
    """Timestamps held more than once in a series of a ledgered agent."""
    points_missing: int
    """Applied envelopes with no point at their first or last sample's time."""
    spool_dropped: int
    """Envelopes the store's spool dropped over its bound (their points may be missing)."""
    outage_start_errors: list[float]
    outage_end_errors: list[float]
    outages_missed: list[Outage]
    """Caused by the harness, not in the store (within a probe interval)."""
    outages_unexpected: list[Outage]
    """In the store, on a watched agent, not caused by the harness."""
    outages_by_late_probe: int
    """Of the matched, those with an end only a late probe's window places."""
    recovery: dict[str, list[float]]
    probe_interval: float
    switches: list[Switch] = field(default_factory=list)
    switches_broken: list[str] = field(default_factory=list)
    """Of the switched agents, those whose outbox was another file after, or whose seqs
    are not one run; each with why."""

    @property
    def created(self) -> int:
        return sum(t.created for t in self.agents.values())

    @property
    def lost(self) -> int:
        return sum(t.lost for t in self.agents.values())

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{self.lost} envelopes lost")
        if self.duplicated_points:
            found.append(f"{self.duplicated_points} points duplicated in the time series")
        if self.points_missing > self.spool_dropped:
            found.append(f"{self.points_missing} applied envelopes missing from the time series")
        if waiting := sum(t.waiting for t in self.agents.values()):
            found.append(f"{waiting} envelopes still in outboxes (the run did not drain)")
        if self.outages_missed:
            found.append(f"{len(self.outages_missed)} caused outages missing from the store")
        if self.outages_unexpected:
            found.append(f"{len(self.outages_unexpected)} outages in the store not caused")
        if self.switches_broken:
            found.append(
                f"{len(self.switches_broken)} agents' outbox not kept across a version switch"
            )
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def verdict_line(self) -> str:
        if self.ok:
            return f"VERDICT: nothing lost: {self.created} envelopes created, each stored once"
        return "VERDICT: FAILED: " + "; ".join(self.problems())

    def table(self) -> str:
        tallies = self.agents.values()
        rows: list[tuple[str, str]] = [
            ("agents", str(len(self.agents))),
            ("envelopes created", str(self.created)),
            ("committed (applied by the store)", str(sum(t.applied for t in tallies))),
            ("applied again (redelivered)", str(sum(t.redelivered for t in tallies))),
            ("dropped by the outbox's bounds", str(sum(t.dropped for t in tallies))),
            ("refused by the collector (clock)", str(sum(t.refused for t in tallies))),
            ("still waiting in outboxes", str(sum(t.waiting for t in tallies))),
            ("applied, not in a ledger", str(sum(t.unledgered for t in tallies))),
            ("lost", str(self.lost)),
            ("duplicated in the time series", str(self.duplicated_points)),
            ("missing from the time series", str(self.points_missing)),
            ("dropped by the sink's spool bound", str(self.spool_dropped)),
            ("outages caused / missed / not caused", self._outage_counts()),
            ("outages with an end seen by a late probe", str(self.outages_by_late_probe)),
            ("outage start error s (p50/p99/max)", _spread(self.outage_start_errors)),
            ("outage end error s (p50/p99/max)", _spread(self.outage_end_errors)),
        ]
        if self.switches:
            agents = {s.agent_key for s in self.switches}
            kept = len(agents) - len({b.split(":", 1)[0] for b in self.switches_broken})
            decided = sorted({"/".join(s.decisions) for s in self.switches})
            rows.append(("version switches: agents / outbox kept", f"{len(agents)} / {kept}"))
            rows.append(("version switches: launcher decided", ", ".join(decided)))
        for kind, times in sorted(self.recovery.items()):
            rows.append((f"recovery after {kind} s (p50/max, n)", _recovery(times)))
        for key, tally in sorted(self.agents.items()):
            if tally.lost:
                seqs = ", ".join(map(str, tally.missing[:LISTED_SEQS]))
                more = len(tally.missing) - LISTED_SEQS
                rows.append((f"lost: {key}", seqs + (f" (+{more})" if more > 0 else "")))
        for outage in self.outages_missed[:LISTED_SEQS]:
            rows.append(("missed outage", _outage(outage)))
        for outage in self.outages_unexpected[:LISTED_SEQS]:
            rows.append(("outage not caused", _outage(outage)))
        for broken in self.switches_broken[:LISTED_SEQS]:
            rows.append(("outbox not kept", broken))
        width = max(len(name) for name, _ in rows)
        lines = [f"{'figure'.ljust(width)} | value", f"{'-' * width}-+-{'-' * 20}"]
        lines += [f"{name.ljust(width)} | {value}" for name, value in rows]
        return "\n".join([*lines, self.verdict_line()])

    def _outage_counts(self) -> str:
        caused = len(self.outage_start_errors) + len(self.outages_missed)
        return f"{caused} / {len(self.outages_missed)} / {len(self.outages_unexpected)}"


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return "/".join(f"{_percentile(values, q):.1f}" for q in (0.5, 0.99, 1.0))


def _recovery(times: Sequence[float]) -> str:
    if not times:
        return "- (never recovered)"
    return f"{_percentile(times, 0.5):.1f}/{max(times):.1f}, {len(times)}"


def _outage(outage: Outage) -> str:
    end = "open" if outage.end is None else f"{outage.end:.1f}"
    return f"{outage.agent_key} {outage.check} {outage.target} {outage.start:.1f}-{end}"


# reading -----------------------------------------------------------------------------


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def ledgers(directory: Path) -> dict[str, dict[int, Created]]:
    """Agent key -> seq -> its ledger line, from every ledger file of the directory."""
    created: dict[str, dict[int, Created]] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        key = "/".join(path.name[: -len(SUFFIX)].split("__"))
        created[key] = {line.seq: line for line in read_ledger(path)}
    return created


def outbox_state(path: Path) -> tuple[int, set[int]]:
    """An outbox's drops (age, size, error) and the seqs it still holds."""
    if not path.exists():
        return 0, set()
    db = _read_only(path)
    try:
        counters = dict(db.execute("SELECT key, value FROM meta").fetchall())
        payloads = [bytes(row[0]) for row in db.execute("SELECT payload FROM outbox")]
    finally:
        db.close()
    dropped = sum(int(counters.get(k, 0)) for k in ("dropped_age", "dropped_size", "dropped_error"))
    return dropped, {int(json.loads(p)["seq"]) for p in payloads}


@dataclass(frozen=True)
class StoreState:
    applied: dict[str, dict[int, int]]
    refused: dict[str, dict[int, str]]
    spool_dropped: int
    outages: list[Outage]


def store_state(path: Path) -> StoreState:
    """The applied record (and refusals), the spool's drops and every outage of the
    availability history."""
    db = _read_only(path)
    try:
        applied = applied_counts(db)
        refused = refusals(db)
        (spool_dropped,) = db.execute(
            "SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'spool_dropped'"
        ).fetchone()
        rows = db.execute(
            "SELECT s.agent_key, s.kind, s.name, s.target, o.start, o.end, o.up_seen, "
            "o.down_seen FROM outages o JOIN subjects s ON s.id = o.subject_id ORDER BY o.start"
        ).fetchall()
    finally:
        db.close()
    outages = [
        Outage(key, f"{kind}:{name}", target, start, end, up_seen, down_seen)
        for key, kind, name, target, start, end, up_seen, down_seen in rows
    ]
    return StoreState(applied, refused, int(spool_dropped), outages)


def exported(url: str, keys: Iterable[str]) -> Iterator[tuple[str, list[int]]]:
    """(agent key, timestamps in ms) of every series of these agents in VictoriaMetrics."""
    wanted = set(keys)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"victoria_url: expected http(s)://host:port, not {url!r}")
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=30).read()  # noqa: S310 - http(s) only
    query = urllib.parse.urlencode({"match[]": '{agent=~".+"}'})
    export = f"{url}/api/v1/export?{query}"
    with urllib.request.urlopen(export, timeout=300) as response:  # noqa: S310 - http(s) only
        for raw in response:
            if not raw.strip():
                continue
            series = json.loads(raw)
            labels = series["metric"]
            key = "/".join(str(labels.get(name, "")) for name in _IDENTITY)
            if key in wanted:
                yield key, [int(ts) for ts in series["timestamps"]]


def truth(path: Path) -> tuple[list[Outage], list[Fault]]:
    outages: list[Outage] = []
    faults: list[Fault] = []
    if not path.exists():
        return outages, faults
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["kind"] == "target_down":
            outages.append(
                Outage(
                    entry["agent_key"],
                    entry["check"],
                    entry["target"],
                    float(entry["start"]),
                    None if entry.get("end") is None else float(entry["end"]),
                )
            )
        elif entry["kind"] == "fault":
            recovered = entry.get("recovered")
            faults.append(
                Fault(
                    entry["fault"],
                    float(entry["at"]),
                    None if recovered is None else float(recovered),
                )
            )
    return outages, faults


def switches(path: Path) -> list[Switch]:
    """The truth's version switches."""
    found: list[Switch] = []
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["kind"] == "version_switch":
            found.append(
                Switch(
                    str(entry["agent_key"]),
                    tuple(int(n) for n in entry.get("before") or ()),
                    tuple(int(n) for n in entry.get("after") or ()),
                    tuple(str(d) for d in entry.get("decisions") or ()),
                )
            )
    return found


# checking ------------------------------------------------------------------------------


def switch_kept(switch: Switch, created: dict[int, Created], applied: dict[int, int]) -> str:
    """Why the agent's outbox was not kept across ``switch`` ("" when it was): another
    file after than before, or its seqs (created or applied) not one unbroken run."""
    if not switch.outbox_before or switch.outbox_before != switch.outbox_after:
        return (
            f"{switch.agent_key}: the outbox file {switch.outbox_before or 'absent'} before, "
            f"{switch.outbox_after or 'absent'} after"
        )
    seqs = sorted(set(created) | {seq for seq, times in applied.items() if times})
    gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
    if gaps:
        first, then = gaps[0]
        return f"{switch.agent_key}: seqs jump from {first} to {then} ({len(gaps)} breaks)"
    return ""


def tally(
    created: dict[int, Created],
    applied: dict[int, int],
    dropped: int,
    waiting: set[int],
    refused: dict[int, str],
) -> AgentTally:
    result = AgentTally(created=len(created), dropped=dropped)
    for seq in sorted(created):
        times = applied.get(seq, 0)
        if times:
            result.applied += 1
            result.redelivered += times > 1
        elif seq in waiting:
            result.waiting += 1
        elif refused.get(seq) in STATED_REFUSALS:
            result.refused += 1
        else:
            result.missing.append(seq)
    result.unledgered = sum(1 for seq in applied if seq not in created)
    return result


def _same_subject(caused: Outage, stored: Outage) -> bool:
    kind, _, name = stored.check.partition(":")
    return (
        caused.agent_key == stored.agent_key
        and caused.target == stored.target
        and caused.check in (kind, name, stored.check)
    )


@dataclass
class OutageMatch:
    start_errors: list[float] = field(default_factory=list)
    end_errors: list[float] = field(default_factory=list)
    missed: list[Outage] = field(default_factory=list)
    """Caused but not in the store."""
    unexpected: list[Outage] = field(default_factory=list)
    """Stored but not caused."""
    by_late_probe: int = 0


#: Samples either side of a change this many intervals apart at most: one probe run late
#: (by less than half its interval), never one missed (two intervals, give or take the
#: milliseconds a wake-up takes).
LATE_PROBE_SPAN = 1.5


def _placed(caused: float, stored: float, seen_before: float | None, interval: float) -> str:
    """How a stored end places a caused one: "near" (within one interval), "late probe"
    (between the samples either side of the change, a late probe's span apart), or ""
    (not this change)."""
    if abs(stored - caused) <= interval:
        return "near"
    if seen_before is None or not seen_before <= caused <= stored:
        return ""
    return "late probe" if stored - seen_before <= LATE_PROBE_SPAN * interval else ""


def _placing(cause: Outage, candidate: Outage, interval: float) -> list[str]:
    """How each end of ``candidate`` places ``cause``'s; [] if it is not the same outage."""
    if not _same_subject(cause, candidate) or (candidate.end is None) != (cause.end is None):
        return []
    ends = [_placed(cause.start, candidate.start, candidate.up_seen, interval)]
    if candidate.end is not None and cause.end is not None:
        ends.append(_placed(cause.end, candidate.end, candidate.down_seen, interval))
    return ends if all(ends) else []


def match_outages(
    caused: Sequence[Outage], stored: Sequence[Outage], interval: float, watched: frozenset[str]
) -> OutageMatch:
    """Each caused outage with the first stored one placing both its ends (an open one
    only an open one); the stored outages left over were not caused."""
    result = OutageMatch(unexpected=[s for s in stored if s.agent_key in watched])
    for cause in sorted(caused, key=lambda o: o.start):
        found, ends = None, []
        for candidate in result.unexpected:
            ends = _placing(cause, candidate, interval)
            if ends:
                found = candidate
                break
        if found is None:
            result.missed.append(cause)
            continue
        result.unexpected.remove(found)
        result.by_late_probe += "late probe" in ends
        result.start_errors.append(abs(found.start - cause.start))
        if found.end is not None and cause.end is not None:
            result.end_errors.append(abs(found.end - cause.end))
    return result


def points_check(
    url: str, created: dict[str, dict[int, Created]], applied: dict[str, dict[int, int]]
) -> tuple[int, int]:
    """(duplicated timestamps, applied envelopes with no point at their first or last
    sample's time) in VictoriaMetrics. Only the times looked for are kept: an hour of a
    few thousand agents is tens of millions of points."""
    wanted: dict[str, list[tuple[int, int]]] = {}
    for key, lines in created.items():
        done = applied.get(key, {})
        wanted[key] = [
            (round(line.first_ts * 1000), round(line.last_ts * 1000))
            for seq, line in lines.items()
            if done.get(seq) and line.samples
        ]
    looked_for = {key: {t for pair in pairs for t in pair} for key, pairs in wanted.items()}
    found: dict[str, set[int]] = defaultdict(set)
    duplicated = 0
    for key, timestamps in exported(url, created):
        duplicated += len(timestamps) - len(set(timestamps))
        found[key].update(looked_for[key].intersection(timestamps))
    missing = sum(
        1
        for key, pairs in wanted.items()
        for first, last in pairs
        if first not in found[key] or last not in found[key]
    )
    return duplicated, missing


def check(run: SoakRun) -> Verdict:
    created = ledgers(run.ledger)
    store = store_state(run.store)
    agents: dict[str, AgentTally] = {}
    for key in sorted(created.keys() | run.outboxes.keys()):
        outbox = run.outboxes.get(key)
        dropped, waiting = outbox_state(outbox) if outbox is not None else (0, set())
        agents[key] = tally(
            created.get(key, {}),
            store.applied.get(key, {}),
            dropped,
            waiting,
            store.refused.get(key, {}),
        )
    duplicated, points_missing = points_check(run.victoria_url, created, store.applied)
    caused, faults = truth(run.truth)
    watched = run.watched_agents
    if watched is None:
        watched = frozenset(o.agent_key for o in caused)
    outages = match_outages(caused, store.outages, run.probe_interval, watched)
    switched = switches(run.truth)
    broken = [
        why
        for why in (
            switch_kept(s, created.get(s.agent_key, {}), store.applied.get(s.agent_key, {}))
            for s in switched
        )
        if why
    ]
    recovery: dict[str, list[float]] = defaultdict(list)
    for fault in faults:
        recovery.setdefault(fault.fault, [])
        if fault.recovered is not None:
            recovery[fault.fault].append(fault.recovered - fault.at)
    return Verdict(
        agents=agents,
        duplicated_points=duplicated,
        points_missing=points_missing,
        spool_dropped=store.spool_dropped,
        outage_start_errors=outages.start_errors,
        outage_end_errors=outages.end_errors,
        outages_missed=outages.missed,
        outages_unexpected=outages.unexpected,
        outages_by_late_probe=outages.by_late_probe,
        recovery=dict(recovery),
        probe_interval=run.probe_interval,
        switches=switched,
        switches_broken=broken,
    )


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(run_dir: Path) -> None:
    """Check a chaos soak's run: every envelope created stored once, or dropped by a bound.

    Example: python -m fleet.soakcheck /var/tmp/soak-1234
    """
    try:
        run = SoakRun.from_dir(run_dir)
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{run_dir}: not a soak's run directory ({exc})") from None
    verdict = check(run)
    click.echo(verdict.table())
    if not verdict.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
