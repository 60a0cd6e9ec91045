"""The console's pages of the province's shared systems: every system across the
communes, and one system commune by commune.

What the API answers (``web/systemviews.py``), shown to a technician: each commune that
cannot use a system with the reason in words that say where to act (the commune's
line, the system, its wrong answer), availability and response times, certificates.
Scoped like every page: a commune's technician sees its communes' rows and figures
over them alone, and a system none of them uses is no page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from collector.state.systemhealth import Reach
from collector.web.console.overview import folded
from collector.web.console.values import duration
from collector.web.console.views import Context, Viewer, page
from collector.web.scope import not_found
from collector.web.systemviews import system_detail, systems_health

router = APIRouter(include_in_schema=False)

#: The reach table's order by state: who cannot use it first, and why, then the slow,
#: then what is not known, those that answer well last.
STATE_ORDER = {"unreachable": 0, "bad_response": 1, "line_down": 2, "slow": 3, "silent": 4,
               "not_probed": 5, "ok": 6}  # fmt: skip
SORTS = ("state", "name", "time", "since", "cert")


def _none_last(value: float | None, descending: bool = False) -> tuple[bool, float]:
    number = value or 0.0
    return (value is None, -number if descending else number)


def _key(sort: str) -> Callable[[Reach], Any]:
    keys: dict[str, Callable[[Reach], Any]] = {
        "state": lambda r: (STATE_ORDER.get(r.state, 9), folded(r.commune_name)),
        "name": lambda r: folded(r.commune_name.split(" ", 1)[-1]),
        "time": lambda r: _none_last(r.total_ms, descending=True),
        "since": lambda r: _none_last(r.since, descending=True),
        "cert": lambda r: _none_last(r.cert_days),
    }
    return keys.get(sort, keys["state"])


def sorted_reach(reach: list[Reach], sort: str) -> list[Reach]:
    """The communes' reach of a system by a column: the state (worst first), the
    commune's name, the response time (slowest first), the last change (newest first),
    the certificate (fewest days first)."""
    return sorted(reach, key=_key(sort))


@router.get("/systems", response_class=HTMLResponse)
def systems_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    province: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """Every shared system of a province (one of the scope's) across the communes."""
    provinces = viewer.scope.provinces_of(context.model.provinces())
    if province not in provinces:
        province = provinces[0] if provinces else ""
    health = systems_health(context, viewer.scope, province) if province else None
    inventory = context.model.inventories.get(province)
    return page(
        request, "systems.html", viewer, health=health, provinces=provinces,
        chosen_province=province,
        province_name=inventory.name if inventory and inventory.name else province,
        configured=province in context.systems(),
    )  # fmt: skip


@router.get("/systems/{province}/{system_id}", response_class=HTMLResponse)
def system_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    province: str,
    system_id: str,
    sort: Annotated[str, Query(max_length=16)] = "state",
) -> HTMLResponse:
    """One shared system: every commune's reach of it, sortable; its windows, its
    incidents."""
    found = system_detail(context, viewer.scope, province, system_id)
    if found is None:
        raise not_found(f"no system {system_id!r} in {province!r}")
    chosen = sort if sort in SORTS else "state"
    return page(
        request, "system.html", viewer, s=found, province=province,
        rows=sorted_reach(found.reach, chosen), sort=chosen, duration=duration,
        names={r.commune: r.commune_name for r in found.reach},
    )  # fmt: skip
