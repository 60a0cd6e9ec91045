"""The province's shared systems over HTTP: the catalogue as the collector reads it.

A token scoped to some communes sees the systems those communes use, each with only
its own communes, and their websites; a province's token sees the whole catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from collector.state.systems import WEBSITE
from collector.web.auth import Context, Reader, Slug, errors
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import need

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
    known = who.scope.provinces_of(context.model.provinces())
    chosen = province or (known[0] if known else "")
    need(bool(chosen) and chosen in known, f"no province {province!r}")
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
