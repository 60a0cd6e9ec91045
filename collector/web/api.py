"""The HTTP API the province's IOC pulls health from (FastAPI).

Every route under /api/v1 and /metrics needs a bearer token from the config
(stored there as its SHA-256); /healthz answers anyone, it says nothing about
the communes. ``open_on_loopback`` lifts the token requirement for a
development instance that only listens on loopback (the config refuses it
otherwise). What a token sees and acts on is its scope's (``web/scope.py``):
lists are filtered, a thing outside answers 404 as one that does not exist,
/metrics (the collector's own figures) is for tokens of every province.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field

from agent.wire import MAX_TIME
from collector import __version__
from collector.alerts.records import (
    MAX_COMMENT,
    MAX_SILENCE_S,
    Alert,
    NotFound,
    Silence,
    acknowledge,
    add_silence,
    delete_silence,
    list_alerts,
    list_silences,
)
from collector.common.localtime import parse_time
from collector.outputs.report.build import MonthlyReport
from collector.outputs.report.build import build as build_report
from collector.outputs.report.render import render as render_report
from collector.state.availability import Outage, all_down, availability
from collector.state.health import OVERVIEW_DAYS, CommuneHealth, LineTarget, ProvinceHealth
from collector.state.store import AgentState, LatestSample, Subject
from collector.web import audited
from collector.web.auth import (
    ApiContext,
    Context,
    Reader,
    RowId,
    Slug,
    Technician,
    actor_of,
    errors,
)
from collector.web.metrics import CONTENT_TYPE, render
from collector.web.readable import ReadableJSONResponse, Rendered, json_list
from collector.web.scope import (
    Scope,
    alert_in_scope,
    find_commune,
    need,
    need_within,
    not_found,
)


@dataclass
class AgentSummary:
    province: str
    commune: str
    agent: str
    state: str
    """online, offline (Last Will or silent), or unknown."""
    reason: str
    since: float | None
    version: str
    last_seen: float | None
    last_seq: int | None


@dataclass
class SampleView:
    """A latest sample as the API shows it (``LatestSample`` is a struct the API's
    schema cannot describe)."""

    agent_key: str
    check: str
    name: str
    item: str
    target: str
    ts: float
    outcome: str
    fields: dict[str, Any]
    tags: dict[str, str]
    error: str

    @classmethod
    def of(cls, sample: LatestSample) -> SampleView:
        return cls(**msgspec.structs.asdict(sample))


@dataclass
class AgentDetail(AgentSummary):
    samples: list[SampleView] = field(default_factory=list)


@dataclass
class OutageView:
    start: float
    end: float | None
    """None while it lasts."""
    duration_s: float
    """Inside the requested window."""


@dataclass
class AvailabilityView:
    agent: str
    kind: str
    """link (a probed target) or polycom (ready for a meeting)."""
    name: str
    target: str
    network: str
    percent: float | None
    """None when nothing was observed in the window: no data is not 100 %."""
    observed_s: float
    down_s: float
    outages: list[OutageView]


@dataclass
class AvailabilityReport:
    commune: str
    window_start: float
    window_end: float
    line: AvailabilityView | None
    """The commune's dedicated line (TSLCD): down only while every probe of it was down."""
    subjects: list[AvailabilityView]


@dataclass
class CommuneLine:
    commune: str
    name: str
    line: AvailabilityView | None
    """None: no probe of the commune's dedicated line."""


@dataclass
class ProvinceAvailability:
    province: str
    window_start: float
    window_end: float
    percent: float | None
    """The mean of the monitored lines' (each commune weighs the same, as the province's
    figures do); None when no line was observed."""
    lines_monitored: int
    communes: list[CommuneLine]
    """Every commune of the province (the inventory's, then others seen), its line."""


@dataclass
class Healthz:
    status: str
    version: str
    detail: dict[str, Any]


def _outage_views(outages: list[Outage], start: float, end: float) -> list[OutageView]:
    views = []
    for outage in outages:
        span = outage.clipped(start, end)
        views.append(
            OutageView(outage.start, outage.end, span[1] - span[0] if span is not None else 0.0)
        )
    return views


#: Unix seconds, or an ISO 8601 date or date-time (local +07:00 without an offset).
TIME_PATTERN = (
    r"^(\d+(\.\d+)?|\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?)$"
)


def query_time(value: str | None, default: float, name: str) -> float:
    """A time a query names (``from``, ``to``), or ``default``; 400 naming it when wrong."""
    if value is None or not value.strip():
        return default
    try:
        when = parse_time(value, unix_seconds=True)  # Vietnam's local time, like the CLI
    except ValueError:
        raise HTTPException(
            400, f"{name}: expected ISO 8601 (2025-10-01T00:00+07:00) or Unix seconds"
        ) from None
    if not 0 <= when <= MAX_TIME:  # also NaN and the infinity of 400 digits
        raise HTTPException(400, f"{name}: a time between 1970 and {MAX_TIME:.0f} (Unix seconds)")
    return when


router = APIRouter(default_response_class=ReadableJSONResponse)


#: Free text a person types (a comment): bounded like everything else.
Comment = Annotated[str, Field(max_length=MAX_COMMENT)]
Name = Annotated[str, Field(max_length=64)]
#: A time in a request: finite Unix seconds (JSON's Infinity and NaN are refused).
When = Annotated[float | None, Field(ge=0, le=MAX_TIME, allow_inf_nan=False)]


@dataclass
class AckRequest:
    comment: Comment = ""


@dataclass
class SilenceRequest:
    """What to mute (empty fields match all; at least one is needed) and for how long."""

    commune: Name = ""
    agent: Name = ""
    rule: Name = ""
    province: Name = ""
    starts: When = None
    """Unix seconds; default now."""
    ends: When = None
    duration_s: Annotated[float | None, Field(gt=0, le=MAX_SILENCE_S, allow_inf_nan=False)] = None
    """Instead of ``ends``."""
    comment: Comment = ""


def _province(context: ApiContext, scope: Scope, province: str | None) -> str:
    """The province asked for, or the first one the scope sees; 404 for one unknown or
    outside the scope (the same words)."""
    known = scope.provinces_of(context.model.provinces())
    if province:
        need(province in known, f"no province {province!r}")
        return province
    if not known:
        raise HTTPException(404, "no province known yet: no inventory and no agent")
    return known[0]


@router.get(
    "/healthz",
    response_model=Healthz,
    tags=["operations"],
    responses={503: {"model": Healthz, "description": "not ingesting"}},
)
def get_healthz(context: Context) -> JSONResponse:
    """Liveness and readiness: 200 when the collector ingests, 503 otherwise."""
    ok, detail = context.healthz()
    body = {"status": "ok" if ok else "degraded", "version": __version__, "detail": detail}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics", response_class=PlainTextResponse, tags=["operations"], responses=errors(404)
)
def get_metrics(who: Reader, context: Context) -> Response:
    """The collector's own figures in the Prometheus text format (tokens of every
    province: they count what all the provinces send)."""
    need(who.scope.everything, "Not Found")
    return Response(render(context.metrics()), media_type=CONTENT_TYPE)


@router.get("/api/v1/province", tags=["health"], responses=errors(404))
def get_province(who: Reader, context: Context, province: str | None = None) -> ProvinceHealth:
    """Province totals: communes by status, PCs protected, lines up, availability, Polycoms
    (over the token's communes when it holds only some)."""
    chosen = _province(context, who.scope, province)
    if who.scope.holds(chosen):
        return context.model.province(chosen)
    mine = [c for c in context.model.communes(chosen) if who.scope.holds(chosen, c.slug)]
    return context.model.totals(chosen, mine)


#: Communes per page of a national ``/api/v1/communes`` unless asked (a province's list
#: is whole unless asked: Hà Nội's 126 communes at most).
PAGE = 100
MAX_PAGE = 1000


@router.get(
    "/api/v1/communes",
    tags=["health"],
    responses=errors(400),
    response_model=list[CommuneHealth],
)
def get_communes(
    request: Request,
    who: Reader,
    context: Context,
    province: str | None = None,
    status: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Every commune (the inventory's, then others seen), optionally by status; each
    line's last 7 days one by one (``line.days``, the console's strip).

    In pages of ``limit`` communes (at most 1000; without ``province``, 100 unless asked)
    in that order: when more follow, the answer's ``Link`` header gives the next page
    (``rel="next"``) and ``X-Next-Cursor`` its ``cursor`` (``province/slug`` of the last
    commune listed; with ``status``, a page may hold fewer, or none, of the communes that
    match)."""
    places = [p for p in context.model.places(province) if who.scope.holds(*p)]
    if limit is None:
        limit = len(places) if province is not None else PAGE
    start = 0
    if cursor:
        where = {f"{p}/{c}": i for i, (p, c) in enumerate(places)}
        if cursor not in where:
            raise HTTPException(400, f"cursor: no commune {cursor!r} in this list")
        start = where[cursor] + 1
    page = places[start : start + limit]
    communes = [
        c
        for c in context.model.some(page, days=OVERVIEW_DAYS)
        if status is None or c.status == status
    ]
    response = json_list([_rendered((c.province, c.slug, "days"), c) for c in communes])
    if start + limit < len(places):
        last = "/".join(page[-1])
        following = request.url.include_query_params(cursor=last)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        response.headers["X-Next-Cursor"] = last
    return response


_rendered = Rendered(parts=[LineTarget])
"""Each commune's JSON, for the same figures asked again (nothing changed since)."""


@router.get(
    "/api/v1/communes/{commune}",
    tags=["health"],
    responses=errors(404),
    response_model=CommuneHealth,
)
def get_commune(
    who: Reader, context: Context, commune: str, province: str | None = None
) -> Response:
    """One commune in detail: anti-malware, the line with every probe of it and its last
    7 days, the other links (Internet, LAN), Polycom, interfaces. A slug the inventory
    lists as the commune's former one answers for the commune."""
    place = find_commune(context.model, who.scope, commune, province)
    found = (
        context.model.commune(place[1], place[0], days=OVERVIEW_DAYS) if place is not None else None
    )
    if found is None:
        raise not_found(f"no commune {commune!r} in the inventory or the data")
    return Response(
        _rendered((found.province, found.slug, "days"), found), media_type="application/json"
    )


@router.get("/api/v1/agents", tags=["agents"], responses=errors())
def get_agents(
    who: Reader,
    context: Context,
    commune: str | None = None,
    state: str | None = None,
    province: str | None = None,
) -> list[AgentSummary]:
    """Every agent known, with its state and last sign of life."""
    return [
        _summary(a)
        for a in context.store.agents()
        if (commune is None or a.commune == commune)
        and (state is None or a.state == state)
        and (province is None or a.province == province)
        and who.scope.holds(a.province, a.commune)
    ]


@router.get("/api/v1/agents/{agent:path}", tags=["agents"], responses=errors(404, 409))
def get_agent(who: Reader, context: Context, agent: str, commune: str | None = None) -> AgentDetail:
    """An agent's latest sample per check, item and target.

    ``agent`` is its id, or province/commune/agent when ids repeat across communes.
    """
    matches = [
        a
        for a in context.store.agents()
        if agent in (a.agent, a.agent_key)
        and (commune is None or a.commune == commune)
        and who.scope.holds(a.province, a.commune)
    ]
    if not matches:
        raise HTTPException(404, f"no agent {agent!r}")
    if len(matches) > 1:
        keys = ", ".join(a.agent_key for a in matches)
        raise HTTPException(409, f"{agent!r} is ambiguous ({keys}): add ?commune=")
    found = matches[0]
    samples = [SampleView.of(sample) for sample in context.store.latest(found.agent_key)]
    return AgentDetail(**_summary(found).__dict__, samples=samples)


@router.get("/api/v1/availability", tags=["health"], responses=errors(400, 404))
def get_availability(
    who: Reader,
    context: Context,
    commune: str | None = None,
    target: str | None = None,
    start: Annotated[str | None, Query(alias="from", pattern=TIME_PATTERN)] = None,
    end: Annotated[str | None, Query(alias="to", pattern=TIME_PATTERN)] = None,
    province: str | None = None,
) -> AvailabilityReport | ProvinceAvailability:
    """Exact availability and outage list from the recorded intervals.

    ``from``/``to``: ISO 8601 (local +07:00 when no offset) or Unix seconds;
    default the last 24 hours. With ``commune``: its line and every probe and Polycom
    (``target``: a check name or probed address; ``province``: the commune's, where two
    provinces have a commune of that slug). Without: the province's (``province``, or
    the token's first), every commune's line and their mean.
    """
    now = time.time()
    hi = query_time(end, now, "to")
    lo = query_time(start, hi - 86400, "from")
    if hi <= lo:
        raise HTTPException(400, "to must be after from")
    if commune is None:
        return _province_availability(context, who.scope, province, (lo, hi, now))
    # A former slug is no commune's slug now (the inventory refuses that): its history
    # moved to the commune.
    renamed = context.model.renamed(commune, province)
    if renamed is not None and who.scope.holds(*renamed):
        commune = renamed[1]
    # Each province's commune of that slug, read by place (not every subject of the country).
    provinces = [province] if province is not None else context.model.provinces()
    subjects = [
        s
        for p in provinces
        for s in context.store.subjects(place=f"{p}/{commune}/")
        if s.kind in ("link", "polycom")
        and (target is None or target in (s.name, s.target))
        and who.scope.holds_key(s.agent_key)
    ]
    places = {(p, c) for p, c in context.model.places(province) if who.scope.holds(p, c)}
    if not subjects and commune not in {c for _, c in places}:
        raise not_found(f"no commune {commune!r}")
    views: list[AvailabilityView] = []
    tslcd: list[tuple[list[Outage], float]] = []
    for subject in subjects:
        outages = context.store.outages(subject.id, lo, hi)
        views.append(
            _availability_view(
                subject.agent_key.rsplit("/", 1)[1],
                subject.kind,
                subject.name,
                subject.target,
                subject.network,
                outages,
                (lo, hi, subject.monitored_since, now),
            )
        )
        if subject.kind == "link" and subject.network == "tslcd":
            tslcd.append((outages, subject.monitored_since))
    return AvailabilityReport(commune, lo, min(hi, now), _line_view(tslcd, (lo, hi, now)), views)


def _line_view(
    probes: list[tuple[list[Outage], float]], window: tuple[float, float, float]
) -> AvailabilityView | None:
    """The dedicated line from its probes: down only while every probe says so."""
    if not probes:
        return None
    lo, hi, now = window
    combined, since = all_down(probes)
    return _availability_view("*", "line", "tslcd", "", "tslcd", combined, (lo, hi, since, now))


def _province_availability(
    context: ApiContext, scope: Scope, province: str | None, window: tuple[float, float, float]
) -> ProvinceAvailability:
    """Every commune's line of a province (of the token's communes when it holds only
    some), read in one pass over the province's probes."""
    chosen = _province(context, scope, province)
    lo, hi, now = window
    place = f"{chosen}/"
    probes: dict[str, list[Subject]] = {}
    for subject in context.model.line_probes(chosen):
        probes.setdefault(subject.agent_key.split("/")[1], []).append(subject)
    # The line's probes only: a province's anti-malware and Polycom outages are most rows.
    outages = context.store.outages_under(place, lo, hi, kind="link", network="tslcd")
    inventory = context.model.inventories.get(chosen)
    communes: list[CommuneLine] = []
    for _, slug in context.model.places(chosen):
        if not scope.holds(chosen, slug):
            continue
        info = inventory.commune(slug) if inventory else None
        line = _line_view(
            [(outages.get(s.id, []), s.monitored_since) for s in probes.get(slug, [])],
            (lo, hi, now),
        )
        communes.append(CommuneLine(slug, info.name if info else slug, line))
    observed = [c.line.percent for c in communes if c.line and c.line.percent is not None]
    return ProvinceAvailability(
        province=chosen,
        window_start=lo,
        window_end=min(hi, now),
        percent=sum(observed) / len(observed) if observed else None,
        lines_monitored=sum(1 for c in communes if c.line is not None),
        communes=communes,
    )


def _availability_view(
    agent: str,
    kind: str,
    name: str,
    target: str,
    network: str,
    outages: list[Outage],
    window: tuple[float, float, float, float],
) -> AvailabilityView:
    """``window``: (from, to, monitored since, now)."""
    lo, hi, since, now = window
    result = availability(outages, lo, hi, since, now)
    return AvailabilityView(
        agent=agent,
        kind=kind,
        name=name,
        target=target,
        network=network,
        percent=result.percent,
        observed_s=result.observed_s,
        down_s=result.down_s,
        outages=_outage_views(outages, lo, min(hi, now)),
    )


@router.get("/api/v1/alerts", tags=["alerts"], responses=errors())
def get_alerts(
    who: Reader,
    context: Context,
    state: Literal["firing", "resolved", "all"] = "all",
    commune: str | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    rule: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    province: str | None = None,
) -> list[Alert]:
    """Alerts, newest first: firing and resolved (the history), filtered. ``state``:
    firing, resolved or all (the default); another value is refused (422) rather than
    answered with nothing. ``province`` tells apart communes of two provinces with one
    slug (a national collector)."""
    return list_alerts(
        context.store,
        time.time(),
        state=None if state == "all" else state,
        severity=severity,
        rule=rule,
        limit=limit,
        places=who.scope.places(province, commune),
    )


@router.get("/api/v1/alerts/{alert_id}", tags=["alerts"], responses=errors(404))
def get_one_alert(who: Reader, context: Context, alert_id: RowId) -> Alert:
    try:
        return alert_in_scope(context.store, who.scope, alert_id)
    except NotFound as exc:
        raise not_found(str(exc)) from None


@router.post("/api/v1/alerts/{alert_id}/ack", tags=["alerts"], responses=errors(400, 403, 404))
def post_ack(
    request: Request, who: Technician, context: Context, alert_id: RowId, body: AckRequest
) -> Alert:
    """Acknowledge: who (the token's name), when, why. Stops the repeats."""
    try:
        before = alert_in_scope(context.store, who.scope, alert_id)
        now = time.time()
        return acknowledge(
            context.store, alert_id, who.name, body.comment, now,
            also=audited.ack(actor_of(request, who), before, who.name, body.comment, now),
        )  # fmt: skip
    except NotFound as exc:
        raise not_found(str(exc)) from None


@router.get("/api/v1/silences", tags=["alerts"], responses=errors())
def get_silences(who: Reader, context: Context, all: bool = False) -> list[Silence]:
    """Silences in force (``all=true``: also the expired) that reach into the token's scope."""
    found = list_silences(context.store, time.time(), active_only=not all)
    return [s for s in found if who.scope.sees(s.province, s.commune)]


@router.post("/api/v1/silences", tags=["alerts"], status_code=201, responses=errors(400, 403, 404))
def post_silence(
    request: Request, who: Technician, context: Context, body: SilenceRequest
) -> Silence:
    """Mute notifications for a commune, an agent or a rule, for a while (maintenance).
    A token of some provinces or communes mutes within them only (403 for a silence
    reaching beyond, 404 for a place outside)."""
    need_within(
        who.scope, body.province, body.commune, "the silence",
        f"no commune {body.province}/{body.commune}",
    )  # fmt: skip
    now = time.time()
    starts = body.starts if body.starts is not None else now
    ends = body.ends if body.ends is not None else starts + (body.duration_s or 0.0)
    try:
        return add_silence(
            context.store,
            starts=starts,
            ends=ends,
            created_by=who.name,
            now=now,
            province=body.province,
            commune=body.commune,
            agent=body.agent,
            rule=body.rule,
            comment=body.comment,
            also=audited.silence(actor_of(request, who), "silence_create", now),
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.delete(
    "/api/v1/silences/{silence_id}",
    tags=["alerts"],
    status_code=204,
    responses=errors(403, 404),
)
def delete_one_silence(
    request: Request, who: Technician, context: Context, silence_id: RowId
) -> Response:
    write = audited.silence(actor_of(request, who), "silence_delete", time.time())
    missing = lambda: NotFound(f"no silence {silence_id}")  # noqa: E731
    try:
        delete_silence(context.store, silence_id, audited.removable(who.scope, missing, write))
    except NotFound as exc:
        raise not_found(str(exc)) from None
    return Response(status_code=204)


REPORT_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@router.get(
    "/api/v1/reports/monthly",
    tags=["reports"],
    response_model=None,
    responses={
        **errors(400, 404),
        200: {
            "description": "The figures (format=json) or the rendered report",
            "content": {media: {} for media in REPORT_TYPES.values()},
        },
    },
)
def get_monthly_report(
    who: Reader,
    context: Context,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", examples=["2025-10"])],
    province: Slug | None = None,
    format: Literal["json", "md", "csv", "html", "xlsx", "docx"] = "json",
    lang: Literal["vi", "en"] = "vi",
) -> MonthlyReport | Response:
    """The monthly figures per commune and for the province, from the recorded intervals;
    as JSON, or rendered (md, csv, html, xlsx) in Vietnamese or English, or as the
    Word document the province files (docx, Nghị định 30/2020 layout); with the shared
    systems' section when the province has a catalogue of them. A token of some
    communes gets the report over its communes: each listed, the totals theirs."""
    chosen = _province(context, who.scope, province)
    inventory = context.model.inventories.get(chosen)
    mine = None if who.scope.holds(chosen) else frozenset(who.scope.communes)
    try:
        report = build_report(
            context.store,
            chosen,
            month,
            inventory,
            only=mine,
            catalogue=context.systems().get(chosen),
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if format == "json":
        return report
    headers = {"Content-Disposition": f'attachment; filename="report-{month}.{format}"'}
    return Response(
        render_report(report, format, lang, context.issuer),
        media_type=REPORT_TYPES[format],
        headers=headers,
    )


def _summary(agent: AgentState) -> AgentSummary:
    return AgentSummary(
        province=agent.province,
        commune=agent.commune,
        agent=agent.agent,
        state=agent.state,
        reason=agent.reason,
        since=agent.state_since,
        version=agent.version,
        last_seen=agent.last_seen,
        last_seq=agent.last_seq,
    )
