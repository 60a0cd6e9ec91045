"""Building the monthly figures, exactly, from the recorded intervals.

For a month in local time (+07:00), per commune and for the province:

- anti-malware: PCs expected (inventory) and reporting (observed in the month);
  % protected and % with old signatures are shares of the observed PC-time
  (each PC's state holds from one report to the next);
- dedicated data network (TSLCD): availability of the commune's line (down
  only while every probe of it says so), total downtime, number of outages;
- online conferencing: Polycoms expected and reporting, % of the time ready;
- alerts started in the month, by kind, and the mean time to acknowledge;
- the province's shared systems (when it has a catalogue of them): each one's
  availability seen from the communes, its response times and incidents
  (state.systemhealth's figures).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from collector.common.localtime import VIETNAM
from collector.state import maintenance
from collector.state.availability import Outage, all_down, availability
from collector.state.inventory import Inventory
from collector.state.maintenance import Span, Window, spans
from collector.state.store import StateStore, Subject
from collector.state.systemhealth import SystemPeriod, SystemsModel
from collector.state.systems import Catalogue


@dataclass
class CommuneMonth:
    slug: str
    name: str
    code: str
    pcs_expected: int | None
    pcs_reporting: int
    protected_percent: float | None
    old_signatures_percent: float | None
    line_availability: float | None
    line_downtime_s: float
    line_outages: int
    polycoms_expected: int | None
    polycoms_reporting: int
    polycom_ready_percent: float | None
    alerts: int
    alerts_acked: int
    mean_ack_minutes: float | None
    pc_observed_s: float = 0.0
    """PC-time observed, protected, with old signatures: what the shares are of."""
    pc_protected_s: float = 0.0
    pc_old_signatures_s: float = 0.0
    polycom_observed_s: float = 0.0
    polycom_ready_s: float = 0.0
    line_availability_excl_maintenance: float | None = None
    """The line's availability with the maintenance windows left out (Zabbix's SLA
    with excluded downtime); ``line_availability`` counts every hour."""
    line_maintenance_s: float = 0.0
    """Maintenance time of the line in the month (windows merged, counted once)."""
    line_downtime_excl_maintenance_s: float = 0.0
    polycom_ready_percent_excl_maintenance: float | None = None
    polycom_maintenance_s: float = 0.0
    """Maintenance time of the Polycoms (summed over them, like their observed time)."""
    polycom_observed_excl_s: float = 0.0
    polycom_ready_excl_s: float = 0.0
    pcs_protected_at_end: int = 0
    """PCs whose last state in the month was protected (the "4.934/5.000 máy")."""
    pcs_old_signatures_at_end: int = 0
    polycoms_ready_at_end: int = 0
    """Polycoms whose last state in the month was ready for a meeting."""
    communes_ready: int = 0
    """Communes whose every Polycom was last ready (1 or 0 for a commune)."""
    communes_with_polycom: int = 0
    """Communes expected to have a Polycom (the inventory), or with one reporting."""
    communes_line_monitored: int = 0


@dataclass
class AlertKind:
    rule: str
    count: int
    acked: int
    mean_ack_minutes: float | None


@dataclass
class MonthlyReport:
    province: str
    province_name: str
    month: str
    start: float
    end: float
    generated_at: float
    communes: list[CommuneMonth]
    total: CommuneMonth
    alert_kinds: list[AlertKind]
    maintenance: list[Window] = field(default_factory=list)
    """The maintenance windows with time in the month."""
    systems: list[SystemPeriod] = field(default_factory=list)
    """The shared systems over the month, in the catalogue's order then the communes'
    websites; none for a province without a catalogue (the report has no such section)."""

    @property
    def has_data(self) -> bool:
        """Whether anything was monitored in the month at all."""
        t = self.total
        return bool(t.pcs_reporting or t.line_availability is not None or t.polycoms_reporting)


def month_bounds(month: str) -> tuple[float, float]:
    """[first day 00:00, next month's first day 00:00) in Vietnam's time, as Unix seconds."""
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"expected a month like 2025-10, got {month!r}")
    year, number = int(month[:4]), int(month[5:])
    if not 1 <= number <= 12:
        raise ValueError(f"no month {number} in {month!r}")
    start = dt.datetime(year, number, 1, tzinfo=VIETNAM)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=VIETNAM)
    return start.timestamp(), end.timestamp()


@dataclass
class _Time:
    observed: float = 0.0
    down: float = 0.0
    count: int = 0
    """Subjects observed at all in the window."""
    excluded: float = 0.0
    """Maintenance time within the observed time (counted in ``observed``)."""
    excluded_down: float = 0.0
    """Down time within the maintenance (counted in ``down``)."""

    def add(
        self,
        outages: list[Outage],
        start: float,
        end: float,
        since: float,
        now: float,
        excluded: Sequence[Span] = (),
    ) -> None:
        result = availability(outages, start, end, since, now, excluded)
        if result.observed_s + result.excluded_s > 0:
            self.observed += result.observed_s + result.excluded_s
            self.down += result.down_s + result.excluded_down_s
            self.excluded += result.excluded_s
            self.excluded_down += result.excluded_down_s
            self.count += 1

    def up_percent(self) -> float | None:
        return 100.0 * (self.observed - self.down) / self.observed if self.observed else None

    def up_percent_excl(self) -> float | None:
        observed = self.observed - self.excluded
        down = self.down - self.excluded_down
        return 100.0 * (observed - down) / observed if observed > 0 else None

    def down_percent(self) -> float | None:
        return 100.0 * self.down / self.observed if self.observed else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build(
    store: StateStore,
    province: str,
    month: str,
    inventory: Inventory | None = None,
    now: float | None = None,
    only: Collection[str] | None = None,
    catalogue: Catalogue | None = None,
) -> MonthlyReport:
    """``only``: these communes of the province (a token scoped to them): each listed as
    in the province's report, the totals theirs, the windows that reach them.
    ``catalogue``: the province's shared systems ([collector] systems), whose figures
    over the month the report gives (within ``only`` too)."""
    start, end = month_bounds(month)
    now = time.time() if now is None else now
    # A month not over yet ends now; one not begun is empty (never an inverted window).
    until = max(start, min(end, now))
    place = f"{province}/"
    outages = store.outages_under(place, start, end)

    def mine(slug: str) -> bool:
        return only is None or slug in only

    subjects: dict[str, list[Subject]] = defaultdict(list)
    for subject in store.subjects(place=place):
        if mine(subject.agent_key.split("/")[1]):
            subjects[subject.agent_key.split("/")[1]].append(subject)
    lines = {slug: _line(found, outages) for slug, found in subjects.items()}
    shared = _systems(
        store, province, inventory, catalogue, (start, until, now), only, outages,
        _line_spans(lines, start, min(until, now)),
    )  # fmt: skip
    windows = [
        w
        for w in maintenance.windows(store, province, start, min(end, now))
        if not w.commune or mine(w.commune)
    ]
    alerts = {c: rows for c, rows in _alerts(store, province, start, end).items() if mine(c)}
    listed = [c.slug for c in inventory.communes if mine(c.slug)] if inventory else []
    # An alert about a shared system as a whole has no commune: in the totals, no row.
    seen = sorted((set(subjects) | set(alerts)) - set(listed) - {""})
    communes = []
    for slug in listed + [s for s in seen if s not in listed]:
        info = inventory.commune(slug) if inventory else None
        communes.append(
            _commune(
                slug,
                info.name if info else slug,
                info.code if info else "",
                info.pcs if info else None,
                info.polycoms if info else None,
                subjects.get(slug, []),
                lines.get(slug),
                outages,
                alerts.get(slug, []),
                (start, end, now),
                [w for w in windows if w.commune in ("", slug)],
            )
        )
    return MonthlyReport(
        province=province,
        province_name=(inventory.name if inventory and inventory.name else province),
        month=month,
        start=start,
        end=min(end, now),
        generated_at=now,
        communes=communes,
        total=_total(communes, [a for rows in alerts.values() for a in rows]),
        alert_kinds=_kinds([a for rows in alerts.values() for a in rows]),
        maintenance=windows,
        systems=shared,
    )


def each_province(
    store: StateStore,
    month: str,
    inventories: Iterable[Inventory],
    catalogues: Mapping[str, Catalogue],
    now: float,
) -> Iterator[MonthlyReport]:
    """Every inventory's province's report in turn (a national collector's), the same as
    ``build`` makes each, at one ``now``. One report is held at a time: the country's
    3,321 communes and their month of outages never are in memory at once."""
    for inventory in inventories:
        report = build(
            store, inventory.province, month, inventory, now=now,
            catalogue=catalogues.get(inventory.province),
        )  # fmt: skip
        yield report
        del report  # not kept while the next province's is built


def _systems(
    store: StateStore,
    province: str,
    inventory: Inventory | None,
    catalogue: Catalogue | None,
    window: tuple[float, float, float],
    only: Collection[str] | None,
    outages: dict[int, list[Outage]],
    lines: dict[tuple[str, str], list[tuple[float, float]]],
) -> list[SystemPeriod]:
    """The shared systems' figures over [start, end), seen at ``now`` like the rest;
    ``outages``: the province's over the month, read once for the whole report;
    ``lines``: the communes' dedicated lines, combined once too."""
    if catalogue is None or catalogue.province != province:
        return []
    start, end, now = window
    model = SystemsModel(
        store,
        [inventory] if inventory else [],
        lambda: {province: catalogue},
        clock=lambda: now,
    )
    return model.period(province, start, end, only, outages, lines)


def _alerts(
    store: StateStore, province: str, start: float, end: float
) -> dict[str, list[tuple[str, float, float | None]]]:
    """(rule, fired at, acknowledged at) of the alerts that started in the month, by commune."""
    by_commune: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
    with store.reading() as db:
        rows = db.execute(
            """SELECT commune, rule, fired_at, acked_at FROM alerts
               WHERE province = ? AND started_at >= ? AND started_at < ? ORDER BY id""",
            (province, start, end),
        ).fetchall()
    for commune, rule, fired, acked in rows:
        by_commune[str(commune)].append((str(rule), float(fired), acked))
    return by_commune


@dataclass(frozen=True)
class _Line:
    """A commune's dedicated line: its probes, and down only while every one says so."""

    probes: list[Subject]
    down: list[Outage]
    since: float


def _line(subjects: list[Subject], outages: dict[int, list[Outage]]) -> _Line | None:
    probes = [s for s in subjects if s.kind == "link" and s.network == "tslcd"]
    if not probes:
        return None
    down, since = all_down([(outages.get(s.id, []), s.monitored_since) for s in probes])
    return _Line(probes, down, since)


def _line_spans(
    lines: dict[str, _Line | None], start: float, end: float
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The lines as the shared systems' figures over [start, end) take them (an outage
    still open lasts to ``end``): of the communes whose every probe spoke in the window,
    the probes those figures combine (for the others they work it out themselves)."""
    return {
        (slug, "tslcd"): [(o.start, end if o.end is None else o.end) for o in line.down]
        for slug, line in lines.items()
        if line is not None and all(p.last_ts >= start for p in line.probes)
    }


def _ack_minutes(alerts: list[tuple[str, float, float | None]]) -> list[float]:
    return [(acked - fired) / 60.0 for _, fired, acked in alerts if acked is not None]


def _commune(
    slug: str,
    name: str,
    code: str,
    pcs_expected: int | None,
    polycoms_expected: int | None,
    subjects: list[Subject],
    tslcd: _Line | None,
    outages: dict[int, list[Outage]],
    alerts: list[tuple[str, float, float | None]],
    window: tuple[float, float, float],
    windows: list[Window],
) -> CommuneMonth:
    start, end, now = window
    protection, signatures, polycom = _Time(), _Time(), _Time()
    at_end: dict[str, int] = defaultdict(int)
    for subject in subjects:
        history = outages.get(subject.id, [])
        if subject.monitored_since < min(end, now) and subject.last_ts >= start:
            at_end[f"{subject.kind}_{_last_state(subject, history, end, now)}"] += 1
        if subject.kind == "protection":
            protection.add(history, start, end, subject.monitored_since, now)
        elif subject.kind == "signatures":
            signatures.add(history, start, end, subject.monitored_since, now)
        elif subject.kind == "polycom":
            agent = subject.agent_key.rsplit("/", 1)[1]
            device = maintenance.Device(agent, "polycom", subject.name)
            own = [w for w in windows if w.agent in ("", agent)
                   and maintenance.device_covered(w.device, device)]  # fmt: skip
            polycom.add(history, start, end, subject.monitored_since, now, spans(own, start, end))
    line = None
    if tslcd is not None:
        # The line is the commune's, whichever PC probes it: windows of the commune, or
        # of its device (tslcd, or a probe's name).
        own = maintenance.line_windows(windows, {s.name for s in tslcd.probes})
        line = availability(tslcd.down, start, end, tslcd.since, now, spans(own, start, end))
    acks = _ack_minutes(alerts)
    return CommuneMonth(
        slug=slug,
        name=name,
        code=code,
        pcs_expected=pcs_expected,
        pcs_reporting=protection.count,
        protected_percent=protection.up_percent(),
        old_signatures_percent=signatures.down_percent(),
        line_availability=line.percent_with_maintenance if line else None,
        line_downtime_s=(line.down_s + line.excluded_down_s) if line else 0.0,
        line_outages=line.outages if line else 0,
        polycoms_expected=polycoms_expected,
        polycoms_reporting=polycom.count,
        polycom_ready_percent=polycom.up_percent(),
        alerts=len(alerts),
        alerts_acked=len(acks),
        mean_ack_minutes=_mean(acks),
        pc_observed_s=protection.observed,
        pc_protected_s=protection.observed - protection.down,
        pc_old_signatures_s=signatures.down,
        polycom_observed_s=polycom.observed,
        polycom_ready_s=polycom.observed - polycom.down,
        line_availability_excl_maintenance=line.percent if line else None,
        line_maintenance_s=line.excluded_s if line else 0.0,
        line_downtime_excl_maintenance_s=line.down_s if line else 0.0,
        polycom_ready_percent_excl_maintenance=polycom.up_percent_excl(),
        polycom_maintenance_s=polycom.excluded,
        polycom_observed_excl_s=polycom.observed - polycom.excluded,
        polycom_ready_excl_s=(polycom.observed - polycom.excluded)
        - (polycom.down - polycom.excluded_down),
        pcs_protected_at_end=at_end["protection_up"],
        pcs_old_signatures_at_end=at_end["signatures_down"],
        polycoms_ready_at_end=at_end["polycom_up"],
        communes_ready=int(
            polycom.count > 0
            and at_end["polycom_up"] >= max(polycoms_expected or 0, 1)
            and at_end["polycom_down"] == 0
        ),
        communes_with_polycom=int(bool(polycoms_expected) or polycom.count > 0),
        communes_line_monitored=int(line is not None and line.observed_s + line.excluded_s > 0),
    )


def _last_state(subject: Subject, history: list[Outage], end: float, now: float) -> str:
    """up or down at the last moment the subject was watched in the window."""
    moment = min(end, now, subject.last_ts)
    down = any(o.start <= moment and (o.end is None or o.end > moment) for o in history)
    return "down" if down else "up"


def _share(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _total(
    communes: list[CommuneMonth], alerts: list[tuple[str, float, float | None]]
) -> CommuneMonth:
    """The province: sums, shares of the summed PC-time and Polycom-time, and the line's
    availability as the mean over the communes whose line is monitored."""
    expected = [c.pcs_expected for c in communes if c.pcs_expected is not None]
    polycoms = [c.polycoms_expected for c in communes if c.polycoms_expected is not None]
    acks = _ack_minutes(alerts)
    return CommuneMonth(
        slug="",
        name="",
        code="",
        pcs_expected=sum(expected) if expected else None,
        pcs_reporting=sum(c.pcs_reporting for c in communes),
        protected_percent=_share(
            sum(c.pc_protected_s for c in communes), sum(c.pc_observed_s for c in communes)
        ),
        old_signatures_percent=_share(
            sum(c.pc_old_signatures_s for c in communes), sum(c.pc_observed_s for c in communes)
        ),
        line_availability=_mean(
            [c.line_availability for c in communes if c.line_availability is not None]
        ),
        line_downtime_s=sum(c.line_downtime_s for c in communes),
        line_outages=sum(c.line_outages for c in communes),
        polycoms_expected=sum(polycoms) if polycoms else None,
        polycoms_reporting=sum(c.polycoms_reporting for c in communes),
        polycom_ready_percent=_share(
            sum(c.polycom_ready_s for c in communes), sum(c.polycom_observed_s for c in communes)
        ),
        alerts=len(alerts),
        alerts_acked=len(acks),
        mean_ack_minutes=_mean(acks),
        pc_observed_s=sum(c.pc_observed_s for c in communes),
        pc_protected_s=sum(c.pc_protected_s for c in communes),
        pc_old_signatures_s=sum(c.pc_old_signatures_s for c in communes),
        polycom_observed_s=sum(c.polycom_observed_s for c in communes),
        polycom_ready_s=sum(c.polycom_ready_s for c in communes),
        line_availability_excl_maintenance=_mean(
            [
                c.line_availability_excl_maintenance
                for c in communes
                if c.line_availability_excl_maintenance is not None
            ]
        ),
        line_maintenance_s=sum(c.line_maintenance_s for c in communes),
        line_downtime_excl_maintenance_s=sum(c.line_downtime_excl_maintenance_s for c in communes),
        polycom_ready_percent_excl_maintenance=_share(
            sum(c.polycom_ready_excl_s for c in communes),
            sum(c.polycom_observed_excl_s for c in communes),
        ),
        polycom_maintenance_s=sum(c.polycom_maintenance_s for c in communes),
        polycom_observed_excl_s=sum(c.polycom_observed_excl_s for c in communes),
        polycom_ready_excl_s=sum(c.polycom_ready_excl_s for c in communes),
        pcs_protected_at_end=sum(c.pcs_protected_at_end for c in communes),
        pcs_old_signatures_at_end=sum(c.pcs_old_signatures_at_end for c in communes),
        polycoms_ready_at_end=sum(c.polycoms_ready_at_end for c in communes),
        communes_ready=sum(c.communes_ready for c in communes),
        communes_with_polycom=sum(c.communes_with_polycom for c in communes),
        communes_line_monitored=sum(c.communes_line_monitored for c in communes),
    )


def _kinds(alerts: list[tuple[str, float, float | None]]) -> list[AlertKind]:
    by_rule: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
    for alert in alerts:
        by_rule[alert[0]].append(alert)
    return [
        AlertKind(rule, len(rows), len(_ack_minutes(rows)), _mean(_ack_minutes(rows)))
        for rule, rows in sorted(by_rule.items(), key=lambda item: (-len(item[1]), item[0]))
    ]
