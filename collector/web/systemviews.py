"""The shared systems' health as a caller sees it: the views of ``state/systemhealth.py``
the API answers and the console shows, narrowed to the caller's scope.

A caller holding only some communes of a province gets those communes' rows and
figures computed over them alone, and a system none of them uses is no system to
them. Every commune that cannot use a system is named with the reason, so that the
commune's own line (``line_down``: the line's alert already says so) is told from the
system (``unreachable``, ``bad_response``: its owner's problem when many communes see
it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, cast

from pydantic import ConfigDict, with_config

from collector.state.systemhealth import (
    CANNOT_REACH,
    Figures,
    Reach,
    ReachState,
    SystemHealth,
    Verdict,
)
from collector.state.systems import WEBSITE
from collector.web.auth import ApiContext
from collector.web.scope import Scope

#: The views' attribute docstrings are their fields' descriptions in the OpenAPI schema:
#: what a reason or a figure means is what the IOC's integrator reads there.
described = with_config(ConfigDict(use_attribute_docstrings=True))

#: The states in which a commune can use a system (fast or slow).
USABLE: tuple[ReachState, ...] = ("ok", "slow")


def _held(scope: Scope, province: str) -> Collection[str] | None:
    """The communes of ``province`` the figures are computed over (None: all of them)."""
    return None if scope.holds(province) else scope.communes


Cause = Literal["line_down", "unreachable", "bad_response"]


@described
@dataclass
class CannotReach:
    """A commune that cannot use the system now, and why."""

    commune: str
    name: str
    """The commune's official name."""
    reason: Cause
    """``line_down``: the commune's own line is down (its line alert says so, not the
    system's); ``unreachable``: the line is up and the system does not answer;
    ``bad_response``: it answers wrongly (an error, a login page where the page should
    be, a certificate not valid)."""
    since: float | None
    """When the commune's prober last saw it change between answering and not."""
    error: str
    """What the probe said."""


@described
@dataclass
class IncidentView:
    """An alert of the system (unreachable, slow, its certificate) in the window."""

    alert_id: int
    rule: str
    severity: str
    started_at: float
    ended_at: float | None
    """None while it still fires."""
    value: str
    commune: str
    """The commune it is about ("" for the system as a whole)."""


@described
@dataclass
class WindowFigures:
    """The system over a window, across the communes that probe it (the token's)."""

    start: float
    end: float
    availability_percent: float | None
    """Of the watched time, the share it answered well: the time a commune's own line
    was down and the maintenance windows are left out (shown apart below); None when
    nobody watched: no data is not 100 %."""
    availability_with_maintenance_percent: float | None
    """The same with the maintenance windows counted like any other time."""
    observed_s: float
    """Commune-seconds watched, less the time left out."""
    down_s: float
    """Commune-seconds it could not be used, the commune's line up."""
    line_excluded_s: float
    """Commune-seconds left out because the commune's own line was down."""
    maintenance_s: float
    """Commune-seconds left out by maintenance windows."""
    unwatched_s: float
    """Commune-seconds nobody watched (the probing PC off or silent): in no figure."""
    p50_ms: float | None
    """The median response time of its healthy answers."""
    p95_ms: float | None
    answers: int
    """The healthy answers the response times are of."""
    communes: int
    """The communes that probed it in the window."""
    incidents: list[IncidentView]


@described
@dataclass
class SystemHealthView:
    """A shared system now and over the last 24 hours and 30 days, across the communes
    that use it (of the token's)."""

    id: str
    """The catalogue's id ("website": every commune's own site together)."""
    name: str
    kind: str
    target: str
    """The URL or host:port ("" for the websites: each commune has its own)."""
    network: str
    owner: str
    verdict: Verdict
    """ok; down: most communes whose line is up cannot reach it (the system's problem);
    slow: slow from most; local: some communes cannot reach it or find it slow while
    most can (their own problem); no_data: nobody probes it."""
    status: Literal["ok", "warning", "critical", "no_data"]
    """The verdict as a colour: critical when down (or its certificate has ended),
    warning when slow, local or its certificate ends within ``cert_min_days``."""
    communes: int
    """The communes that use it (of the token's)."""
    probing: int
    """The communes whose prober is running and has answered for it."""
    reaching: int
    """Of those, the communes it answers well (fast or slow)."""
    cannot_reach: list[CannotReach]
    """The communes that cannot use it now, each with why."""
    slow: list[str]
    """The communes it answers slower than the catalogue's ``slow_ms``."""
    silent: list[str]
    """The communes whose prober is not running: nothing known of the system there."""
    cert_days: float | None
    """The fewest days left on its certificate any commune saw (HTTPS)."""
    cert_min_days: int
    """A certificate closer than this to its end is an alert."""
    slow_ms: float
    """A healthy answer slower than this is slow."""
    median_ms: float | None
    """The median of the communes' latest response times."""
    last_24h: WindowFigures | None
    last_30d: WindowFigures | None


@described
@dataclass
class SystemsHealth:
    """Every shared system of a province."""

    province: str
    systems: list[SystemHealthView]
    """In the catalogue's order, then the communes' websites together."""


@described
@dataclass
class SystemDetail(SystemHealthView):
    """A system's health (as each of ``SystemHealthView``), and more of it."""

    route: str
    """The alert route its owner is told on ("": the ordinary routes)."""
    reach: list[Reach]
    """Every commune that uses it (of the token's), in the inventory's order: its state
    (ok, slow, unreachable, bad_response, line_down, silent, not_probed), since when,
    its latest answer."""


@described
@dataclass
class CommuneSystem:
    """A system the commune uses: the commune's reach of it, the system's verdict
    beside it (whether the trouble is the commune's or everyone's)."""

    id: str
    name: str
    kind: str
    network: str
    owner: str
    verdict: Verdict
    """The system's, across the communes (of the token's)."""
    status: Literal["ok", "warning", "critical", "no_data"]
    reaching: int
    """The communes it answers well (of the token's)."""
    probing: int
    """The communes probing it (of the token's)."""
    reach: Reach
    """The commune's: ok and slow can use it; line_down, unreachable, bad_response
    cannot; silent and not_probed say nothing."""


@described
@dataclass
class CommuneSystemsView:
    """The shared systems a commune uses, and which it can and cannot use now."""

    province: str
    commune: str
    name: str
    line_up: bool | None
    """The commune's dedicated line now (None: not monitored)."""
    can_use: list[str]
    """The ids of the systems it reaches (ok or slow)."""
    cannot_use: list[str]
    """The ids of those it cannot (its line, or the system)."""
    systems: list[CommuneSystem]
    """Every system it uses, in the catalogue's order, its own website last."""


def _figures(figures: Figures | None) -> WindowFigures | None:
    if figures is None:
        return None
    return WindowFigures(
        start=figures.start,
        end=figures.end,
        availability_percent=figures.availability,
        availability_with_maintenance_percent=figures.availability_with_maintenance,
        observed_s=figures.observed_s,
        down_s=figures.down_s,
        line_excluded_s=figures.line_excluded_s,
        maintenance_s=figures.maintenance_s,
        unwatched_s=figures.unwatched_s,
        p50_ms=figures.p50_ms,
        p95_ms=figures.p95_ms,
        answers=figures.answers,
        communes=figures.communes,
        incidents=[
            IncidentView(i.alert_id, i.rule, i.severity, i.started, i.ended, i.value, i.communes)
            for i in figures.incidents
        ],
    )


def cannot_reach(reach: list[Reach]) -> list[CannotReach]:
    """The communes that cannot use a system now, in the inventory's order."""
    return [
        CannotReach(r.commune, r.commune_name, cast(Cause, r.state), r.since, r.error)
        for r in reach
        if r.state in CANNOT_REACH
    ]


def health_view(system: SystemHealth) -> SystemHealthView:
    return SystemHealthView(
        id=system.id,
        name=system.name,
        kind=system.kind,
        target=system.target,
        network=system.network,
        owner=system.owner,
        verdict=system.verdict,
        status=system.status,
        communes=system.communes,
        probing=system.probing,
        reaching=system.reaching,
        cannot_reach=cannot_reach(system.reach),
        slow=list(system.slow),
        silent=list(system.silent),
        cert_days=system.cert_days,
        cert_min_days=system.cert_min_days,
        slow_ms=system.slow_ms,
        median_ms=system.median_ms,
        last_24h=_figures(system.last_24h),
        last_30d=_figures(system.last_30d),
    )


def systems_health(context: ApiContext, scope: Scope, province: str) -> SystemsHealth:
    """Every system of the province (a province the caller sees), with its windows."""
    model = context.system_health
    if model is None or province not in context.systems():
        return SystemsHealth(province, [])
    found = model.systems(province, _held(scope, province))
    return SystemsHealth(province, [health_view(s) for s in found])


def system_detail(
    context: ApiContext, scope: Scope, province: str, system_id: str
) -> SystemDetail | None:
    """One system with every commune's reach; None when there is none such for the
    caller (no such province or id, or none of its communes held)."""
    model = context.system_health
    if model is None or province not in scope.provinces_of(context.model.provinces()):
        return None
    found = model.system(province, system_id, _held(scope, province))
    if found is None:
        return None
    return SystemDetail(
        **health_view(found).__dict__,
        route=found.route,
        reach=found.reach,
    )


def commune_systems(
    context: ApiContext, scope: Scope, province: str, slug: str
) -> CommuneSystemsView:
    """The systems a commune (one the caller holds) uses and its reach of each."""
    model = context.system_health
    found = model.commune(province, slug) if model and province in context.systems() else None
    if model is None or found is None:
        inventory = context.model.inventories.get(province)
        info = inventory.commune(slug) if inventory else None
        return CommuneSystemsView(province, slug, info.name if info else slug, None, [], [], [])
    # The systems' verdicts over the caller's communes only: a commune's token learns
    # nothing of the others.
    held = _held(scope, province)
    overall = (
        {s.id: s for s in model.systems(province, held, windows=False)} if held is not None else {}
    )
    # Its website is its own: named and owned as the catalogue says of it.
    catalogue = context.systems().get(province)
    site = catalogue.website(slug) if catalogue is not None else None
    systems = []
    for system, reach in found.systems:
        seen = overall.get(system.id, system)
        own = site if system.id == WEBSITE else None
        systems.append(
            CommuneSystem(
                id=system.id,
                name=own.name if own else system.name,
                kind=system.kind,
                network=own.network if own else system.network,
                owner=own.owner if own else system.owner,
                verdict=seen.verdict,
                status=seen.status,
                reaching=seen.reaching,
                probing=seen.probing,
                reach=reach,
            )
        )
    return CommuneSystemsView(
        province=province,
        commune=slug,
        name=found.commune_name,
        line_up=found.line_up,
        can_use=[s.id for s in systems if s.reach.state in USABLE],
        cannot_use=[s.id for s in systems if s.reach.state in CANNOT_REACH],
        systems=systems,
    )
