"""The operators' audit over HTTP: who did what, when, from where, at which place.

For technicians and admins, within their token's scope (a login is filed under its
token's one province); as JSON or CSV, filtered by time, actor, action and place.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from collector.common.localtime import local
from collector.state import audit
from collector.web.api import TIME_PATTERN, query_time
from collector.web.auth import Context, Technician, errors
from collector.web.readable import ReadableJSONResponse

router = APIRouter(default_response_class=ReadableJSONResponse)

COLUMNS = (
    "id", "at", "time", "actor", "role", "address", "via", "action", "province", "commune",
    "agent", "object", "before", "after",
)  # fmt: skip
#: A spreadsheet takes a cell starting with these as a formula: a comment typed by an
#: operator must stay text.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_text(entries: list[audit.Entry]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        when = local(e.at).isoformat(timespec="seconds")
        writer.writerow(
            [str(e.id), repr(e.at), when]
            + [_cell(v) for v in (e.actor, e.role, e.address, e.via, e.action, e.province)]
            + [_cell(v) for v in (e.commune, e.agent, e.object, e.before, e.after)]
        )
    return buffer.getvalue()


@router.get(
    "/api/v1/audit",
    tags=["operations"],
    response_model=None,
    responses={
        **errors(400, 403),
        200: {"description": "Newest first", "content": {"text/csv": {}}},
    },
)
def get_audit(
    who: Technician,
    context: Context,
    start: Annotated[str | None, Query(alias="from", pattern=TIME_PATTERN)] = None,
    end: Annotated[str | None, Query(alias="to", pattern=TIME_PATTERN)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    province: Annotated[str | None, Query(max_length=64)] = None,
    commune: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    format: Literal["json", "csv"] = "json",
) -> list[audit.Entry] | Response:
    """What operators did, newest first: acknowledgements, silences, maintenance, profile
    changes, enrollment tokens, enrollments in the broker's password file, revocations,
    rollouts, the config signing key's rotation, console logins and logouts.
    ``from``/``to``: ISO 8601 (local +07:00 without an offset) or Unix seconds;
    ``action``: one of ack, ack_group, silence_create, silence_delete,
    maintenance_create, maintenance_delete, profiles_replace, enroll_token_create,
    enroll_token_revoke, agent_enroll, agent_revoke, login, logout, rollout_start,
    rollout_pause, rollout_resume, rollout_halt, rollout_promote, config_key_rotate,
    config_key_finish."""
    since = query_time(start, 0.0, "from") if start else None
    until = query_time(end, 0.0, "to") if end else None
    found = audit.entries(
        context.store, since=since, until=until, actor=actor, action=action,
        places=who.scope.places(province, commune), limit=limit,
    )  # fmt: skip
    if format == "json":
        return found
    headers: dict[str, Any] = {"Content-Disposition": 'attachment; filename="audit.csv"'}
    return Response(csv_text(found), media_type="text/csv; charset=utf-8", headers=headers)
