"""Weeks of the offices' life, event by event: what changes, when, and what the agents say.

``Fleet`` (``scenario.py``) says what one check run reports; ``Life`` says when things
change, and plays a fleet through simulated days one 60-second tick at a time:

- PCs on in office hours (Vietnam's time), a few left on at night, a few on Saturday
  mornings; a clean shutdown says goodbye, a hard one leaves it to the broker's Last Will;
- the dedicated line: the scenario's outages and, in a few communes, a flapping line
  (bursts of drops of a minute or two); a drop longer than the keepalive loses the
  agents' sessions (Last Will) and they come back with a birth;
- power cuts: a whole commune silent for an hour or two, its prober included;
- anti-malware going stale (signatures days old) or switched off for a while;
- in some communes a Polycom switched on only for the province's meetings;
- disks filling slowly, and cleaned up once nearly full;
- PCs replaced: the old agent says goodbye for good, a new agent id takes its desk;
- every commune's poller probing the province's shared systems and its own website.

Events are drawn from generators of their own, never from the samples' draws, so that
two runs that sample differently see the same events at the same times.

Sampling: at the real cycle (``Sampling()``) every check runs every tick.
``Sampling.thinned()`` runs a check less often while nothing it reports changes, runs it
at the tick of every change the simulation makes (a line dropping, a system failing, a
verdict changing, a PC switched on), and then at every tick for a few minutes after
any change its sample shows (``BUSY_TICKS``: longer than any alert rule's ``for`` and
``resolve_after``). So the up/down history, the alerts and their notifications are
those of the real cycle at a fraction of the messages; only what is counted per sample
differs (the shared systems' response-time histograms). bench/store_year_bench.py
measures both over the same window.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from agent.wire import UpdateReport
from fleet.scenario import (
    PRODUCTS,
    SYSTEM_OUTAGE_EVERY_S,
    SYSTEM_OUTAGE_S,
    TSLCD_GATEWAY,
    Fleet,
    Message,
    Plan,
    PlannedCheck,
    SimAgent,
    SimCommune,
)

TICK_S = 60.0
#: Vietnam keeps +07:00 all year.
VIETNAM_OFFSET_S = 7 * 3600
DAY_S = 86400.0
#: A session whose line is gone this long is lost: the broker publishes its Last Will.
KEEPALIVE_S = 90.0
LINE = "tslcd-province"
#: A PC's probe of its commune's own router (on the office's side of the line).
GATEWAY = "tslcd-gateway"
#: A PC's checks as the province's office profile sets them (deploy/profiles/dong-nai.toml).
OFFICE = ("host", "antivirus", GATEWAY, LINE)
#: Checks that run less often than every tick (ticks): the anti-malware every 10 minutes.
NATIVE_TICKS = {"antivirus": 10}

#: The province's shared systems as every commune's poller probes them (the example
#: catalogue of deploy/inventory/dong-nai.systems.toml), and each commune's own website.
SYSTEMS: tuple[PlannedCheck, ...] = (
    PlannedCheck("system", "mot-cua", "https://motcua.dongnai.gov.vn/", system_kind="one-stop"),
    PlannedCheck("system", "dich-vu-cong", "https://dichvucong.dongnai.gov.vn/", "internet",
                 system_kind="one-stop"),
    PlannedCheck("system", "qlvb", "https://qlvb.dongnai.gov.vn/", system_kind="documents"),
    PlannedCheck("system", "thu-dien-tu", "https://mail.dongnai.gov.vn/", "internet",
                 system_kind="email"),
    PlannedCheck("system", "hop-khong-giay", "https://hopkhonggiay.dongnai.gov.vn/",
                 system_kind="meetings"),
    PlannedCheck("system", "bao-cao", "https://baocao.dongnai.gov.vn/", system_kind="reporting"),
    PlannedCheck("system", "dongnai-lis", "https://dongnailis.dongnai.gov.vn/",
                 system_kind="land"),
    PlannedCheck("system", "lgsp", "lgsp.dongnai.gov.vn:8443", system_kind="lgsp"),
    PlannedCheck("system", "ioc", "https://ioc.dongnai.gov.vn/", system_kind="ioc"),
)  # fmt: skip

#: Ticks a check keeps running at every tick after its sample changed: the longest
#: ``for``/``resolve_after`` of the built-in rules on it, and a tick to spare.
BUSY_TICKS = {"link": 4, "snmp": 4, "system": 2, "host": 7, "antivirus": 22, "polycom": 12}


@dataclass(frozen=True)
class Settings:
    """How eventful the offices are. The defaults are an ordinary year; ``stormy`` packs
    weeks of events into hours (the benchmark's check that thinning changes nothing)."""

    outages_per_day: float = 0.3
    """Line outages per commune and day (x0.2 to x2 by commune): a drop every few days
    (the scenario's demos drop the line twice a day)."""
    flapping_share: float = 0.05
    """Communes whose line flaps."""
    flap_bursts_per_day: float = 1.0
    """A flapping line's bursts a day: 4 to 12 drops of 70 s to 3 minutes each."""
    power_cuts_per_day: float = 2 / 30
    """Per commune: the power goes for 20 minutes to 3 hours."""
    stale_per_day: float = 1 / 45
    """Per protected PC: its signatures stop updating for 1 to 6 days."""
    switched_off_per_day: float = 1 / 120
    """Per protected PC: its anti-malware is switched off for 1 hour to 2 days."""
    replaced_per_day: float = 0.2 / 365
    """Per PC: replaced by a new one (a new agent id at the same desk)."""
    polycom_for_meetings_share: float = 0.25
    """Communes that switch their Polycom on for the meetings only."""
    hard_off_share: float = 0.03
    """Shutdowns without a goodbye (power button, power strip)."""
    left_on_share: float = 0.12
    """PCs left on at night."""
    absent_share: float = 0.08
    """PCs not switched on at all on a working day."""
    saturday_share: float = 0.25
    """PCs used on Saturday morning (one-stop shops open)."""
    disk_fill_per_day: float = 0.12
    """A disk fills by up to this many percent a day."""

    @classmethod
    def stormy(cls) -> Settings:
        return cls(
            outages_per_day=24.0,
            flapping_share=0.5,
            flap_bursts_per_day=24.0,
            power_cuts_per_day=4.0,
            stale_per_day=4.0,
            switched_off_per_day=4.0,
            replaced_per_day=2.0,
            polycom_for_meetings_share=1.0,
            hard_off_share=0.3,
            disk_fill_per_day=60.0,
        )


@dataclass(frozen=True)
class Sampling:
    """How often a check runs while nothing it reports changes, in seconds."""

    pc_s: float = TICK_S
    line_s: float = TICK_S
    """The poller's line probe: at 300 s still one sample in each 5-minute bucket of
    the line's RTT and loss history."""
    system_s: float = TICK_S
    """The shared systems' probes: at most the 900 s after which a silent probe leaves
    a gap in its history (``collector.state.store.GAP_MIN_S``)."""
    poller_s: float = TICK_S
    """The poller's router and Polycom."""

    @classmethod
    def thinned(cls) -> Sampling:
        return cls(pc_s=DAY_S, line_s=900.0, system_s=900.0, poller_s=1800.0)

    @property
    def real(self) -> bool:
        return max(self.pc_s, self.line_s, self.system_s, self.poller_s) <= TICK_S


def local_day(ts: float) -> int:
    return int((ts + VIETNAM_OFFSET_S) // DAY_S)


def day_start(day: int) -> float:
    return day * DAY_S - VIETNAM_OFFSET_S


def weekday(day: int) -> int:
    """Monday 0 ... Sunday 6 (1 January 1970 was a Thursday)."""
    return (day + 3) % 7


def system_up(check: PlannedCheck, ts: float) -> bool:
    """As ``Fleet._system_sample`` plays it: down for everyone twice a day."""
    seed = zlib.crc32(check.name.encode())
    return (ts - seed % SYSTEM_OUTAGE_EVERY_S) % SYSTEM_OUTAGE_EVERY_S >= SYSTEM_OUTAGE_S


@dataclass(eq=False)
class Desk:
    """One agent's life: its PC's power, its session, what its checks last showed."""

    agent: SimAgent
    phase: float
    """Seconds into each tick at which its checks run (agents start at any time)."""
    offset: int
    """Its steady runs' place in the period (ticks)."""
    powered: bool = False
    connected: bool = False
    retired: bool = False
    protected_verdict: str = "protected"
    shown: dict[str, object] = field(default_factory=dict)
    """Per check: what its last sample showed (line up, verdict, disk full...)."""
    generation: int = 1


@dataclass(eq=False)
class Office:
    """One commune: its desks, its poller, its power and its line's drops."""

    commune: SimCommune
    desks: list[Desk]
    poller: Desk
    power_cut_until: float = 0.0
    seen_outage_until: float = 0.0
    flapping: bool = False
    polycom_for_meetings: bool = False


class Life:
    def __init__(
        self,
        fleet: Fleet,
        start: float,
        *,
        settings: Settings = Settings(),
        sampling: Sampling = Sampling(),
        seed: int = 1,
        systems: tuple[PlannedCheck, ...] = SYSTEMS,
        version: str = "0.3.0",
    ) -> None:
        self.fleet = fleet
        self.start = start
        self.settings = settings
        self.sampling = sampling
        self.version = version
        self.rng = random.Random(seed)
        self.systems = systems
        self.tick = 0
        self.events: list[tuple[float, int, Callable[[float], list[Message]]]] = []
        self._order = 0
        self.counts: dict[str, int] = defaultdict(int)
        """What happened, by kind: outages, flaps, power_cuts, stale, switched_off,
        replaced, hard_off, births, goodbyes, wills, envelopes."""
        self._requests: dict[int, dict[Desk, set[str]]] = defaultdict(lambda: defaultdict(set))
        """Tick -> desk -> checks that must run then (a change the simulation made)."""
        self._steady: dict[int, list[list[tuple[Desk, tuple[str, ...]]]]] = {}
        """Period (ticks) -> residue -> (desk, checks) that run at ticks of that residue."""
        self._meetings: list[tuple[float, float]] = []
        self._busy: dict[Desk, dict[str, int]] = {}
        """Desk -> check -> the last tick it runs at every tick (its sample changed)."""
        website = PlannedCheck("system", "website", "", "internet", system_kind="website")
        self._system_checks = {c.name: c for c in (*systems, website)}
        self.offices: list[Office] = []
        by_commune: dict[str, Office] = {}
        for sim in fleet.agents:
            office = by_commune.get(sim.commune.slug)
            if office is None:
                commune = sim.commune
                commune.line_rng = random.Random(self.rng.random())
                commune.outages_per_day = settings.outages_per_day * self.rng.uniform(0.2, 2.0)
                placeholder = Desk(sim, 0.0, 0)
                office = Office(commune, [], placeholder)
                office.flapping = self.rng.random() < settings.flapping_share
                office.polycom_for_meetings = (
                    self.rng.random() < settings.polycom_for_meetings_share
                )
                if office.polycom_for_meetings:
                    commune.polycom_power = self._polycom_on
                by_commune[commune.slug] = office
                self.offices.append(office)
            desk = self._desk(sim)
            if sim.poller:
                office.poller = desk
                sim.plan = Plan(1, "0" * 64, None, self._poller_checks(sim.commune))
            else:
                office.desks.append(desk)
                sim.plan = Plan(1, "0" * 64, None, self._office_checks(len(self.offices)))
                sim.disk_drift = False
                desk.protected_verdict = sim.verdict
        self._day = local_day(start) - 1

    # the desks -----------------------------------------------------------------------

    def _desk(self, sim: SimAgent) -> Desk:
        phase = round(self.rng.uniform(0.5, 59.5), 3)
        desk = Desk(sim, phase=phase, offset=self.rng.randrange(1440))
        for period, checks in self._periods(sim):
            residues = self._steady.get(period) or self._steady.setdefault(
                period, [[] for _ in range(period)]
            )
            residues[desk.offset % period].append((desk, checks))
        return desk

    def _periods(self, sim: SimAgent) -> list[tuple[int, tuple[str, ...]]]:
        def ticks(seconds: float) -> int:
            return max(1, round(seconds / TICK_S))

        s = self.sampling
        if not sim.poller:
            return [(ticks(s.pc_s), OFFICE)]
        return [
            (ticks(s.line_s), (LINE,)),
            (ticks(s.system_s), (*(c.name for c in self.systems), "website")),
            (ticks(s.poller_s), ("router", "polycom")),
        ]

    def _poller_checks(self, commune: SimCommune) -> tuple[PlannedCheck, ...]:
        website = PlannedCheck(
            "system", "website", f"https://{commune.slug}.dongnai.gov.vn/", "internet",
            system_kind="website",
        )  # fmt: skip
        return (
            PlannedCheck("snmp", "router"),
            PlannedCheck("polycom", "polycom"),
            PlannedCheck("link", LINE, TSLCD_GATEWAY),
            *self.systems,
            website,
        )

    @staticmethod
    def _office_checks(number: int) -> tuple[PlannedCheck, ...]:
        gateway = f"10.{76 + number // 250}.{number % 250}.1"
        return (
            PlannedCheck("host", "host"),
            PlannedCheck("antivirus", "antivirus"),
            PlannedCheck("link", GATEWAY, gateway, across_line=False),
            PlannedCheck("link", LINE, TSLCD_GATEWAY),
        )

    def _checks_of(self, desk: Desk) -> tuple[str, ...]:
        if desk.agent.poller:
            return ("router", "polycom", LINE, *(c.name for c in self.systems), "website")
        return OFFICE

    def _kind(self, desk: Desk, check: str) -> str:
        if not desk.agent.poller:
            return "link" if check in (LINE, GATEWAY) else check
        return {"router": "snmp", "polycom": "polycom", LINE: "link"}.get(check, "system")

    def _request(self, desk: Desk, checks: Iterable[str], at: float) -> None:
        """Run these checks at the tick ``at`` falls in and at the next (the change may
        come after the desk's moment in the first); a check of a longer interval at its
        next two runs."""
        if self.sampling.real:
            return
        tick = self._tick_of(at)
        for check in checks:
            every = NATIVE_TICKS.get(check, 1)
            first = tick + (desk.offset - tick) % every
            for k in (first, first + every):
                self._requests[k][desk].add(check)

    def _tick_of(self, at: float) -> int:
        return max(self.tick, int((at - self.start) // TICK_S))

    # events --------------------------------------------------------------------------

    def _at(self, when: float, work: Callable[[float], list[Message]]) -> None:
        self._order += 1
        heapq.heappush(self.events, (when, self._order, work))

    def _poisson(self, rate_per_day: float, start: float, end: float) -> list[float]:
        """Times of a Poisson process of ``rate_per_day`` over [start, end)."""
        times: list[float] = []
        if rate_per_day <= 0:
            return times
        at = start
        while True:
            at += self.rng.expovariate(rate_per_day / DAY_S)
            if at >= end:
                return times
            times.append(at)

    def _plan_day(self, day: int) -> None:
        """Draw the day's events: the PCs' hours, the meetings, the drops, the troubles."""
        s = self.settings
        begin, wd = day_start(day), weekday(day)
        end = begin + DAY_S
        self._meetings = [m for m in self._meetings if m[1] > begin]
        if wd < 5:
            for hour, chance in ((8.0, 0.5), (14.0, 0.4)):
                if self.rng.random() < chance:
                    at = begin + hour * 3600
                    self._meetings.append((at, at + self.rng.choice((60, 90, 120)) * 60))
        for office in self.offices:
            office.commune.flaps = [f for f in office.commune.flaps if f[1] > begin]
            if office.flapping:
                for burst in self._poisson(s.flap_bursts_per_day, begin, end):
                    self._flap_burst(office, burst)
            for cut in self._poisson(s.power_cuts_per_day, begin, end):
                length = min(3 * 3600.0, max(1200.0, self.rng.lognormvariate(math.log(3600), 0.6)))
                self._at(cut, partial(self._power_cut, office, length=length))
            for desk in office.desks:
                if desk.retired:
                    continue
                self._plan_desk(office, desk, begin, wd)
                if desk.protected_verdict == "protected":
                    self._plan_anti_malware(desk, begin, end)
                self._fill_disk(desk, begin)
            if office.polycom_for_meetings:
                for start, finish in self._meetings:
                    if start >= begin:
                        for at in (start - 1800, finish + 900):
                            self._request(office.poller, ("polycom",), at)

    def _plan_anti_malware(self, desk: Desk, begin: float, end: float) -> None:
        s = self.settings
        for at in self._poisson(s.stale_per_day, begin, end):
            days = self.rng.uniform(1, 6)
            self._at(at, partial(self._verdict, desk, verdict="outdated", length=days * DAY_S))
        for at in self._poisson(s.switched_off_per_day, begin, end):
            hours = self.rng.uniform(1, 48)
            self._at(at, partial(self._verdict, desk, verdict="unprotected", length=hours * 3600))

    def _plan_desk(self, office: Office, desk: Desk, begin: float, wd: int) -> None:
        s, rng = self.settings, self.rng
        if wd < 5:
            if rng.random() < s.absent_share:
                return
            on = begin + rng.gauss(7.25, 0.35) * 3600
            off = begin + rng.gauss(17.0, 0.4) * 3600
        elif wd == 5 and rng.random() < s.saturday_share:
            on, off = begin + rng.gauss(7.5, 0.3) * 3600, begin + rng.gauss(11.5, 0.3) * 3600
        else:
            return
        self._at(self._on_grid(desk, on), partial(self._power_on, office, desk))
        # Replaced in office hours (five working days stand for the week's seven).
        if wd < 5 and rng.random() < s.replaced_per_day * 7 / 5:
            at = begin + rng.uniform(8.0, 16.0) * 3600
            self._at(at, partial(self._replace, office, desk))
        if rng.random() >= s.left_on_share:
            hard = rng.random() < s.hard_off_share
            self._at(self._on_grid(desk, off), partial(self._power_off, office, desk, hard=hard))

    def _on_grid(self, desk: Desk, at: float) -> float:
        """Half a second before the desk's moment in its tick: its birth, then its checks."""
        tick = math.floor((at - self.start) / TICK_S)
        return self.start + tick * TICK_S + desk.phase - 0.5

    def _flap_burst(self, office: Office, at: float) -> None:
        flaps = office.commune.flaps
        for _ in range(self.rng.randint(4, 12)):
            down = self.rng.uniform(70.0, 180.0)
            if not flaps or at > flaps[-1][1]:
                flaps.append((at, at + down))
                self._drop(office, at, at + down, "flaps")
            at += down + self.rng.uniform(70.0, 300.0)

    def _polycom_on(self, ts: float) -> bool:
        return any(start - 1800 <= ts < end + 900 for start, end in self._meetings)

    # what happens ---------------------------------------------------------------------

    def _birth(self, desk: Desk, now: float) -> list[Message]:
        desk.connected = True
        self.counts["births"] += 1
        update = UpdateReport("idle", self.version, launcher=self.version, ts=now)
        return [self.fleet.status(desk.agent, now, update=update)]

    def _line_up(self, office: Office, now: float) -> bool:
        return office.commune.line_up(now) and now >= office.power_cut_until

    def _power_on(self, office: Office, desk: Desk, now: float) -> list[Message]:
        if desk.powered or desk.retired or now < office.power_cut_until:
            return []
        desk.powered = True
        self._request(desk, self._checks_of(desk), now + 1)
        return self._birth(desk, now) if self._line_up(office, now) else []

    def _power_off(self, office: Office, desk: Desk, now: float, hard: bool) -> list[Message]:
        if not desk.powered:
            return []
        desk.powered = False
        if not desk.connected:
            return []
        desk.connected = False
        if hard:
            self.counts["hard_off"] += 1
            return self._will(desk, now + KEEPALIVE_S)
        self.counts["goodbyes"] += 1
        return [self.fleet.goodbye(desk.agent, now)]

    def _will(self, desk: Desk, when: float) -> list[Message]:
        """The broker publishes the lost session's Last Will after the keepalive."""
        self._at(when, partial(self._publish_will, desk))
        return []

    def _publish_will(self, desk: Desk, now: float) -> list[Message]:
        if desk.connected:  # back meanwhile: the broker saw no loss
            return []
        self.counts["wills"] += 1
        return [self.fleet.will(desk.agent)]

    def _drop(self, office: Office, start: float, end: float, kind: str) -> None:
        """The line is down over [start, end): sessions longer gone than the keepalive are
        lost, every session comes back at the end; the checks that see it run then."""
        self.counts[kind] += 1
        self._at(start, partial(self._line_down, office, end=end))
        self._at(end, partial(self._line_back, office))

    def _line_dependent(self, desk: Desk) -> tuple[str, ...]:
        if not desk.agent.poller:
            return (LINE,)
        tslcd = [c.name for c in self.systems if c.network == "tslcd"]
        return ("router", LINE, *tslcd)

    def _line_down(self, office: Office, now: float, end: float) -> list[Message]:
        for desk in (office.poller, *office.desks):
            if desk.powered:
                self._request(desk, self._line_dependent(desk), now)
        if end - now > KEEPALIVE_S:
            self._at(now + KEEPALIVE_S, partial(self._sessions_lost, office))
        return []

    def _sessions_lost(self, office: Office, now: float) -> list[Message]:
        if self._line_up(office, now):
            return []
        wills: list[Message] = []
        for desk in (office.poller, *office.desks):
            if desk.connected:
                desk.connected = False
                self.counts["wills"] += 1
                wills.append(self.fleet.will(desk.agent))
        return wills

    def _line_back(self, office: Office, now: float) -> list[Message]:
        if not self._line_up(office, now):
            return []
        messages: list[Message] = []
        for desk in (office.poller, *office.desks):
            if desk.powered:
                self._request(desk, self._line_dependent(desk), now)
                if not desk.connected:
                    messages += self._birth(desk, now)
        return messages

    def _power_cut(self, office: Office, now: float, length: float) -> list[Message]:
        if now < office.power_cut_until:
            return []
        self.counts["power_cuts"] += 1
        office.power_cut_until = now + length
        for desk in (office.poller, *office.desks):
            if desk.powered:
                desk.powered = False
                if desk.connected:
                    self._will(desk, now + KEEPALIVE_S)
                    desk.connected = False
        self._at(now + length, partial(self._power_back, office))
        return []

    def _power_back(self, office: Office, now: float) -> list[Message]:
        poller = office.poller
        self._at(self._on_grid(poller, now + TICK_S), partial(self._power_on, office, poller))
        local = (now + VIETNAM_OFFSET_S) % DAY_S / 3600
        if weekday(local_day(now)) < 5 and 7.5 <= local < 16.5:
            for desk in office.desks:
                if not desk.retired and self.rng.random() > self.settings.absent_share:
                    back = self._on_grid(desk, now + self.rng.uniform(120, 1200))
                    self._at(back, partial(self._power_on, office, desk))
        return []

    def _verdict(self, desk: Desk, now: float, verdict: str, length: float) -> list[Message]:
        if desk.retired or desk.agent.verdict != "protected":
            return []
        self.counts["stale" if verdict == "outdated" else "switched_off"] += 1
        desk.agent.verdict = verdict
        self._request(desk, ("antivirus",), now)
        self._at(now + length, partial(self._verdict_back, desk))
        return []

    def _verdict_back(self, desk: Desk, now: float) -> list[Message]:
        desk.agent.verdict = "protected"
        self._request(desk, ("antivirus",), now)
        return []

    def _fill_disk(self, desk: Desk, now: float) -> None:
        sim = desk.agent
        before = sim.disk_percent >= 90
        if sim.disk_percent >= 95 and self.rng.random() < 0.3:  # someone cleans it up
            sim.disk_percent = self.rng.uniform(55, 75)
        else:
            fill = self.rng.uniform(0, self.settings.disk_fill_per_day)
            sim.disk_percent = min(99.0, sim.disk_percent + fill)
        if (sim.disk_percent >= 90) != before:
            self._request(desk, ("host",), now)

    def _replace(self, office: Office, desk: Desk, now: float) -> list[Message]:
        """The old PC says goodbye for good; its successor, a new agent id, takes the desk."""
        if desk.retired:
            return []
        self.counts["replaced"] += 1
        messages = self._power_off(office, desk, now, hard=False)
        desk.retired = True
        old = desk.agent
        base = old.agent.rsplit("-r", 1)[0]
        sim = SimAgent(
            old.commune, f"{base}-r{desk.generation + 1}", False, "protected",
            self.rng.choice(PRODUCTS), disk_percent=self.rng.uniform(20, 40), disk_drift=False,
        )  # fmt: skip
        sim.plan = old.plan
        self.fleet.agents.append(sim)
        successor = self._desk(sim)
        successor.protected_verdict = "protected"
        successor.generation = desk.generation + 1
        office.desks.append(successor)
        self._at(self._on_grid(successor, now + 600), partial(self._power_on, office, successor))
        return messages

    # playing -------------------------------------------------------------------------

    def births(self, known: bool = False) -> list[Message]:
        """The pollers' births at the start (the PCs are born when switched on).

        ``known``: every PC was seen before (last week): it runs its checks for the first
        ten minutes and shuts down, so that the collector knows the whole fleet from the
        first day."""
        messages: list[Message] = []
        for office in self.offices:
            office.poller.powered = True
            messages += self._birth(office.poller, self.start)
            self._request(office.poller, self._checks_of(office.poller), self.start)
            for desk in office.desks if known else ():
                desk.powered = True
                messages += self._birth(desk, self.start)
                self._request(desk, self._checks_of(desk), self.start)
                shutdown = partial(self._power_off, office, desk, hard=False)
                self._at(self._on_grid(desk, self.start + 10 * TICK_S), shutdown)
        return messages

    def step(self) -> tuple[float, list[Message]]:
        """Play the next tick: (its end, the messages that reached the broker in it)."""
        begin = self.start + self.tick * TICK_S
        end = begin + TICK_S
        if local_day(begin) != self._day:
            self._day = local_day(begin)
            self._plan_day(self._day)
        self._advance_lines(begin)
        self._system_changes(begin, end)
        messages: list[Message] = []
        while self.events and self.events[0][0] < end:
            when, _, work = heapq.heappop(self.events)
            messages += work(when)
        messages += self._sample(begin)
        self.tick += 1
        return end, messages

    def _advance_lines(self, now: float) -> None:
        for office in self.offices:
            commune = office.commune
            commune.advance_line(now)
            if commune.line_down_until > office.seen_outage_until:
                office.seen_outage_until = commune.line_down_until
                self._drop(office, now, commune.line_down_until, "outages")

    def _system_changes(self, begin: float, end: float) -> None:
        """A shared system failing or coming back: every poller's probe of it runs then."""
        if self.sampling.real:
            return
        for check in self.systems:
            seed = zlib.crc32(check.name.encode())
            for at in (begin, end):
                phase = (at - seed % SYSTEM_OUTAGE_EVERY_S) % SYSTEM_OUTAGE_EVERY_S
                if phase < TICK_S or SYSTEM_OUTAGE_S <= phase < SYSTEM_OUTAGE_S + TICK_S:
                    for office in self.offices:
                        self._request(office.poller, (check.name,), at)

    def _sample(self, begin: float) -> list[Message]:
        tick = self.tick
        due: dict[Desk, set[str]] = self._requests.pop(tick, {})
        for period, residues in self._steady.items():
            for desk, checks in residues[tick % period]:
                due.setdefault(desk, set()).update(checks)
        if not self.sampling.real:
            for desk in list(self._busy):
                last = self._busy[desk]
                running = {c for c, until in last.items() if until >= tick}
                if running:
                    due.setdefault(desk, set()).update(running)
                else:
                    del self._busy[desk]
        messages: list[Message] = []
        for desk, wanted in sorted(due.items(), key=lambda item: item[0].phase):
            if not desk.powered or desk.retired:
                continue
            for check, every in NATIVE_TICKS.items():
                if check in wanted and (tick - desk.offset) % every:
                    wanted.discard(check)
            if not wanted:
                continue
            at = begin + desk.phase
            found = self.fleet.cycle(desk.agent, at, wanted)
            self.counts["envelopes"] += len(found)
            messages += found
            if not self.sampling.real:
                self._note_shown(desk, wanted, at, tick)
        return messages

    def _note_shown(self, desk: Desk, checks: set[str], at: float, tick: int) -> None:
        """A check whose sample shows a change runs at every tick for a while."""
        office_up = desk.agent.commune.line_up(at)
        sim = desk.agent
        for check in checks:
            shown: object
            if check in (LINE, "router"):
                shown = office_up
            elif check == GATEWAY:
                shown = True
            elif check == "antivirus":
                shown = sim.verdict
            elif check == "host":
                shown = sim.disk_percent >= 90
            elif check == "polycom":
                power = sim.commune.polycom_power
                shown = power is None or power(at)
            else:
                planned = self._system_checks[check]
                shown = (office_up or planned.network != "tslcd") and system_up(planned, at)
            if desk.shown.get(check, shown) != shown:
                busy = self._busy.setdefault(desk, {})
                busy[check] = tick + BUSY_TICKS[self._kind(desk, check)]
            desk.shown[check] = shown
