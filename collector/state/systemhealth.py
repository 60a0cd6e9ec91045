"""How the province's shared systems answer the communes: now, over a window, a month.

Each commune's prober (``[[checks.system]]``, one agent per commune) leaves for every
system it probes an up/down history (``subjects`` of kind ``system``) and a
response-time histogram (``system_times``). This module reads them with the commune's
own dedicated line beside them, so that every "cannot reach" is told apart:

- ``line_down``: the commune's line is down (its own problem, alerted as a line);
- ``unreachable`` / ``bad_response``: the line is up and the system does not answer,
  or answers wrongly (a login page, an error, an expired certificate);
- ``silent``: the prober is not running (a PC switched off says nothing of the system);
- ``slow``: it answers, slower than the catalogue's ``slow_ms``.

A system's availability over a window is time-weighted across the communes that
probe it: the sum over communes of the time it answered, over the sum of the time
it was watched, less the time each commune's line was down and the system's
maintenance windows (both shown apart, never counted twice). Each commune's own
website is one more "system" (id ``website``), each commune probing its own.

Everything here is a view of the store, computed on request; a scope (the communes a
token holds) narrows every figure to those communes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent.catalogue import SYSTEM
from collector.state import maintenance, systemtimes
from collector.state.availability import Outage, all_down, availability, merged, overlap
from collector.state.inventory import Inventory
from collector.state.store import (
    LatestSample,
    StateStore,
    Subject,
    silence_bound,
    silence_bound_hold,
)
from collector.state.systems import WEBSITE, Catalogue

ReachState = Literal[
    "ok", "slow", "unreachable", "bad_response", "line_down", "silent", "not_probed"
]
#: The states in which the commune cannot use the system now.
CANNOT_REACH: tuple[ReachState, ...] = ("unreachable", "bad_response", "line_down")

Verdict = Literal["ok", "down", "slow", "local", "no_data"]
"""A system now: ok; down (most communes with their line up cannot reach it: the
system's problem); slow (slow from most); local (some communes cannot reach it or find
it slow while most can: their own problem); no_data (nobody probes it)."""

#: "Most" communes: more than this share of those probing with their line up.
WIDELY_PERCENT = 50.0
#: A system is "down" only when at least this many communes (or all that use it, when
#: fewer) probe it with their line up: one PC left on at night is no quorum.
QUORUM = 3


@dataclass(frozen=True)
class Reach:
    """One commune's view of one system, from its prober's latest sample."""

    commune: str
    commune_name: str
    state: ReachState
    since: float | None
    """When the prober's answer last changed between up and down (its history)."""
    agent: str
    """The prober ("" when not probed)."""
    ts: float | None
    """The latest sample's time."""
    status: int | None
    total_ms: float | None
    """Total time (HTTP) or connect time (TCP) of the latest answer."""
    cert_days: float | None
    error: str
    """Why it is not ok, as the probe said it ("" when ok)."""
    target: str
    """What the prober asks: a URL, or host:port."""
    line_up: bool | None = None
    """The commune's line of the system's network now, by its running probes (None:
    none running)."""
    cert_min_days: int = 14
    """A certificate closer than this to its end is an alert (the catalogue's)."""


@dataclass(frozen=True)
class Incident:
    """A system's alert (unreachable, slow, certificate) overlapping a period."""

    alert_id: int
    rule: str
    severity: str
    started: float
    ended: float | None
    """None while it still fires."""
    value: str
    communes: str = ""
    """The commune the alert is about ("" for the system as a whole)."""


@dataclass(frozen=True)
class Figures:
    """A system over one window, across the communes that probe it (in scope)."""

    start: float
    end: float
    availability: float | None
    """Percent of the watched time it answered well: line outages and maintenance
    excluded; None when nobody watched."""
    availability_with_maintenance: float | None
    """The same with the maintenance windows counted like any other time."""
    observed_s: float
    """Commune-seconds watched, less the excluded time."""
    down_s: float
    """Commune-seconds it could not be used (line up, no maintenance)."""
    line_excluded_s: float
    """Commune-seconds excluded because the commune's own line was down."""
    maintenance_s: float
    """Commune-seconds excluded by the system's (or the commune's) maintenance windows."""
    p50_ms: float | None
    p95_ms: float | None
    answers: int
    """Healthy answers the response times are of."""
    communes: int
    """Communes that probed it in the window."""
    incidents: list[Incident] = field(default_factory=list)
    unwatched_s: float = 0.0
    """Commune-seconds nobody watched (the probing PC off or silent): in no figure."""


@dataclass(frozen=True)
class SystemHealth:
    province: str
    id: str
    """The catalogue's id ("website": every commune's own site together)."""
    name: str
    kind: str
    target: str
    """The URL or host:port ("" for the websites, each commune having its own)."""
    network: str
    owner: str
    route: str
    slow_ms: float
    cert_min_days: int
    verdict: Verdict
    status: Literal["ok", "warning", "critical", "no_data"]
    communes: int
    """Communes that use it (in scope)."""
    probing: int
    """Communes whose prober is running and has answered for it."""
    reaching: int
    """Of those, the communes it answers well (ok or slow)."""
    unreachable: list[str]
    """Communes that cannot reach it with their line up (unreachable, bad_response)."""
    line_down: list[str]
    """Communes that cannot reach it because their own line is down."""
    slow: list[str]
    silent: list[str]
    """Communes whose prober is not running: nothing known of the system there."""
    cert_days: float | None
    """The fewest days left on its certificate any commune saw (HTTPS)."""
    median_ms: float | None
    """The median of the communes' latest answers."""
    reach: list[Reach]
    """Every commune that uses it, in the inventory's order."""
    last_24h: Figures | None = None
    last_30d: Figures | None = None


@dataclass(frozen=True)
class CommuneSystems:
    """One commune's shared systems: which it can and cannot reach now."""

    province: str
    commune: str
    commune_name: str
    line_up: bool | None
    systems: list[tuple[SystemHealth, Reach]]
    """Each system the commune uses (its website last) and the commune's reach of it;
    the SystemHealth is the system's province-wide view (within the scope)."""


@dataclass(frozen=True)
class SystemPeriod:
    """A system over a report's period (the monthly report's section)."""

    id: str
    name: str
    kind: str
    network: str
    owner: str
    communes: int
    """Communes that use it (in scope)."""
    figures: Figures


Scope = Collection[str] | None
"""The communes a token holds (None: every commune)."""

HOUR = 3600.0
DAY = 24 * HOUR
#: The windows of the health views.
WINDOWS = {"24h": DAY, "30d": 30 * DAY}
#: What the communes' own sites are called together.
WEBSITES_NAME = "Trang thông tin điện tử của các xã"
#: The alerts about the shared systems have subjects under this prefix
#: (collector/alerts/engine.py): "system:<province>/<id>" for a system as a whole,
#: "system:<province>/<commune>/<id>" for one commune's reach of it.
SUBJECT_PREFIX = "system:"


def system_subject(province: str, system_id: str, commune: str = "") -> str:
    place = f"{province}/{commune}/" if commune else f"{province}/"
    return f"{SUBJECT_PREFIX}{place}{system_id}"


@dataclass(frozen=True)
class Entry:
    """A system as the views need it: the catalogue's entry, or every website together."""

    id: str
    name: str
    kind: str
    network: str
    owner: str
    route: str
    communes: list[str]
    """The communes that use it, in the inventory's order."""
    targets: dict[str, str]
    """What each commune's prober asks (a website's own URL)."""
    slow_ms: dict[str, float]
    cert_min_days: dict[str, int]
    networks: dict[str, str] = field(default_factory=dict)
    """A commune's network when it is its own (a website's); else ``network``."""

    def network_of(self, commune: str) -> str:
        """The network whose line a commune reaches the system by."""
        return self.networks.get(commune) or self.network or "tslcd"

    @property
    def target(self) -> str:
        values = set(self.targets.values())
        return values.pop() if len(values) == 1 else ""


def entries(catalogue: Catalogue, inventory: Inventory | None) -> list[Entry]:
    """Every system of the catalogue, then the websites as one (when it lists any)."""
    order = {c.slug: n for n, c in enumerate(inventory.communes)} if inventory else {}
    found = []
    for system in catalogue.systems:
        used = sorted(catalogue.used_by(system, inventory), key=lambda c: order.get(c, 1 << 30))
        found.append(
            Entry(
                system.id,
                system.name,
                system.kind,
                system.network,
                system.owner,
                system.route,
                used,
                dict.fromkeys(used, system.target),
                dict.fromkeys(used, float(system.slow_ms)),
                dict.fromkeys(used, system.cert_min_days),
            )
        )
    if catalogue.websites:
        sites = sorted(catalogue.websites, key=lambda w: order.get(w.commune, 1 << 30))
        networks = {w.network for w in sites}
        owners = {w.owner for w in sites}
        found.append(
            Entry(
                WEBSITE,
                WEBSITES_NAME,
                "website",
                networks.pop() if len(networks) == 1 else "",
                owners.pop() if len(owners) == 1 else "",
                "",
                [w.commune for w in sites],
                {w.commune: w.url for w in sites},
                {w.commune: float(w.slow_ms) for w in sites},
                {w.commune: w.cert_min_days for w in sites},
                {w.commune: w.network for w in sites},
            )
        )
    return found


@dataclass
class _Facts:
    """What the store knows of one province's shared systems, read once per request."""

    online: set[str]
    intervals: dict[str, float]
    """Each agent's reporting interval (its birth's; 0: unsaid)."""
    latest: dict[tuple[str, str], list[LatestSample]]
    """(commune, system id) -> its probers' latest samples."""
    probes: dict[tuple[str, str], list[Subject]]
    """(commune, system id) -> the up/down histories of its probers."""
    lines: dict[tuple[str, str], list[Subject]]
    """(commune, network) -> the link probes of that network (the commune's line)."""


@dataclass
class _Known:
    """What the figures of a province's systems over one window share: the outages read
    once, each commune's line (its down spans) by (commune, network), the alerts."""

    outages: dict[int, list[Outage]]
    lines: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    alerts: dict[str, list[tuple[Any, ...]]] | None = None
    """The shared systems' alerts over the window, by system id (read when first asked)."""


def _commune_of(agent_key: str) -> str:
    return agent_key.split("/", 2)[1]


class SystemsModel:
    """The shared systems' views, from the store, the catalogues and the inventories."""

    def __init__(
        self,
        store: StateStore,
        inventories: Iterable[Inventory],
        catalogues: Callable[[], dict[str, Catalogue]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.inventories = {i.province: i for i in inventories}
        self.catalogues = catalogues
        """Each province's catalogue as it is now (it is reloaded when its file changes)."""
        self.clock = clock

    # reading --------------------------------------------------------------------

    def entries(self, province: str) -> list[Entry]:
        catalogue = self.catalogues().get(province)
        return entries(catalogue, self.inventories.get(province)) if catalogue else []

    def _facts(self, province: str, commune: str = "") -> _Facts:
        place = f"{province}/{commune}/" if commune else f"{province}/"
        # The place's agents only: a national store holds the country's 166,000.
        with self.store.reading() as db:
            agents = db.execute(
                "SELECT agent_key, state, interval FROM agents "
                "WHERE agent_key >= ? AND agent_key < ?",
                (place, place + "\U0010ffff"),
            ).fetchall()
        online = {str(key) for key, state, _ in agents if state == "online"}
        intervals = {str(key): float(interval) for key, _, interval in agents}
        latest: dict[tuple[str, str], list[LatestSample]] = defaultdict(list)
        for sample in self.store.latest_of("system", place):
            if not sample.item:
                latest[(_commune_of(sample.agent_key), sample.name)].append(sample)
        probes: dict[tuple[str, str], list[Subject]] = defaultdict(list)
        for subject in self.store.subjects("system", place):
            probes[(_commune_of(subject.agent_key), subject.name)].append(subject)
        lines: dict[tuple[str, str], list[Subject]] = defaultdict(list)
        for subject in self.store.subjects("link", place):
            lines[(_commune_of(subject.agent_key), subject.network)].append(subject)
        return _Facts(online, intervals, latest, probes, lines)

    def _names(self, province: str) -> dict[str, str]:
        inventory = self.inventories.get(province)
        return {c.slug: c.name for c in inventory.communes} if inventory else {}

    # now ------------------------------------------------------------------------

    @staticmethod
    def _line_up(facts: _Facts, commune: str, network: str) -> bool | None:
        """The commune's line of that network now, by its running probes (None: none)."""
        said = [
            s.state == "up"
            for s in facts.lines.get((commune, network), [])
            if s.agent_key in facts.online
        ]
        return any(said) if said else None

    def _reach(
        self, facts: _Facts, entry: Entry, commune: str, name: str, target: str, now: float
    ) -> Reach:
        least = entry.cert_min_days.get(commune, 14)
        samples = facts.latest.get((commune, entry.id), [])
        if target:
            samples = [s for s in samples if s.target == target] or samples
        if not samples:
            line_up = self._line_up(facts, commune, entry.network_of(commune))
            return Reach(
                commune, name, "not_probed", None, "", None, None, None, None, "", target, line_up,
                least,
            )  # fmt: skip
        running = [s for s in samples if s.agent_key in facts.online]
        sample = max(running or samples, key=lambda s: s.ts)
        agent = sample.agent_key.rsplit("/", 1)[1]
        status = SYSTEM.number(sample.fields, "status")
        total = SYSTEM.number(sample.fields, "total_ms")
        if total is None:
            total = SYSTEM.number(sample.fields, "connect_ms")
        cert = SYSTEM.number(sample.fields, "cert_days")
        since = next(
            (
                p.since
                for p in facts.probes.get((commune, entry.id), [])
                if p.agent_key == sample.agent_key and p.target == sample.target
            ),
            None,
        )
        line_up = self._line_up(facts, commune, entry.network_of(commune))
        state: ReachState
        bound = silence_bound(facts.intervals.get(sample.agent_key, 0.0))
        if not running or now - sample.ts > bound:
            state = "silent"  # its PC is off, or it probes no more: its last word is old
        elif sample.outcome == "ok":
            slow = total is not None and total > entry.slow_ms.get(commune, 0.0)
            state = "slow" if slow else "ok"
        elif sample.outcome in ("down", "timeout", "refused", "bad_response"):
            if line_up is False:
                state = "line_down"
            elif sample.outcome == "bad_response":
                state = "bad_response"
            else:
                state = "unreachable"
        else:  # the check could not run: it says nothing of the system
            state = "silent"
        return Reach(
            commune, name, state, since, agent, sample.ts,
            None if status is None else int(status), total, cert, sample.error,
            sample.target, line_up, least,
        )  # fmt: skip

    def _now(
        self,
        province: str,
        entry: Entry,
        facts: _Facts,
        scope: Scope,
        names: dict[str, str] | None = None,
    ) -> SystemHealth | None:
        """``names``: the communes' names (read once for every system of a request)."""
        names = self._names(province) if names is None else names
        communes = [c for c in entry.communes if scope is None or c in scope]
        if not communes:
            return None
        now = self.clock()
        every = [
            self._reach(facts, entry, c, names.get(c, c), entry.targets.get(c, ""), now)
            for c in entry.communes
        ]
        # The verdict is the system's, from every commune that uses it (one commune's
        # token told "the system is down" of its own local problem would look in the
        # wrong place); the counts and lists are the scope's.
        verdict = _verdict(every)
        held = set(communes)
        reach = [r for r in every if r.commune in held]
        by_state: dict[str, list[str]] = defaultdict(list)
        for r in reach:
            by_state[r.state].append(r.commune)
        probing = [r for r in reach if r.state not in ("silent", "not_probed")]
        reaching = [r for r in probing if r.state in ("ok", "slow")]
        unreachable = by_state["unreachable"] + by_state["bad_response"]
        certs = [
            (r.cert_days, entry.cert_min_days.get(r.commune, 14))
            for r in probing
            if r.cert_days is not None
        ]
        cert_days = min((days for days, _ in certs), default=None)
        expiring = any(days < least for days, least in certs)
        times = [r.total_ms for r in reaching if r.total_ms is not None]
        status: Literal["ok", "warning", "critical", "no_data"] = {
            "no_data": "no_data", "down": "critical", "slow": "warning", "local": "warning",
            "ok": "ok",
        }[verdict]  # type: ignore[assignment]  # fmt: skip
        if cert_days is not None and cert_days <= 0:
            status = "critical"
        elif expiring and status in ("ok", "no_data"):
            status = "warning"
        return SystemHealth(
            province=province, id=entry.id, name=entry.name, kind=entry.kind,
            target=entry.target, network=entry.network, owner=entry.owner,
            route=entry.route,
            slow_ms=min(entry.slow_ms[c] for c in communes),
            cert_min_days=max(entry.cert_min_days[c] for c in communes),
            verdict=verdict, status=status, communes=len(communes), probing=len(probing),
            reaching=len(reaching), unreachable=unreachable, line_down=by_state["line_down"],
            slow=by_state["slow"], silent=by_state["silent"], cert_days=cert_days,
            median_ms=round(statistics.median(times), 1) if times else None, reach=reach,
        )  # fmt: skip

    # over a window --------------------------------------------------------------

    def _figures(
        self,
        province: str,
        entry: Entry,
        facts: _Facts,
        communes: list[str],
        start: float,
        end: float,
        windows: list[maintenance.Window],
        scoped: bool = False,
        known: _Known | None = None,
    ) -> Figures:
        """``scoped``: for a caller holding some communes only; ``known``: what the
        figures of other systems over the same window read and worked out already."""
        now = self.clock()
        end = min(end, now)
        watched: list[tuple[str, list[Subject]]] = []
        ids: list[int] = []
        for commune in communes:
            probes = [
                p for p in facts.probes.get((commune, entry.id), [])
                if p.last_ts >= start and p.monitored_since < end
                and p.target == entry.targets.get(commune, p.target)
            ]  # fmt: skip
            if probes:
                watched.append((commune, probes))
                ids += [p.id for p in probes]
        lines = {
            commune: [
                s for s in facts.lines.get((commune, entry.network_of(commune)), [])
                if s.last_ts >= start
            ]
            for commune, _ in watched
        }  # fmt: skip
        if known is not None:
            outages = known.outages
        else:
            outages = self.store.outages_of(
                ids + [s.id for found in lines.values() for s in found], start, end
            )
        gaps = self.store.gaps_of(ids, start, end)
        observed = down = line_s = maintenance_s = unwatched_s = 0.0
        observed_with = down_with = 0.0
        for commune, probes in watched:
            # A probe silent (its PC off) votes neither way: its silence counts as "not
            # up" in the vote, and where every probe was silent nobody watched at all.
            silences = [_silences(p, gaps, facts, now) for p in probes]
            history, since = all_down(
                [
                    (_with_silences(outages.get(p.id, []), quiet), p.monitored_since)
                    for p, quiet in zip(probes, silences, strict=True)
                ]
            )
            silent = _overlap_all(silences)
            network = entry.network_of(commune)
            line_spans = None if known is None else known.lines.get((commune, network))
            if line_spans is None:
                line: list[Outage] = []
                if lines[commune]:
                    line, _ = all_down(
                        [(outages.get(s.id, []), s.monitored_since) for s in lines[commune]]
                    )
                line_spans = [(o.start, end if o.end is None else o.end) for o in line]
                if known is not None:  # the commune's line is the same for every system
                    known.lines[(commune, network)] = line_spans
            # The system's windows, the commune's, and those of its probing PCs.
            devices = [
                maintenance.Device(agent=p.agent_key.rsplit("/", 1)[1], check="system",
                                   name=entry.id)
                for p in probes
            ]  # fmt: skip
            planned = maintenance.spans(
                [w for w in windows if any(w.covers(province, commune, d) for d in devices)],
                start,
                end,
            )
            both = availability(
                history, start, end, since, now, merged(line_spans + planned), silent
            )
            no_line = availability(history, start, end, since, now, line_spans, silent)
            unwatched_s += both.unwatched_s
            observed += both.observed_s
            down += both.down_s
            planned_s = both.excluded_s - no_line.excluded_s
            maintenance_s += max(0.0, planned_s)
            line_s += max(0.0, both.excluded_s - max(0.0, planned_s))
            observed_with += no_line.observed_s
            down_with += no_line.down_s
        counts = systemtimes.merged_counts(
            self.store.system_times(ids, start, end, hourly=end - start <= 2 * DAY).values()
        )
        return Figures(
            start=start,
            end=end,
            availability=100.0 * (observed - down) / observed if observed > 0 else None,
            availability_with_maintenance=(
                100.0 * (observed_with - down_with) / observed_with if observed_with > 0 else None
            ),
            observed_s=observed,
            down_s=down,
            line_excluded_s=line_s,
            maintenance_s=maintenance_s,
            p50_ms=systemtimes.percentile(counts, 0.5),
            p95_ms=systemtimes.percentile(counts, 0.95),
            answers=sum(counts.values()),
            communes=len(watched),
            incidents=self._incidents(province, entry.id, communes, start, end, scoped, known),
            unwatched_s=unwatched_s,
        )

    def _incidents(
        self,
        province: str,
        system_id: str,
        communes: list[str],
        start: float,
        end: float,
        scoped: bool = False,
        known: _Known | None = None,
    ) -> list[Incident]:
        """The system's alerts overlapping [start, end): its own, and those of the
        communes given (a scope sees its communes' only). ``scoped``: the system's own
        alerts without their value, which is measured over every commune (another's
        certificate, the province's median, "40/90"). ``known``: every system's alerts
        over the window are read once, for all of them (no index finds one system's)."""
        lo = f"{SUBJECT_PREFIX}{province}/"
        query = """SELECT id, rule, severity, started_at, resolved_at, value, commune, name
                   FROM alerts WHERE subject >= ? AND subject < ?
                     AND started_at < ? AND (resolved_at IS NULL OR resolved_at > ?)"""
        if known is not None:
            if known.alerts is None:
                known.alerts = defaultdict(list)
                with self.store.reading() as db:
                    for row in db.execute(
                        query + " ORDER BY started_at, id", (lo, lo + "\U0010ffff", end, start)
                    ):
                        known.alerts[str(row[7])].append(row)
            rows = known.alerts.get(system_id, [])
        else:
            with self.store.reading() as db:
                rows = db.execute(
                    query + " AND name = ? ORDER BY started_at, id",
                    (lo, lo + "\U0010ffff", end, start, system_id),
                ).fetchall()
        allowed = set(communes)
        return [
            Incident(int(r[0]), r[1], r[2], r[3], r[4], "" if scoped and not r[6] else r[5], r[6])
            for r in rows
            if not r[6] or r[6] in allowed
        ]

    # the views --------------------------------------------------------------------

    def systems(
        self, province: str, scope: Scope = None, *, windows: bool = True
    ) -> list[SystemHealth]:
        """Every system of the province's catalogue in its order, then "website" (when
        the catalogue lists websites); ``windows``: with ``last_24h`` and ``last_30d``."""
        found = self.entries(province)
        if not found:
            return []
        facts = self._facts(province)
        names = self._names(province)
        now = self.clock()
        planned = maintenance.windows(self.store, province, now - WINDOWS["30d"], now)
        result = []
        for entry in found:
            health = self._now(province, entry, facts, scope, names)
            if health is None:
                continue
            if windows:
                used = [r.commune for r in health.reach]
                health = _with_windows(
                    health,
                    *(
                        self._figures(
                            province,
                            entry,
                            facts,
                            used,
                            now - span,
                            now,
                            planned,
                            scope is not None,
                        )
                        for span in WINDOWS.values()
                    ),
                )
            result.append(health)
        return result

    def system(self, province: str, system_id: str, scope: Scope = None) -> SystemHealth | None:
        """One system with its windows and incidents; None when the catalogue has no such id
        (or the scope holds none of its communes)."""
        entry = next((e for e in self.entries(province) if e.id == system_id), None)
        if entry is None:
            return None
        facts = self._facts(province)
        health = self._now(province, entry, facts, scope)
        if health is None:
            return None
        now = self.clock()
        planned = maintenance.windows(self.store, province, now - WINDOWS["30d"], now)
        used = [r.commune for r in health.reach]
        return _with_windows(
            health,
            *(
                self._figures(
                    province, entry, facts, used, now - span, now, planned, scope is not None
                )
                for span in WINDOWS.values()
            ),
        )

    def commune(self, province: str, commune: str) -> CommuneSystems | None:
        """The systems one commune uses and its reach of each; None without a catalogue.
        Each system's view beside it is province-wide (every commune's reach makes its
        verdict): a caller showing it to a narrower token judges it over that token's
        communes instead (collector/web/systemviews.py)."""
        found = self.entries(province)
        if not found:
            return None
        facts = self._facts(province)
        names = self._names(province)
        pairs: list[tuple[SystemHealth, Reach]] = []
        for entry in found:
            health = self._now(province, entry, facts, None, names)
            if health is None:
                continue
            mine = next((r for r in health.reach if r.commune == commune), None)
            if mine is not None:
                pairs.append((health, mine))
        lines = facts.lines.get((commune, "tslcd"))
        return CommuneSystems(
            province, commune, names.get(commune, commune),
            self._line_up(facts, commune, "tslcd") if lines else None, pairs,
        )  # fmt: skip

    def period(
        self,
        province: str,
        start: float,
        end: float,
        scope: Scope = None,
        outages: dict[int, list[Outage]] | None = None,
        lines: Mapping[tuple[str, str], list[tuple[float, float]]] | None = None,
    ) -> list[SystemPeriod]:
        """Each system (then "website") over [start, end): the monthly report's figures,
        incidents included. ``outages``: every subject's of the province overlapping the
        window, when the caller has read them already (the report has); ``lines``: the
        down spans of communes' lines by (commune, network), when the caller has combined
        them from the probes these figures would (each whose last word is in the window),
        an outage still open ending at ``end`` or now."""
        found = self.entries(province)
        if not found:
            return []
        facts = self._facts(province)
        planned = maintenance.windows(self.store, province, start, end)
        if outages is None:  # one read for every system, not one each
            outages = self.store.outages_under(f"{province}/", start, end)
        # Each commune's line, combined from its probes once, not once per system.
        known = _Known(outages, dict(lines or {}))
        result = []
        for entry in found:
            communes = [c for c in entry.communes if scope is None or c in scope]
            if not communes:
                continue
            figures = self._figures(
                province, entry, facts, communes, start, end, planned, scope is not None, known
            )
            result.append(
                SystemPeriod(
                    entry.id,
                    entry.name,
                    entry.kind,
                    entry.network,
                    entry.owner,
                    len(communes),
                    figures,
                )
            )
        return result


def _silences(
    probe: Subject, gaps: dict[int, list[tuple[float, float]]], facts: _Facts, now: float
) -> list[tuple[float, float]]:
    """When a probe was not watching: its gaps, before it began, and, once its PC is off
    or it is silent beyond its bound, from one interval after its last word."""
    bound = silence_bound(facts.intervals.get(probe.agent_key, 0.0))
    stopped = probe.agent_key not in facts.online or now - probe.last_ts > bound
    since = probe.last_ts + silence_bound_hold(bound)
    return merged(
        [*gaps.get(probe.id, []), (-math.inf, probe.monitored_since)]
        + ([(since, math.inf)] if stopped else [])
    )


def _with_silences(outages: list[Outage], silences: list[tuple[float, float]]) -> list[Outage]:
    """A probe's outages with its silences added: in a vote of several probes, a silent one
    does not say "up"."""
    spans = merged(
        [(o.start, math.inf if o.end is None else o.end) for o in outages]
        + [(lo, hi) for lo, hi in silences if hi > -math.inf and lo < math.inf]
    )
    return [Outage(lo, None if hi == math.inf else hi) for lo, hi in spans]


def _overlap_all(spans: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The time inside every one of the lists (each sorted and disjoint)."""
    found: list[tuple[float, float]] | None = None
    for each in spans:
        found = each if found is None else overlap(found, each)
    return found or []


def _verdict(reach: list[Reach]) -> Verdict:
    """A system judged from every commune's reach of it."""
    states = [r.state for r in reach]
    probing = [s for s in states if s not in ("silent", "not_probed")]
    reaching = [s for s in probing if s in ("ok", "slow")]
    failing = sum(1 for s in probing if s in ("unreachable", "bad_response"))
    slow = states.count("slow")
    line_up = len(probing) - states.count("line_down")
    if not line_up:
        return "no_data"  # nobody probes it with a line up: nothing known of it
    if line_up >= min(QUORUM, len(reach)) and 100.0 * failing / line_up > WIDELY_PERCENT:
        return "down"
    if reaching and 100.0 * slow / len(reaching) > WIDELY_PERCENT:
        return "slow"
    return "local" if failing or slow else "ok"


def _with_windows(health: SystemHealth, day: Figures, month: Figures) -> SystemHealth:
    return replace(health, last_24h=day, last_30d=month)
