"""The province's shared systems over HTTP: the catalogue as the collector reads it, and
how each system answers the communes (``state/systemhealth.py``).

A token scoped to some communes sees the systems those communes use, each with only
its own communes, and their websites; a province's token sees the whole catalogue.
The health (``web/systemviews.py``) follows the same scope: a commune's token gets
the rows of its communes and figures computed over them alone; a system none of them
uses answers 404 as one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from collector.state.systems import WEBSITE
from collector.web.auth import ApiContext, Context, Reader, Slug, errors
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import Scope, find_commune, need, not_found
from collector.web.systemviews import (
    CommuneSystemsView,
    SystemDetail,
    SystemsHealth,
    commune_systems,
    system_detail,
    systems_health,
)

router = APIRouter(default_response_class=ReadableJSONResponse)


@dataclass
class SystemView:
    id: str
    """The probes' check name on the agents ("website" for a commune's own site)."""
    name: str
    kind: str
    target: str
    """The URL, or host:port for a system probed by TCP."""
    url: str
    host: str
    port: int | None
    network: str
    """tslcd (the dedicated line) or internet: the way the communes reach it."""
    owner: str
    communes: list[str]
    """The communes that use it (that the token holds)."""


@dataclass
class SystemsCatalogue:
    province: str
    systems: list[SystemView]
    """The province's shared systems, in the catalogue's order."""
    websites: list[SystemView]
    """Each commune's own website."""


@router.get("/api/v1/systems", tags=["health"], responses=errors(404))
def get_systems(who: Reader, context: Context, province: Slug | None = None) -> SystemsCatalogue:
    """The shared systems the communes work through (``[collector] systems``): what each
    is, where it answers, on which network, whose it is, which communes use it."""
    chosen = _province(context, who.scope, province)
    catalogue = context.systems().get(chosen)
    if catalogue is None:
        return SystemsCatalogue(chosen, [], [])
    inventory = context.model.inventories.get(chosen)
    systems = []
    for system in catalogue.systems:
        mine = [c for c in catalogue.used_by(system, inventory) if who.scope.holds(chosen, c)]
        if mine:
            systems.append(
                SystemView(
                    id=system.id,
                    name=system.name,
                    kind=system.kind,
                    target=system.target,
                    url=system.url,
                    host=system.host,
                    port=system.port,
                    network=system.network,
                    owner=system.owner,
                    communes=mine,
                )
            )
    websites = [
        SystemView(
            id=WEBSITE,
            name=site.name,
            kind="website",
            target=site.url,
            url=site.url,
            host="",
            port=None,
            network=site.network,
            owner=site.owner,
            communes=[site.commune],
        )
        for site in catalogue.websites
        if who.scope.holds(chosen, site.commune)
    ]
    return SystemsCatalogue(chosen, systems, websites)


def _province(context: ApiContext, scope: Scope, province: str | None) -> str:
    """The province asked for, or the token's first; 404 for one unknown or outside."""
    known = scope.provinces_of(context.model.provinces())
    chosen = province or (known[0] if known else "")
    need(bool(chosen) and chosen in known, f"no province {province!r}")
    return chosen


@router.get("/api/v1/systems/health", tags=["health"], responses=errors(404))
def get_systems_health(
    who: Reader, context: Context, province: Slug | None = None
) -> SystemsHealth:
    """Every shared system now and over the last 24 hours and 30 days, across the
    communes that probe it: its verdict, how many communes it answers of those probing,
    the communes that cannot use it and why (their own line down, or the system not
    answering or answering wrongly), availability (the communes' line outages and
    maintenance left out) and response times (median, 95th percentile). A token of some
    communes gets the figures of its communes alone."""
    return systems_health(context, who.scope, _province(context, who.scope, province))


@router.get("/api/v1/systems/{province}/{system_id}", tags=["health"], responses=errors(404))
def get_system_health(who: Reader, context: Context, province: str, system_id: str) -> SystemDetail:
    """One shared system: the health's figures, every commune's reach of it (its state,
    since when, its latest answer, the probe's words) and the incidents of the last
    24 hours and 30 days. ``website``: the communes' own websites together. A system
    none of the token's communes uses answers as one that does not exist."""
    found = system_detail(context, who.scope, province, system_id)
    if found is None:
        raise not_found(f"no system {system_id!r} in {province!r}")
    return found


@router.get("/api/v1/communes/{commune}/systems", tags=["health"], responses=errors(404))
def get_commune_systems(
    who: Reader, context: Context, commune: str, province: Slug | None = None
) -> CommuneSystemsView:
    """The shared systems one commune uses and whether it can use each now: its own
    prober's latest answer, with its line's state beside it (a system out of reach
    while the line is down is the line's problem) and the system's verdict across the
    communes (whether the trouble is the commune's or everyone's). A slug the inventory
    lists as the commune's former one answers for the commune."""
    place = find_commune(context.model, who.scope, commune, province)
    if place is None:
        raise not_found(f"no commune {commune!r} in the inventory or the data")
    return commune_systems(context, who.scope, *place)
