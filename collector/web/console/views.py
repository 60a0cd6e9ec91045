"""The console's pages: overview, commune, agent, alerts, audit; login, language,
actions (the shared systems' pages are ``systempages.py``, the rollout's
``rolloutpage.py``).

Server-rendered (Jinja2, no front-end build), readable on a phone. Login with an
API token opens a session cookie, checked on every request against the tokens
configured now and the sessions logged out; every form carries a CSRF token,
in ``open_on_loopback`` mode too (its anonymous visitor gets a session cookie
of its own). Each page shows what the token's scope holds (``web/scope.py``), as
configured now; a viewer reads, acknowledging, silencing and planning need
technician or admin, checked again on every action, and go into the audit with
the logins and logouts. Redirects go to paths of this site only.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape

from agent.catalogue import ANTIVIRUS, ANTIVIRUS_PRODUCT
from collector.alerts.groups import acknowledge_group, groups
from collector.alerts.pending import pending
from collector.alerts.records import (
    MAX_COMMENT,
    NotFound,
    acknowledge,
    add_silence,
    delete_silence,
    list_alerts,
    list_silences,
)
from collector.common import words
from collector.common.localtime import local, parse_time
from collector.common.natural import natural_key
from collector.common.shares import below_whole
from collector.rollout import gates
from collector.state import audit, maintenance
from collector.state.availability import all_down
from collector.state.health import OVERVIEW_DAYS
from collector.web import audited
from collector.web.auth import (
    ROLE_RANK,
    ApiContext,
    Caller,
    RowId,
    check_token,
    client_address,
    context_of,
    token_digest,
)
from collector.web.console import overview as overview_table
from collector.web.console.auth import COOKIE, LOOPBACK, Session, Sessions
from collector.web.console.charts import line_chart, strip
from collector.web.console.events import event_detail
from collector.web.console.firing import firing_count
from collector.web.console.forms import Refusal, commune_slug, plan_refusal
from collector.web.console.values import decimal, duration, grouped, localised, shown
from collector.web.guard import safe_next, scheme
from collector.web.scope import (
    Scope,
    alert_in_scope,
    find_commune,
    need,
    need_within,
    not_found,
)
from collector.web.systemviews import commune_systems

LANG_COOKIE = "commune_lang"
#: The agent page's order: what the PC is, its protection, its lines, devices, itself.
CHECK_ORDER = {"host": 0, "antivirus": 1, "link": 2, "snmp": 3, "polycom": 4, "agent": 5}

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=PackageLoader("collector.web.console", "templates"),
    autoescape=select_autoescape(["html"]),
)


def _local(ts: float | None, with_date: bool = True) -> str:
    if ts is None:
        return "—"
    moment = local(ts)
    return moment.strftime("%d/%m/%Y %H:%M" if with_date else "%H:%M")


@pass_context
def _percent(context: Any, value: float | None, digits: int = 2) -> str:
    """A percentage with the page's decimal sign."""
    if value is None:
        return "—"
    return f"{decimal(context.get('lang', 'vi'), below_whole(value, digits), digits)} %"


templates.filters["local"] = _local
templates.filters["percent"] = _percent


def compile_templates() -> None:
    """Compile every page at start: the first visitor's overview waited ~100 ms for it."""
    for name in templates.list_templates():
        templates.get_template(name)


class Login(Exception):
    """Not logged in: go to the login page."""


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _current(request: Request, session: Session) -> Caller | None:
    """Who a signed session stands for, while it stands: not logged out, and its token
    still configured with the same name and role (or, without a token, loopback still
    open). Its scope is the token's now."""
    context: ApiContext = request.app.state.context
    if context.store.session_ended(session.sid):
        return None
    if session.token == LOOPBACK:
        return Caller(session.name, session.role) if context.open_on_loopback else None
    sessions = _sessions(request)
    return next(
        (
            who
            for digest, who in context.tokens.items()
            if sessions.fingerprint(digest) == session.token
            and (who.name, who.role) == (session.name, session.role)
        ),
        None,
    )


def _viewer(request: Request) -> Session:
    context: ApiContext = request.app.state.context
    session = _sessions(request).read(request.cookies.get(COOKIE), time.time())
    who = _current(request, session) if session is not None else None
    if session is not None and who is not None:
        return replace(session, scope=who.scope)
    if context.open_on_loopback:
        return Session("loopback", "admin", float("inf"), token=LOOPBACK)
    raise Login()


Viewer = Annotated[Session, Depends(_viewer)]
Context = Annotated[ApiContext, Depends(context_of)]


def csrf_checked(request: Request, csrf: str) -> None:
    """403 for a form without this session's CSRF token."""
    if not _sessions(request).csrf_ok(request.cookies.get(COOKIE), csrf):
        raise HTTPException(403, "form expired or forged: reload the page")


def _technician(
    request: Request, viewer: Viewer, csrf: Annotated[str, Form(max_length=64)] = ""
) -> Session:
    csrf_checked(request, csrf)
    if ROLE_RANK.get(viewer.role, 0) < ROLE_RANK["technician"]:
        raise HTTPException(403, "this account is read-only")
    return viewer


Technician = Annotated[Session, Depends(_technician)]


def console_actor(request: Request, who: Session) -> audit.Actor:
    """Who acts in the console, for the audit: the session's holder, from the client's
    address."""
    return audit.Actor(who.name, who.role, client_address(request), "console")


def _number_or_text(text: str) -> float | str:
    """An alert's recorded value: a number when it reads as one (its decimal sign is the
    page's), else text (a state, said in words)."""
    try:
        return float(text)
    except ValueError:
        return text


def _language(request: Request) -> str:
    language = request.cookies.get(LANG_COOKIE, "vi")
    return language if language in words.CONSOLE else "vi"


def _set_session(request: Request, response: Response, cookie: str) -> None:
    context: ApiContext = request.app.state.context
    response.set_cookie(
        COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=scheme(request, context.proxies) == "https",
        max_age=int(_sessions(request).lifetime_s),
    )


def page(request: Request, template: str, viewer: Session | None, **values: Any) -> HTMLResponse:
    language = _language(request)
    cookie = request.cookies.get(COOKIE) or ""
    opened = ""
    if viewer is not None and viewer.token == LOOPBACK and not viewer.sid:
        # open_on_loopback's visitor: a session of its own, so its forms carry CSRF tokens.
        cookie = opened = _sessions(request).issue(viewer.name, viewer.role, time.time())
    body = templates.get_template(template).render(
        t=lambda key: words.translate(language, key),
        reason=lambda r: words.reason(language, r.code, r.detail, r.count),
        kind=lambda rule: words.kind(language, rule),
        word=lambda prefix, value: words.word(language, prefix, str(value)),
        event_detail=lambda event: event_detail(language, event.event, event.detail),
        num=lambda value, digits=1: decimal(language, value, digits),
        shown_value=lambda text: localised(language, text, _number_or_text(text)),
        gate_words=lambda text: gates.in_words(text, language),
        lang=language,
        viewer=viewer,
        can_act=viewer is not None and ROLE_RANK.get(viewer.role, 0) >= 1,
        within=lambda item: (
            viewer is not None and viewer.scope.reach(item.province, item.commune) == "inside"
        ),
        csrf=_sessions(request).csrf(cookie) if cookie else "",
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        href=commune_href,
        **values,
    )
    response = HTMLResponse(body)
    if opened:
        _set_session(request, response, opened)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = "") -> HTMLResponse:
    return page(request, "login.html", None, error=error)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)] = "",
    next: Annotated[str, Query(max_length=512)] = "/",
) -> Response:
    context: ApiContext = request.app.state.context
    caller = check_token(context, client_address(request), token) if token else None
    if caller is None:
        return RedirectResponse("/login?error=1", status_code=303)
    sessions = _sessions(request)
    fingerprint = sessions.fingerprint(token_digest(token.strip()))
    now = time.time()
    cookie = sessions.issue(caller.name, caller.role, now, fingerprint)
    session = sessions.read(cookie, now)
    audit.record_alone(
        context.store, audit.Actor(caller.name, caller.role, client_address(request), "console"),
        "login", now, **_home(caller.scope),
        object=session.sid if session else "", after={"scope": caller.scope.describe()},
    )  # fmt: skip
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_session(request, response, cookie)
    return response


def _home(scope: Scope) -> dict[str, str]:
    """Where a login or logout is filed: its token's one province (and one commune), so
    that the province's reviewers see who logged in to it."""
    province = scope.provinces[0] if len(scope.provinces) == 1 else ""
    commune = scope.communes[0] if len(scope.communes) == 1 else ""
    return {"province": province, "commune": commune}


@router.post("/logout")
def logout(request: Request) -> Response:
    """Ends the session for good (server-side), not only in this browser."""
    session = _sessions(request).read(request.cookies.get(COOKIE), time.time())
    if session is not None and session.sid:
        context: ApiContext = request.app.state.context
        who = _current(request, session)
        context.store.end_session(session.sid, session.expires)
        if who is not None:
            audit.record_alone(
                context.store, console_actor(request, session), "logout", time.time(),
                **_home(who.scope), object=session.sid,
            )  # fmt: skip
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/lang/{language}")
def set_language(language: str, next: Annotated[str, Query(max_length=512)] = "/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if language in words.CONSOLE:
        response.set_cookie(LANG_COOKIE, language, samesite="lax", max_age=365 * 86400)
    return response


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request,
    viewer: Viewer,
    context: Context,
    status: Annotated[str, Query(max_length=16)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    sort: Annotated[str, Query(max_length=16)] = "status",
    province: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """Which communes need someone now: a dense table, worst first, filtered by status
    and searched by name or official code, each with its line's last seven days; on a
    collector of several provinces, one province at a time (those of the scope)."""
    scope = viewer.scope
    provinces = scope.provinces_of(context.model.provinces())
    if province not in provinces:
        province = provinces[0] if provinces else ""
    # The probes' own availability is the commune page's; the overview needs the line's,
    # and its last seven days.
    communes = [
        c
        for c in context.model.communes(province or None, detail=False, days=OVERVIEW_DAYS)
        if scope.holds(c.province, c.slug)
    ]
    totals = context.model.totals(province, communes) if province else None
    chosen = status if status in overview_table.ORDER else ""
    return page(
        request,
        "overview.html",
        viewer,
        province=totals,
        table=overview_table.table(communes, chosen, q, sort),
        status=chosen,
        q=q,
        sort=sort if sort in overview_table.SORTS else "status",
        provinces=provinces,
        chosen_province=province,
        strip=strip,
        firing=firing_count(context.store, scope.places()),
    )


def commune_href(province: str, slug: str) -> str:
    """A commune's page: by slug, and by province too, since 367 slugs of the register
    are shared by communes of different provinces (a national collector has both)."""
    return f"/communes/{quote(slug)}?province={quote(province)}"


@router.get("/communes/{slug}", response_class=HTMLResponse)
def commune_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    slug: str,
    province: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    found = find_commune(context.model, viewer.scope, slug, province)
    if found is not None and found[1] != slug:  # a bookmark from before the rename
        return RedirectResponse(commune_href(*found), status_code=308)
    commune = context.model.commune(slug, found[0]) if found is not None else None
    if commune is None:
        raise not_found(f"no commune {slug!r}")
    now = time.time()
    week = now - 7 * 86400
    place = f"{commune.province}/{commune.slug}/"
    subjects = context.model.line_probes(commune.province, commune.slug)
    outages = context.store.outages_under(place, week, now, kind="link", network="tslcd")
    combined, since = all_down([(outages.get(s.id, []), s.monitored_since) for s in subjects])
    language = _language(request)
    chart = (
        line_chart(
            combined,
            since,
            context.store.rtt_history(place.rstrip("/"), week),
            context.store.loss_history(place.rstrip("/"), week),
            week,
            now,
            tuple(words.translate(language, k) for k in ("up", "down", "not_watched")),  # type: ignore[arg-type]
            "," if language == "vi" else ".",
        )
        if subjects
        else ""
    )
    pcs = _pcs(context, commune.province, commune.slug)
    alerts = list_alerts(
        context.store, now, province=commune.province, commune=slug, state="firing"
    )
    coming = pending(context.store, viewer.scope.places(), (commune.province, commune.slug))
    rate = lambda v: (  # noqa: E731
        localised(language, shown("snmp", "interface", "in_bps", v, "", ""), v)
        if v is not None
        else "—"
    )
    return page(
        request, "commune.html", viewer, c=commune, chart=chart, pcs=pcs, alerts=alerts,
        pending=coming, rate=rate, duration=duration, now=now,
        systems=commune_systems(context, viewer.scope, commune.province, commune.slug),
    )  # fmt: skip


def _pcs(context: ApiContext, province: str, slug: str) -> list[dict[str, Any]]:
    place = f"{province}/{slug}/"
    agents = {a.agent_key: a for a in context.model.agents_in(province, slug)}
    rows: dict[str, dict[str, Any]] = {}
    for sample in context.store.latest_of("antivirus", place):
        row = rows.setdefault(
            sample.agent_key,
            {"agent": sample.agent_key.rsplit("/", 1)[1], "key": sample.agent_key, "products": []},
        )
        if sample.item == "product":
            row["products"].append(
                {
                    "name": sample.target,
                    "state": ANTIVIRUS_PRODUCT.text(sample.fields, "state"),
                    "age": ANTIVIRUS_PRODUCT.number(sample.fields, "signature_age_days"),
                }
            )
        else:
            row["verdict"] = ANTIVIRUS.text(sample.fields, "verdict") or "unknown"
            agent = agents.get(sample.agent_key)
            row["state"] = agent.state if agent else "unknown"
    return sorted(rows.values(), key=lambda r: str(r["agent"]))


@router.get("/agents/{key:path}", response_class=HTMLResponse)
def agent_page(request: Request, viewer: Viewer, context: Context, key: str) -> HTMLResponse:
    agent = next(
        (a for a in context.store.agents() if a.agent_key == key and viewer.scope.holds_key(key)),
        None,
    )
    if agent is None:
        raise not_found(f"no agent {key!r}")
    language = _language(request)
    yes, no = words.translate(language, "yes"), words.translate(language, "no")
    samples = sorted(
        context.store.latest(agent.agent_key),
        key=lambda s: (CHECK_ORDER.get(s.check, 9), s.check, s.name, s.item, natural_key(s.target)),
    )
    return page(
        request, "agent.html", viewer, agent=agent, checks=grouped(samples),
        value=lambda s, name, v: localised(language, shown(s.check, s.item, name, v, yes, no), v),
        update=context.store.update_reports(agent.agent_key).get(agent.agent_key),
    )  # fmt: skip


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    state: Annotated[str, Query(max_length=16)] = "firing",
) -> HTMLResponse:
    return _alerts(request, viewer, context, state)


#: The alerts page's tabs: its own filter, not the API's ``state``.
ALERT_TABS = ("firing", "resolved", "all")


def _alerts(
    request: Request,
    viewer: Session,
    context: ApiContext,
    state: str = "firing",
    refusal: Refusal | None = None,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    """The alerts, silences and maintenance windows; the plan form with what was typed
    and why it was refused, when it was."""
    now = time.time()
    state = state if state in ALERT_TABS else "firing"
    scope = viewer.scope
    provinces = scope.provinces_of(context.model.provinces())
    response = page(
        request,
        "alerts.html",
        viewer,
        groups=groups(
            context.store, now, state=None if state == "all" else state, limit=2000,
            places=scope.places(),
        ),
        pending=pending(context.store, scope.places()) if state != "resolved" else [],
        silences=[
            s for s in list_silences(context.store, now) if scope.sees(s.province, s.commune)
        ],
        windows=[
            w
            for w in maintenance.windows(context.store, None, now)
            if scope.sees(w.province, w.commune)
        ],
        provinces=provinces,
        plan_communes=list(scope.communes),
        plan_choices=_choices(context, provinces[0] if provinces else ""),
        names=place_names(context),
        now=now,
        state=state,
        tabs=ALERT_TABS,
        refusal=refusal,
        typed=typed or {},
    )  # fmt: skip
    if refusal is not None:
        response.status_code = 422
    return response


def _choices(context: ApiContext, province: str) -> list[str]:
    """The communes' names the plan form suggests, in the register's order."""
    inventory = context.model.inventories.get(province)
    return [c.name for c in inventory.communes] if inventory else []


def place_names(context: ApiContext) -> dict[str, str]:
    """Official names by "province/slug"."""
    return {
        f"{inventory.province}/{c.slug}": c.name
        for inventory in context.model.inventories.values()
        for c in inventory.communes
    }


@router.post("/alert-groups/ack")
def group_ack_form(
    request: Request,
    who: Technician,
    context: Context,
    province: Annotated[str, Form(max_length=64)],
    commune: Annotated[str, Form(max_length=64)],
    rule: Annotated[str, Form(max_length=64)],
    comment: Annotated[str, Form(max_length=MAX_COMMENT)] = "",
    back: Annotated[str, Form(max_length=512)] = "/alerts",
) -> Response:
    need(who.scope.holds(province, commune), f"no commune {province}/{commune}")
    now = time.time()
    acknowledge_group(
        context.store, province=province, commune=commune, rule=rule, by=who.name,
        comment=comment, now=now,
        also=audited.ack_group(console_actor(request, who), province, commune, rule, comment, now),
    )  # fmt: skip
    return RedirectResponse(safe_next(back, "/alerts"), status_code=303)


def _form_time(value: str, name: str) -> float:
    try:
        return parse_time(value)
    except ValueError:
        raise Refusal(name, "plan_error_times") from None


@router.post("/maintenance")
def maintenance_form(
    request: Request,
    who: Technician,
    context: Context,
    province: Annotated[str, Form(max_length=64)],
    starts: Annotated[str, Form(max_length=40)],
    ends: Annotated[str, Form(max_length=40)],
    commune: Annotated[str, Form(max_length=200)] = "",
    device: Annotated[str, Form(max_length=64)] = "",
    every: Annotated[str, Form(max_length=10)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """A window from the plan form; refused, the alerts page again with the form as it
    was typed and the reason beside the field, in the page's language."""
    typed = {"commune": commune, "device": device, "starts": starts, "ends": ends,
             "every": every, "until": until, "reason": reason}  # fmt: skip
    inventory = context.model.inventories.get(province)
    now = time.time()
    try:
        slug = commune_slug(inventory.communes if inventory else None, commune)
        need_within(who.scope, province, slug, "the window", f"no commune {province}/{slug}")
        maintenance.add(
            context.store, province=province, commune=slug, device=device.strip(),
            starts=_form_time(starts, "starts"), ends=_form_time(ends, "ends"), every=every,
            until=_form_time(until, "until") if until else None, reason=reason,
            created_by=who.name, now=now,
            also=audited.window(console_actor(request, who), "maintenance_create", now),
        )  # fmt: skip
    except Refusal as refusal:
        return _alerts(request, who, context, refusal=refusal, typed=typed)
    except maintenance.MaintenanceError as exc:
        return _alerts(request, who, context, refusal=plan_refusal(str(exc)), typed=typed)
    return RedirectResponse("/alerts#maintenance", status_code=303)


@router.post("/maintenance/{window_id}/delete")
def maintenance_delete_form(
    request: Request, who: Technician, context: Context, window_id: RowId
) -> Response:
    write = audited.window(console_actor(request, who), "maintenance_delete", time.time())
    missing = lambda: maintenance.NotFound(f"no maintenance window {window_id}")  # noqa: E731
    try:
        maintenance.remove(context.store, window_id, audited.removable(who.scope, missing, write))
    except maintenance.NotFound as exc:
        raise not_found(str(exc)) from None
    return RedirectResponse("/alerts", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    action: Annotated[str, Query(max_length=32)] = "",
    actor: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """What operators did within the scope, newest first: for technicians and admins."""
    if ROLE_RANK.get(viewer.role, 0) < ROLE_RANK["technician"]:
        raise HTTPException(403, "this account is read-only: the audit is for technicians")
    chosen = action if action in audit.ACTIONS else ""
    entries = audit.entries(
        context.store, action=chosen or None, actor=actor or None,
        places=viewer.scope.places(), limit=500,
    )  # fmt: skip
    return page(
        request, "audit.html", viewer, entries=entries, actions=audit.ACTIONS, action=chosen,
        actor=actor, names=place_names(context), change=_change,
    )  # fmt: skip


def _change(entry: audit.Entry) -> str:
    """Before → after, compact: what a reviewer reads first."""
    shown = [json.dumps(v, ensure_ascii=False)[:300] for v in (entry.before, entry.after)]
    if entry.before is None:
        return shown[1] if entry.after is not None else ""
    return f"{shown[0]} → {shown[1]}"


@router.post("/alerts/{alert_id}/ack")
def ack_form(
    request: Request,
    who: Technician,
    context: Context,
    alert_id: RowId,
    comment: Annotated[str, Form(max_length=MAX_COMMENT)] = "",
    back: Annotated[str, Form(max_length=512)] = "/alerts",
) -> Response:
    try:
        before = alert_in_scope(context.store, who.scope, alert_id)
        now = time.time()
        acknowledge(
            context.store, alert_id, who.name, comment, now,
            also=audited.ack(console_actor(request, who), before, who.name, comment, now),
        )  # fmt: skip
    except NotFound as exc:
        raise not_found(str(exc)) from None
    return RedirectResponse(safe_next(back, "/alerts"), status_code=303)


@router.post("/silences")
def silence_form(
    request: Request,
    who: Technician,
    context: Context,
    commune: Annotated[str, Form(max_length=64)] = "",
    rule: Annotated[str, Form(max_length=64)] = "",
    agent: Annotated[str, Form(max_length=64)] = "",
    province: Annotated[str, Form(max_length=64)] = "",
    hours: Annotated[float, Form(gt=0, le=24 * 30, allow_inf_nan=False)] = 2.0,
    comment: Annotated[str, Form(max_length=MAX_COMMENT)] = "",
) -> Response:
    need_within(who.scope, province, commune, "the silence", f"no commune {province}/{commune}")
    now = time.time()
    try:
        add_silence(
            context.store,
            starts=now,
            ends=now + hours * 3600,
            created_by=who.name,
            now=now,
            province=province,
            commune=commune,
            rule=rule,
            agent=agent,
            comment=comment,
            also=audited.silence(console_actor(request, who), "silence_create", now),
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return RedirectResponse("/alerts", status_code=303)


@router.post("/silences/{silence_id}/delete")
def silence_delete_form(
    request: Request, who: Technician, context: Context, silence_id: RowId
) -> Response:
    write = audited.silence(console_actor(request, who), "silence_delete", time.time())
    missing = lambda: NotFound(f"no silence {silence_id}")  # noqa: E731
    try:
        delete_silence(context.store, silence_id, audited.removable(who.scope, missing, write))
    except NotFound as exc:
        raise not_found(str(exc)) from None
    return RedirectResponse("/alerts", status_code=303)


def login_redirect(request: Request, _: Exception) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
