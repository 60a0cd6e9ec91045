"""The health model the IOC reads: per commune, rolled up to the province.

Computed from the state store on request (the store holds the facts; these are
views of them):

- anti-malware: PCs reporting, protected, signatures too old, unprotected (or
  no product), unknown (agent silent or state unreadable); % protected over the
  inventory's expected PCs when it gives them, else over the PCs known;
- dedicated line (TSLCD): up now, availability over 24 h / 7 d / 30 d from the
  recorded outages, RTT and loss; a line several PCs probe is down only while
  every probe says so, so one PC's bad cable does not take the commune's line
  down;
- video conference: each Polycom reachable, registered, in a call, ready;
- router/switch interfaces that are administratively up but not operating;
- an overall status (ok / warning / critical / no_data) with its reasons.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.catalogue import ANTIVIRUS, LINK, POLYCOM, SNMP, SNMP_INTERFACE
from collector.common.localtime import local
from collector.common.natural import natural_key
from collector.state.availability import Outage, all_down, availability
from collector.state.inventory import EMPTY, Commune, Inventory, all_renames, is_uplink
from collector.state.store import AgentState, LatestSample, Port, StateStore, Subject

Status = Literal["ok", "warning", "critical", "no_data"]
_SEVERITY: dict[Status, int] = {"no_data": 0, "ok": 1, "warning": 2, "critical": 3}

HOUR = 3600.0
DAY = 24 * HOUR
#: The console overview's strip: the line's last days, one by one.
OVERVIEW_DAYS = 7
#: The windows the IOC reads availability over.
WINDOWS = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}


@dataclass
class Reason:
    code: str
    """Stable, for programs and translations: line_down, unprotected, ..."""
    severity: Status
    detail: str
    count: int | None = None
    """How many (PCs, agents, interfaces) when the reason counts something: what a
    translation shows, rather than reading it back out of the English detail."""


@dataclass
class AntiMalware:
    expected: int | None
    """PCs the inventory expects; None when it does not say."""
    reporting: int
    """PCs whose agent is online and reported its anti-malware state."""
    protected: int
    signatures_too_old: int
    unprotected: int
    """Products found but all off, or no product at all."""
    unknown: int
    """Agent silent (offline) or the product's state unreadable."""
    not_reporting: int | None
    """Expected PCs with no agent known at all; None without an expected count."""
    percent_protected: float | None
    denominator: int
    """What the percentage is of: the expected PCs, else the PCs known."""
    denominator_of: Literal["expected", "known"] = "known"
    """Which figure ``denominator`` is: the inventory's expected PCs, or (the inventory
    not saying) the PCs known to report anti-malware."""


@dataclass
class Availabilities:
    last_24h: float | None
    last_7d: float | None
    last_30d: float | None


NOT_COMPUTED = Availabilities(None, None, None)
"""A probe's own windows where they were not asked for (the overview's): one value,
never changed."""


@dataclass
class LineTarget:
    agent: str
    name: str
    target: str
    network: str
    up: bool | None
    """The latest word of a running agent; None when its agent is silent."""
    since: float
    rtt_ms: float | None
    loss_percent: float | None
    availability: Availabilities


@dataclass
class Line:
    """The commune's dedicated line (TSLCD), from every probe of it."""

    monitored: bool
    up: bool | None
    """None: no running agent probes it now (the line may well be why)."""
    down_since: float | None
    availability: Availabilities
    rtt_ms: float | None
    """Best RTT among the probes that see the line up."""
    loss_percent: float | None
    targets: list[LineTarget]
    """Every probe of the dedicated line (network tslcd); the other networks' probes
    are the commune's ``links``."""
    days: list[Day] = field(default_factory=list)
    """When asked (the console's overview): availability day by day, oldest first."""


@dataclass
class Day:
    start: float
    """The local day's midnight."""
    percent: float | None
    """None: not watched that day."""


@dataclass
class PolycomDevice:
    agent: str
    name: str
    target: str
    reachable: bool
    registered: bool | None
    in_call: bool | None
    ready: bool | None
    camera_ok: bool | None
    microphone_ok: bool | None
    model: str | None
    ts: float
    ready_24h: float | None
    """% of the last 24 h it was ready for a meeting."""


@dataclass
class Polycom:
    expected: int | None
    reporting: int
    reachable: int
    registered: int
    in_call: int
    ready: int
    devices: list[PolycomDevice]


@dataclass
class Interface:
    device: str
    agent: str
    name: str
    up: bool | None
    oper_state: str | None
    admin_up: bool | None
    alias: str | None
    speed_bps: float | None
    in_bps: float | None = None
    out_bps: float | None = None
    in_errors_ps: float | None = None
    out_errors_ps: float | None = None
    since: float | None = None
    """Operating (or not) since then, as far as monitoring knows."""
    seen_up: bool = False
    """Seen operating since monitoring began: down is news only then (or an uplink)."""
    uplink: bool = False
    """Marked uplink or important in the inventory."""

    @property
    def problem(self) -> bool:
        """Down and it matters: an uplink, or a port that was used (admin up)."""
        if self.up is not False:
            return False
        return self.uplink or (self.admin_up is True and self.seen_up)


@dataclass
class Interfaces:
    devices: int
    """Routers/switches polled over SNMP."""
    devices_unreachable: int
    up: int
    down: int
    """Seen operating and now not, admin up (a cable, a port, the far end), or an
    uplink not operating."""
    down_list: list[Interface]
    all: list[Interface]
    uplinks_down: int = 0
    unused: int = 0
    """Admin up, not operating, never seen operating: an empty socket, not news."""


@dataclass
class CommuneHealth:
    province: str
    slug: str
    name: str
    code: str
    status: Status
    reasons: list[Reason]
    agents: int
    agents_online: int
    antimalware: AntiMalware
    line: Line
    polycom: Polycom
    interfaces: Interfaces
    links: list[LineTarget] = field(default_factory=list)
    """The link probes that are not the dedicated line: the Internet, the LAN, a server."""


@dataclass
class ProvinceHealth:
    province: str
    name: str
    generated_at: float
    communes: int
    communes_by_status: dict[str, int]
    pcs_expected: int | None
    pcs_reporting: int
    pcs_protected: int
    percent_protected: float | None
    """Of ``pcs_denominator``."""
    lines_monitored: int
    lines_up: int
    lines_down: int
    availability_24h: float | None
    """Mean over the communes whose line is monitored (each commune weighs the same)."""
    availability_30d: float | None
    """None from the console's overview, which reads a week."""
    polycoms_expected: int | None
    polycoms_reporting: int
    polycoms_ready: int
    availability_7d: float | None = None
    pcs_denominator: int = 0
    """What ``percent_protected`` is of: each commune's expected PCs (the inventory's
    ``pcs``), or the PCs it knows where the inventory does not say."""
    percent_protected_of: Literal["expected", "known", "mixed"] = "known"
    """expected: every count in ``pcs_denominator`` is the inventory's; known: none is
    (PCs known to report anti-malware); mixed."""


@dataclass
class History:
    """What a commune's figures take from its recorded outages, as of one time: the
    availability windows, the line's combination of its probes and its days. The rest
    of a commune's health is read from its latest facts alone."""

    probes: dict[int, Availabilities]
    """Each link probe's own windows by subject id (when asked for detail)."""
    line_monitored: bool
    """Some probe of the dedicated line reported within the longest window."""
    line: Availabilities
    line_open_since: float | None
    """When the line's current outage began (every probe down), if it is down."""
    days: list[Day]
    ready_24h: dict[int, float | None]
    """Each Polycom's share of the last 24 h ready for a meeting, by subject id."""


@dataclass
class _Facts:
    """Everything the store knows, read once per request and grouped by commune."""

    agents: dict[tuple[str, str], list[AgentState]] = field(
        default_factory=lambda: defaultdict(list)
    )
    latest: dict[tuple[str, str, str], list[LatestSample]] = field(
        default_factory=lambda: defaultdict(list)
    )
    subjects: dict[tuple[str, str], list[Subject]] = field(
        default_factory=lambda: defaultdict(list)
    )
    outages: dict[int, list[Outage]] = field(default_factory=dict)
    """Outages of the last 30 days by subject."""
    ports: dict[tuple[str, str, str], Port] = field(default_factory=dict)
    horizon: float = 30 * DAY
    """How far back the outages were read: availability beyond it is not given."""
    lines: dict[tuple[str, str], tuple[list[Outage], float]] | None = None
    """Each commune's combined line, when taken from the cache (``outages`` then holds
    the Polycoms' only)."""


def _place(agent_key: str) -> tuple[str, str]:
    province, commune, _ = agent_key.split("/", 2)
    return province, commune


class HealthModel:
    def __init__(
        self,
        store: StateStore,
        inventories: Iterable[Inventory] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.inventories = {inv.province: inv for inv in inventories}
        self._renames = all_renames(self.inventories.values())
        self._now = clock
        self.clock = clock
        """The model's time (the views beside it, such as the shared systems', share it)."""
        self._lines: dict[tuple[str, str], tuple[tuple[Any, ...], list[Outage], float]] = {}
        """Each commune's combined line (outages, monitored since) for the overview, by
        the state of its probes: a probe's history changes only with its state or its
        ``since`` (a sample older than what the store holds changes nothing), so the
        same probes in the same states have the same line. Reading every probe's
        outages (50 PCs a commune) is then needed only for communes that changed."""
        self._lines_lock = threading.Lock()

    # reading the store ----------------------------------------------------------

    def _facts(
        self,
        province: str | None = None,
        commune: str | None = None,
        horizon: float = 0.0,
        lines_cached: bool = False,
    ) -> _Facts:
        place = (
            "" if province is None else f"{province}/" + ("" if commune is None else f"{commune}/")
        )
        facts = _Facts()
        for agent in self.store.agents():
            if agent.agent_key.startswith(place):
                facts.agents[(agent.province, agent.commune)].append(agent)
        for check in ("antivirus", "link", "polycom", "snmp"):
            for sample in self.store.latest_of(check, place):
                facts.latest[(*_place(sample.agent_key), check)].append(sample)
        for subject in self.store.subjects(place=place):
            facts.subjects[_place(subject.agent_key)].append(subject)
        now = self._now()
        facts.horizon = horizon or max(WINDOWS.values())
        if lines_cached:
            # The line from the cache (probes that changed are read); the Polycoms' own.
            facts.lines = self._combined_lines(facts, now)
            polycoms = [s.id for found in facts.subjects.values() for s in found
                        if s.kind == "polycom"]  # fmt: skip
            facts.outages = self.store.outages_of(polycoms, now - facts.horizon, now)
        else:
            facts.outages = self.store.outages_under(place, now - facts.horizon, now)
        facts.ports = self.store.ports(place)
        return facts

    def _combined_lines(
        self, facts: _Facts, now: float
    ) -> dict[tuple[str, str], tuple[list[Outage], float]]:
        start = now - max(WINDOWS.values())
        lines: dict[tuple[str, str], tuple[list[Outage], float]] = {}
        todo: list[tuple[tuple[str, str], list[Subject], tuple[Any, ...]]] = []
        with self._lines_lock:
            for place, subjects in facts.subjects.items():
                probes = [s for s in subjects if s.kind == "link" and s.network == "tslcd"
                          and s.last_ts >= start]  # fmt: skip
                key = tuple((s.id, s.state, s.since, s.monitored_since, s.revised) for s in probes)
                cached = self._lines.get(place)
                if cached is not None and cached[0] == key:
                    lines[place] = (cached[1], cached[2])
                elif probes:
                    todo.append((place, probes, key))
        if todo:
            outages = self.store.outages_of(
                [s.id for _, probes, _ in todo for s in probes], now - facts.horizon, now
            )
            with self._lines_lock:
                for place, probes, key in todo:
                    combined, since = all_down(
                        [(outages.get(s.id, []), s.monitored_since) for s in probes]
                    )
                    self._lines[place] = (key, combined, since)
                    lines[place] = (combined, since)
        return lines

    def warm(self) -> None:
        """Fill the overview's line cache for every province (at start, off the requests'
        path: the first look at a flapping province reads every probe's week)."""
        for province in self.provinces():
            self.communes(province, detail=False, days=OVERVIEW_DAYS)

    def places(self, province: str | None = None) -> list[tuple[str, str]]:
        """Every commune: the inventories' in their order, then the others seen, sorted."""
        seen = {(p, c) for p, c in self._known_places() if province is None or p == province}
        listed = [
            (inv.province, c.slug)
            for inv in self.inventories.values()
            if province is None or inv.province == province
            for c in inv.communes
        ]
        return listed + sorted(seen - set(listed))

    def _known_places(self) -> set[tuple[str, str]]:
        """(province, commune) of every agent known."""
        return self.store.places()

    def line_probes(self, province: str, commune: str | None = None) -> list[Subject]:
        """The dedicated line's probes (link subjects on the ``tslcd`` network) of a
        province, or of one of its communes, by id."""
        place = f"{province}/" if commune is None else f"{province}/{commune}/"
        return [s for s in self.store.subjects("link", place=place) if s.network == "tslcd"]

    def agents_in(self, province: str, commune: str) -> list[AgentState]:
        """A commune's agents, by key."""
        place = f"{province}/{commune}/"
        return [a for a in self.store.agents() if a.agent_key.startswith(place)]

    def renamed(self, slug: str, province: str | None = None) -> tuple[str, str] | None:
        """(province, slug now) of a commune the inventory lists ``slug`` as formerly
        named, for links and bookmarks made before the rename."""
        found = [(p, now) for (p, old), now in self._renames.items() if old == slug]
        return next((f for f in found if province in (None, f[0])), None)

    def _commune_info(self, province: str, slug: str) -> Commune:
        inventory = self.inventories.get(province, EMPTY)
        return inventory.commune(slug) or Commune(slug=slug, name=slug)

    # per commune --------------------------------------------------------------------

    def communes(
        self, province: str | None = None, *, detail: bool = True, days: int = 0
    ) -> list[CommuneHealth]:
        """Every commune. ``detail=False`` leaves out each probe's own availability (the
        overview shows the line's); ``days``: the line's last days, one by one."""
        # The overview's horizon is the week (its strip and its 24 h): reading a month of
        # every probe's outages is the report's and the API's work, not a glance's.
        facts = self._facts(
            province,
            horizon=0.0 if detail else max(WINDOWS["7d"], days * DAY),
            lines_cached=not detail,
        )
        now = self._now()
        spans = local_days(now, days) if days else []
        return [
            self._commune(facts, p, c, now, detail=detail, days=spans)
            for p, c in self.places(province)
        ]

    def some(
        self, places: Sequence[tuple[str, str]], *, detail: bool = True, days: int = 0
    ) -> list[CommuneHealth]:
        """These communes (a page of a national list), as ``communes`` gives them."""
        found = {
            (c.province, c.slug): c
            for province in sorted({p for p, _ in places})
            for c in self.communes(province, detail=detail, days=days)
        }
        return [found[place] for place in places if place in found]

    def commune(
        self, slug: str, province: str | None = None, *, days: int = 0
    ) -> CommuneHealth | None:
        """``days``: the line's last days, one by one (the API gives the console's week)."""
        matches = [(p, c) for p, c in self.places(province) if c == slug]
        if not matches:
            return None
        p, c = matches[0]
        now = self._now()
        spans = local_days(now, days) if days else []
        return self._commune(self._facts(p, c), p, c, now, days=spans)

    def _commune(
        self,
        facts: _Facts,
        province: str,
        slug: str,
        now: float,
        *,
        detail: bool = True,
        days: list[tuple[float, float]] | None = None,
        history: History | None = None,
    ) -> CommuneHealth:
        """``history``: the commune's figures from its outages, when already known (the
        live model's); else computed from ``facts.outages``."""
        info = self._commune_info(province, slug)
        agents = facts.agents.get((province, slug), [])
        online = {a.agent_key for a in agents if a.state == "online"}
        subjects = facts.subjects.get((province, slug), [])
        links = [s for s in subjects if s.kind == "link"]
        polycoms = [s for s in subjects if s.kind == "polycom"]
        if history is None:
            history = self.history(
                links,
                polycoms,
                facts.outages,
                now,
                detail=detail,
                days=days or [],
                horizon=facts.horizon,
                combined=None
                if facts.lines is None
                else facts.lines.get((province, slug), ([], 0.0)),
            )
        antimalware = self._antimalware(
            info, facts.latest.get((province, slug, "antivirus"), []), online
        )
        line, link_targets = self._line(
            links, facts.latest.get((province, slug, "link"), []), online, history, now
        )
        polycom = self._polycom(
            info, facts.latest.get((province, slug, "polycom"), []), polycoms, history
        )
        interfaces = self._interfaces(
            facts.latest.get((province, slug, "snmp"), []), facts.ports, frozenset(info.uplinks)
        )
        reasons = _reasons(info, agents, online, antimalware, line, polycom, interfaces)
        status: Status = "no_data" if not agents else "ok"
        for reason in reasons:
            if _SEVERITY[reason.severity] > _SEVERITY[status]:
                status = reason.severity
        return CommuneHealth(
            province=province,
            slug=slug,
            name=info.name,
            code=info.code,
            status=status,
            reasons=reasons,
            agents=len(agents),
            agents_online=len(online),
            antimalware=antimalware,
            line=line,
            polycom=polycom,
            interfaces=interfaces,
            links=link_targets,
        )

    @staticmethod
    def _antimalware(
        info: Commune,
        samples: list[LatestSample],
        online: set[str],
    ) -> AntiMalware:
        """Over the PCs with an anti-malware report; an agent without one (an SNMP
        poller box, say) is not a PC of the count."""
        verdicts = {
            s.agent_key: ANTIVIRUS.text(s.fields, "verdict") or "unknown"
            for s in samples
            if not s.item
        }
        counts: dict[str, int] = defaultdict(int)
        for key, verdict in verdicts.items():
            counts[verdict if key in online else "silent"] += 1
        reporting = sum(n for v, n in counts.items() if v != "silent")
        unknown = counts["unknown"] + counts["silent"]
        known = len(verdicts)
        expected = info.pcs
        denominator = expected if expected is not None else known
        return AntiMalware(
            expected=expected,
            reporting=reporting,
            protected=counts["protected"],
            signatures_too_old=counts["outdated"],
            unprotected=counts["unprotected"] + counts["none"],
            unknown=unknown,
            not_reporting=max(0, expected - known) if expected is not None else None,
            percent_protected=(100.0 * counts["protected"] / denominator if denominator else None),
            denominator=denominator,
            denominator_of="expected" if expected is not None else "known",
        )

    def _windows(
        self, outages: list[Outage], since: float, now: float, horizon: float
    ) -> Availabilities:
        values = {
            name: availability(outages, now - span, now, since, now).percent
            if span <= horizon
            else None
            for name, span in WINDOWS.items()
        }
        return Availabilities(values["24h"], values["7d"], values["30d"])

    def history(
        self,
        links: list[Subject],
        polycoms: list[Subject],
        outages_by_subject: dict[int, list[Outage]],
        now: float,
        *,
        detail: bool = True,
        days: list[tuple[float, float]] | None = None,
        horizon: float = 30 * DAY,
        combined: tuple[list[Outage], float] | None = None,
    ) -> History:
        """A commune's figures from its probes' and Polycoms' outages. ``combined``: the
        line already combined (the overview's cache)."""
        start = now - max(WINDOWS.values())
        tslcd = [
            (outages_by_subject.get(s.id, []), s.monitored_since)
            for s in links
            if s.network == "tslcd" and s.last_ts >= start
        ]
        combined_outages, since = all_down(tslcd) if combined is None else combined
        return History(
            probes=(
                {
                    s.id: self._windows(
                        outages_by_subject.get(s.id, []), s.monitored_since, now, horizon
                    )
                    for s in links
                }
                if detail
                else {}
            ),
            line_monitored=bool(tslcd),
            line=(
                self._windows(combined_outages, since, now, horizon)
                if tslcd
                else Availabilities(None, None, None)
            ),
            line_open_since=next((o.start for o in combined_outages if o.end is None), None),
            days=[
                Day(
                    lo,
                    availability(combined_outages, lo, hi, since, now).percent if tslcd else None,
                )
                for lo, hi in days or []
            ],
            ready_24h={
                s.id: availability(
                    outages_by_subject.get(s.id, []), now - DAY, now, s.monitored_since, now
                ).percent
                for s in polycoms
            },
        )

    def _line(
        self,
        subjects: list[Subject],
        samples: list[LatestSample],
        online: set[str],
        history: History,
        now: float,
    ) -> tuple[Line, list[LineTarget]]:
        """The line, and the commune's other link probes."""
        start = now - max(WINDOWS.values())
        latest = {(s.agent_key, s.name): s for s in samples if not s.item}
        targets: list[LineTarget] = []
        links: list[LineTarget] = []
        up_now: list[bool] = []
        best_rtt: float | None = None
        best_loss: float | None = None
        for subject in subjects:
            running = subject.agent_key in online
            up = subject.state == "up" if running else None
            probe = self._target(
                subject,
                latest.get((subject.agent_key, subject.name)),
                up,
                history.probes.get(subject.id, NOT_COMPUTED),
            )
            rtt, loss = probe.rtt_ms, probe.loss_percent
            (targets if subject.network == "tslcd" else links).append(probe)
            if subject.network != "tslcd" or subject.last_ts < start:
                continue
            if up is not None:
                up_now.append(up)
            if up:
                best_rtt = (
                    rtt if best_rtt is None or (rtt is not None and rtt < best_rtt) else best_rtt
                )
                best_loss = (
                    loss
                    if best_loss is None or (loss is not None and loss < best_loss)
                    else best_loss
                )
        line_up = any(up_now) if up_now else None
        line = Line(
            monitored=history.line_monitored,
            up=line_up,
            down_since=history.line_open_since if line_up is False else None,
            availability=history.line,
            rtt_ms=best_rtt,
            loss_percent=best_loss,
            targets=targets,
            days=history.days,
        )
        return line, links

    def _target(
        self,
        subject: Subject,
        sample: LatestSample | None,
        up: bool | None,
        availability: Availabilities,
    ) -> LineTarget:
        """One probe of a link, with its latest RTT and loss."""
        return LineTarget(
            agent=subject.agent_key.rsplit("/", 1)[1],
            name=subject.name,
            target=subject.target,
            network=subject.network,
            up=up,
            since=subject.since,
            rtt_ms=LINK.number(sample.fields, "rtt_ms") if sample else None,
            loss_percent=LINK.number(sample.fields, "loss_percent") if sample else None,
            availability=availability,
        )

    def _polycom(
        self,
        info: Commune,
        samples: list[LatestSample],
        subjects: list[Subject],
        history: History,
    ) -> Polycom:
        ready_history = {(s.agent_key, s.name, s.target): s for s in subjects}
        devices: list[PolycomDevice] = []
        for sample in samples:
            if sample.item:
                continue
            fields = sample.fields
            subject = ready_history.get((sample.agent_key, sample.name, sample.target))
            devices.append(
                PolycomDevice(
                    agent=sample.agent_key.rsplit("/", 1)[1],
                    name=sample.name,
                    target=sample.target,
                    reachable=bool(POLYCOM.number(fields, "up")),
                    registered=POLYCOM.flag(fields, "registered"),
                    in_call=POLYCOM.flag(fields, "in_call"),
                    ready=POLYCOM.flag(fields, "ready"),
                    camera_ok=POLYCOM.flag(fields, "camera_ok"),
                    microphone_ok=POLYCOM.flag(fields, "microphone_ok"),
                    model=POLYCOM.text(fields, "model"),
                    ts=sample.ts,
                    ready_24h=history.ready_24h.get(subject.id) if subject is not None else None,
                )
            )
        return Polycom(
            expected=info.polycoms,
            reporting=len(devices),
            reachable=sum(d.reachable for d in devices),
            registered=sum(d.registered is True for d in devices),
            in_call=sum(d.in_call is True for d in devices),
            ready=sum(d.ready is True for d in devices),
            devices=devices,
        )

    @staticmethod
    def _interfaces(
        samples: list[LatestSample],
        ports: dict[tuple[str, str, str], Port],
        uplinks: frozenset[str],
    ) -> Interfaces:
        devices = [s for s in samples if not s.item]
        interfaces: list[Interface] = []
        for s in samples:
            if s.item != "interface":
                continue
            port = ports.get((s.agent_key, s.name, s.target))
            admin = SNMP_INTERFACE.number(s.fields, "admin_status")
            interfaces.append(
                Interface(
                    device=s.name,
                    agent=s.agent_key.rsplit("/", 1)[1],
                    name=s.target,
                    up=SNMP_INTERFACE.flag(s.fields, "oper_up"),
                    oper_state=SNMP_INTERFACE.text(s.fields, "oper_state"),
                    admin_up=None if admin is None else admin == 1,
                    alias=SNMP_INTERFACE.text(s.fields, "alias"),
                    speed_bps=SNMP_INTERFACE.number(s.fields, "speed_bps"),
                    in_bps=SNMP_INTERFACE.number(s.fields, "in_bps"),
                    out_bps=SNMP_INTERFACE.number(s.fields, "out_bps"),
                    in_errors_ps=SNMP_INTERFACE.number(s.fields, "in_errors_ps"),
                    out_errors_ps=SNMP_INTERFACE.number(s.fields, "out_errors_ps"),
                    since=port.since if port else None,
                    seen_up=port is not None and port.first_up is not None,
                    uplink=is_uplink(uplinks, s.name, s.target),
                )
            )
        interfaces.sort(key=lambda i: (i.device, natural_key(i.name)))
        down = [i for i in interfaces if i.problem]
        return Interfaces(
            devices=len(devices),
            devices_unreachable=sum(1 for d in devices if not SNMP.number(d.fields, "up")),
            up=sum(1 for i in interfaces if i.up is True),
            down=sum(1 for i in down if not i.uplink),
            down_list=down,
            all=interfaces,
            uplinks_down=sum(1 for i in down if i.uplink),
            unused=sum(
                1 for i in interfaces if i.up is False and i.admin_up is True and not i.problem
            ),
        )

    # the province -------------------------------------------------------------------

    def province(self, province: str) -> ProvinceHealth:
        return self.totals(province, self.communes(province))

    def totals(self, province: str, communes: list[CommuneHealth]) -> ProvinceHealth:
        """The province's figures from its communes' (already computed)."""
        inventory = self.inventories.get(province, EMPTY)
        by_status: dict[str, int] = {s: 0 for s in _SEVERITY}
        for commune in communes:
            by_status[commune.status] += 1
        lines = [c.line for c in communes if c.line.monitored]
        protected = sum(c.antimalware.protected for c in communes)
        # Each commune counts its expected PCs, or the PCs it knows when the
        # inventory does not say.
        denominator = sum(c.antimalware.denominator for c in communes)
        # Of the communes that count any PC: one expecting none and knowing none adds
        # nothing to the figure, so it says nothing of what the figure is of.
        given = {c.antimalware.denominator_of for c in communes if c.antimalware.denominator}
        return ProvinceHealth(
            province=province,
            name=inventory.name or province,
            generated_at=self._now(),
            communes=len(communes),
            communes_by_status=by_status,
            pcs_expected=_sum_given(c.antimalware.expected for c in communes),
            pcs_reporting=sum(c.antimalware.reporting for c in communes),
            pcs_protected=protected,
            percent_protected=100.0 * protected / denominator if denominator else None,
            lines_monitored=len(lines),
            lines_up=sum(1 for line in lines if line.up is True),
            lines_down=sum(1 for line in lines if line.up is False),
            availability_24h=_mean(line.availability.last_24h for line in lines),
            availability_7d=_mean(line.availability.last_7d for line in lines),
            availability_30d=_mean(line.availability.last_30d for line in lines),
            polycoms_expected=_sum_given(c.polycom.expected for c in communes),
            polycoms_reporting=sum(c.polycom.reporting for c in communes),
            polycoms_ready=sum(c.polycom.ready for c in communes),
            pcs_denominator=denominator,
            percent_protected_of="mixed" if len(given) > 1 else given.pop() if given else "known",
        )

    def provinces(self) -> list[str]:
        return sorted({p for p, _ in self.places()} | set(self.inventories))


def _reasons(
    info: Commune,
    agents: list[AgentState],
    online: set[str],
    antimalware: AntiMalware,
    line: Line,
    polycom: Polycom,
    interfaces: Interfaces,
) -> list[Reason]:
    reasons: list[Reason] = []

    def add(code: str, severity: Status, detail: str, count: int | None = None) -> None:
        reasons.append(Reason(code, severity, detail, count))

    if not agents:
        add("no_data", "no_data", "no agent of this commune has reported")
        return reasons
    if not online:
        add("unreachable", "critical", f"all {len(agents)} agents silent", len(agents))
    elif len(online) < len(agents):
        add(
            "agents_offline",
            "warning",
            f"{len(agents) - len(online)} of {len(agents)} agents offline",
            len(agents) - len(online),
        )
    if line.up is False:
        add("line_down", "critical", "dedicated line (TSLCD) down")
    elif line.monitored and line.up is None and online:
        add("line_unknown", "warning", "no running agent probes the dedicated line")
    elif not line.monitored:
        add("line_not_monitored", "warning", "no probe of the dedicated line (TSLCD)")
    if antimalware.unprotected:
        add(
            "unprotected",
            "critical",
            f"{antimalware.unprotected} PCs without working anti-malware",
            antimalware.unprotected,
        )
    if antimalware.signatures_too_old:
        add(
            "signatures_too_old",
            "warning",
            f"{antimalware.signatures_too_old} PCs with old signatures",
            antimalware.signatures_too_old,
        )
    if antimalware.not_reporting:
        add(
            "pcs_missing",
            "warning",
            f"{antimalware.not_reporting} of {antimalware.expected} expected PCs never reported",
            antimalware.not_reporting,
        )
    expected_polycoms = info.polycoms or 0
    if polycom.reporting == 0 and expected_polycoms:
        add("polycom_not_monitored", "warning", "the Polycom is not polled by any agent")
    for device in polycom.devices:
        if not device.reachable:
            add("polycom_unreachable", "critical", f"Polycom {device.name} unreachable")
        elif device.ready is False:
            add("polycom_not_ready", "warning", f"Polycom {device.name} not ready for a meeting")
    if interfaces.devices_unreachable:
        add(
            "device_unreachable",
            "critical",
            f"{interfaces.devices_unreachable} router/switch not answering SNMP",
            interfaces.devices_unreachable,
        )
    if interfaces.uplinks_down:
        names = ", ".join(f"{i.device}:{i.name}" for i in interfaces.down_list if i.uplink)
        add(
            "uplink_down",
            "critical",
            f"{interfaces.uplinks_down} uplinks down ({names[:200]})",
            interfaces.uplinks_down,
        )
    if interfaces.down:
        names = ", ".join(f"{i.device}:{i.name}" for i in interfaces.down_list if not i.uplink)
        names = ", ".join(names.split(", ")[:5])
        add(
            "interface_down",
            "warning",
            f"{interfaces.down} interfaces down ({names})",
            interfaces.down,
        )
    return reasons


def local_days(now: float, count: int) -> list[tuple[float, float]]:
    """The last ``count`` local days, today included (up to now), as [start, end)."""
    today = local(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return [
        (today - (count - 1 - i) * DAY, min(today - (count - 2 - i) * DAY, now))
        for i in range(count)
    ]


def _sum_given(values: Iterable[int | None]) -> int | None:
    """The sum of the counts the inventory gives; None when it gives none."""
    given = [v for v in values if v is not None]
    return sum(given) if given else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
