"""Alert groups over HTTP: by rule and commune, acknowledged or silenced in one action;
and each alert's recorded steps (fired, notified, escalated, acknowledged, resolved).
A token sees and acts on the groups of its scope's communes only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import Field

from collector.alerts.groups import AlertGroup, acknowledge_group, groups, silence_group
from collector.alerts.records import (
    MAX_COMMENT,
    MAX_SILENCE_S,
    NotFound,
    Silence,
    Step,
    steps,
)
from collector.web import audited
from collector.web.auth import Context, Reader, RowId, Slug, Technician, actor_of, errors
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import alert_in_scope, need, not_found

router = APIRouter(default_response_class=ReadableJSONResponse)

RuleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


@dataclass
class GroupRequest:
    province: Slug
    commune: Slug
    rule: RuleName
    comment: Annotated[str, Field(max_length=MAX_COMMENT)] = ""


@dataclass
class GroupSilenceRequest(GroupRequest):
    duration_s: Annotated[float, Field(gt=0, le=MAX_SILENCE_S, allow_inf_nan=False)] = 4 * 3600.0


@dataclass
class Acknowledged:
    acknowledged: list[int]
    """The alerts this acknowledged (those firing and not yet acknowledged)."""


@router.get("/api/v1/alert-groups", tags=["alerts"], responses=errors())
def get_groups(
    who: Reader,
    context: Context,
    state: Literal["firing", "resolved", "all"] = "firing",
    commune: Slug | None = None,
    rule: RuleName | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 5000,
) -> list[AlertGroup]:
    """Alerts grouped by rule and commune: count, worst severity, first and last start,
    the members; firing groups first, those still unacknowledged (``unacked``) before
    those someone is on, then critical first."""
    chosen = None if state == "all" else state
    return groups(context.store, time.time(), state=chosen, commune=commune, rule=rule,
                  limit=limit, places=who.scope.places())  # fmt: skip


def _group_place(who: Technician, body: GroupRequest) -> None:
    """A group outside the scope is as one without alerts: 404 naming the commune."""
    need(
        who.scope.holds(body.province, body.commune),
        f"no commune {body.province}/{body.commune}",
    )


@router.post("/api/v1/alert-groups/ack", tags=["alerts"], responses=errors(400, 403, 404))
def post_group_ack(
    request: Request, who: Technician, context: Context, body: GroupRequest
) -> Acknowledged:
    """Acknowledge every firing alert of the group: repeats and escalation stop."""
    _group_place(who, body)
    now = time.time()
    ids = acknowledge_group(
        context.store, province=body.province, commune=body.commune, rule=body.rule,
        by=who.name, comment=body.comment, now=now,
        also=audited.ack_group(actor_of(request, who), body.province, body.commune, body.rule,
                               body.comment, now),
    )  # fmt: skip
    return Acknowledged(ids)


@router.post(
    "/api/v1/alert-groups/silence",
    tags=["alerts"],
    status_code=201,
    responses=errors(400, 403, 404),
)
def post_group_silence(
    request: Request, who: Technician, context: Context, body: GroupSilenceRequest
) -> Silence:
    """Silence the group (the rule in the commune) for ``duration_s``."""
    _group_place(who, body)
    now = time.time()
    try:
        return silence_group(
            context.store, province=body.province, commune=body.commune, rule=body.rule,
            seconds=body.duration_s, by=who.name, comment=body.comment, now=now,
            also=audited.silence(actor_of(request, who), "silence_create", now),
        )  # fmt: skip
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/api/v1/alerts/{alert_id}/steps", tags=["alerts"], responses=errors(404))
def get_steps(who: Reader, context: Context, alert_id: RowId) -> list[Step]:
    """What happened to the alert, in order: fired, notified (which routes), muted,
    escalated, acknowledged, resolved."""
    try:
        alert_in_scope(context.store, who.scope, alert_id)
    except NotFound as exc:
        raise not_found(str(exc)) from None
    return steps(context.store, alert_id)
