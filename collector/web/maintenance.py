"""Maintenance windows over HTTP: list, plan, remove (technicians plan, viewers list).

A token sees the windows that reach into its scope (a province's window reaches each
of its communes), and plans or removes only windows that lie within it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import Field

from agent.wire import MAX_TIME
from collector.state import maintenance
from collector.state.maintenance import MAX_TEXT, Window
from collector.web import audited
from collector.web.auth import Context, Reader, RowId, Slug, Technician, actor_of, errors
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import need_within, not_found

router = APIRouter(default_response_class=ReadableJSONResponse)

Time = Annotated[float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Part = Annotated[str, Field(max_length=64)]


@dataclass
class WindowRequest:
    """A window: its place (empty parts match all), its span, and how it repeats."""

    province: Slug
    starts: Time
    """Unix seconds."""
    ends: Time
    commune: Part = ""
    agent: Part = ""
    device: Part = ""
    """tslcd (the dedicated line, whatever its checks' names), internet, lan, polycom,
    router, switch, or a check's or a PC's name the place has reported; anything else
    is refused (400)."""
    every: Literal["", "day", "week", "month"] = ""
    until: Time | None = None
    """A repeated window's last occurrence starts before this."""
    reason: Text = ""
    comment: Text = ""


@router.get("/api/v1/maintenance", tags=["alerts"], responses=errors())
def get_windows(
    who: Reader, context: Context, province: Slug | None = None, all: bool = False
) -> list[Window]:
    """Windows in force or to come (``all=true``: also past ones)."""
    start = -float("inf") if all else time.time()
    found = maintenance.windows(context.store, province, start)
    return [w for w in found if who.scope.sees(w.province, w.commune)]


@router.post(
    "/api/v1/maintenance", tags=["alerts"], status_code=201, responses=errors(400, 403, 404)
)
def post_window(request: Request, who: Technician, context: Context, body: WindowRequest) -> Window:
    """Plan a window: its alerts are recorded, not sent; the report leaves it out of the
    availability it gives without maintenance. Refused by name: ends before it starts,
    beyond a year, a repetition without its end; beyond the token's scope (a token of
    some communes plans for one of them, not the province)."""
    need_within(
        who.scope, body.province, body.commune, "the window",
        f"no commune {body.province}/{body.commune}",
    )  # fmt: skip
    now = time.time()
    try:
        return maintenance.add(
            context.store,
            province=body.province,
            commune=body.commune,
            agent=body.agent,
            device=body.device,
            starts=body.starts,
            ends=body.ends,
            every=body.every,
            until=body.until,
            reason=body.reason,
            comment=body.comment,
            created_by=who.name,
            now=now,
            also=audited.window(actor_of(request, who), "maintenance_create", now),
        )
    except maintenance.MaintenanceError as exc:
        raise HTTPException(400, str(exc)) from None


@router.delete(
    "/api/v1/maintenance/{window_id}", tags=["alerts"], status_code=204, responses=errors(403, 404)
)
def delete_window(
    request: Request, who: Technician, context: Context, window_id: RowId
) -> Response:
    write = audited.window(actor_of(request, who), "maintenance_delete", time.time())
    missing = lambda: maintenance.NotFound(f"no maintenance window {window_id}")  # noqa: E731
    try:
        maintenance.remove(context.store, window_id, audited.removable(who.scope, missing, write))
    except maintenance.NotFound as exc:
        raise not_found(str(exc)) from None
    return Response(status_code=204)
