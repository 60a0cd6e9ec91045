"""The console's rollout page: enrollment commune by commune, the release's rollout ring
by ring, and the forms that start, pause, resume and halt a rollout.

The rule is the API's (``web/rollouts.py``): a rollout reaches every province, so only
an admin of every province changes one; anyone else reads the page without its forms,
and a form posted anyway is refused with the API's 403. The start form takes what
``rollout start`` takes, with the same defaults and the same checks (``Rollouts.start``
makes them), the version chosen among those the release repository has signed. A
refusal shows the page again, what was typed kept and the reason in the page's
language; a halt, which cannot be undone, asks to be confirmed. Each change goes into
the audit with the session's holder and address, through the console.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agent.units import parse_duration
from collector.common.natural import natural_key
from collector.rollout import registry
from collector.rollout.gates import GateError, parse_gate
from collector.rollout.overview import communes
from collector.rollout.rollouts import DEFAULT_RINGS, MAX_LAB, RolloutError, Rollouts
from collector.rollout.rollouts import Rollout as Record
from collector.state import audit
from collector.web import rollouts
from collector.web.auth import ROLE_RANK, ApiContext
from collector.web.console import progress
from collector.web.console.auth import Session
from collector.web.console.forms import Refusal, rollout_refusal
from collector.web.console.views import (
    Context,
    Viewer,
    console_actor,
    csrf_checked,
    page,
    place_names,
)
from collector.web.scope import events_in_scope, not_found

router = APIRouter(include_in_schema=False)
#: ``rollout start``'s own default spread.
DEFAULT_SPREAD = "1h"


def _rollout_admin(
    request: Request, viewer: Viewer, csrf: Annotated[str, Form(max_length=64)] = ""
) -> Session:
    csrf_checked(request, csrf)
    if ROLE_RANK.get(viewer.role, 0) < ROLE_RANK["admin"]:
        raise HTTPException(403, f"this account is {viewer.role}: only an admin changes rollouts")
    rollouts.province_wide(viewer.scope)
    return viewer


RolloutAdmin = Annotated[Session, Depends(_rollout_admin)]
Province = Annotated[str, Form(max_length=64)]


def _book(context: ApiContext) -> Rollouts:
    if context.rollout is None:
        raise not_found("enrollment is not configured on this collector ([enrollment])")
    return context.rollout.rollouts


@router.get("/rollout", response_class=HTMLResponse)
def rollout_page(
    request: Request,
    viewer: Viewer,
    context: Context,
    province: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """Per commune: PCs expected, enrolled, reporting, on the current config; the agents
    whose config differs from what the collector wants, and why; the enrollment events;
    the release's rollout, and for an admin of every province the forms that change it."""
    return _rollout(request, viewer, context, province)


def _rollout(
    request: Request,
    viewer: Session,
    context: ApiContext,
    province: str,
    refusal: Refusal | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    scope = viewer.scope
    provinces = scope.provinces_of(
        sorted(context.model.inventories)
        or sorted({m.province for m in registry.managed(context.store)})
    )
    chosen = province if province in provinces else (provinces[0] if provinces else "")
    found = (
        [
            c
            for c in communes(
                context.store, list(context.model.inventories.values()), chosen, time.time()
            )
            if scope.holds(c.province, c.commune)
        ]
        if context.rollout is not None and chosen
        else []
    )
    behind = [
        (c.commune, a)
        for c in found
        for a in c.agents
        if a.revoked_at is None and (not a.config_current or a.config_error)
    ]
    events = events_in_scope(context.store, scope, chosen, None, 50) if context.rollout else []
    release = None
    may_change = rollouts.may_change(viewer.role, scope)
    signed: list[str] = []
    if context.rollout is not None:
        book = context.rollout.rollouts
        listed = rollouts.overview(book, scope, limit=1)
        release = (listed.versions, listed.rollouts[0] if listed.rollouts else None)
        if may_change:
            signed = sorted(book.signed_versions(), key=natural_key, reverse=True)
            typed = typed or {"rings": DEFAULT_RINGS, "gate": "", "lab": " ".join(book.lab),
                              "spread": DEFAULT_SPREAD}  # fmt: skip
    inventory = context.model.inventories.get(chosen)
    response = page(
        request, "rollout.html", viewer, configured=context.rollout is not None,
        provinces=provinces, province=chosen, communes=progress.worst_first(found),
        totals=progress.totals(found), behind=behind, events=events, release=release,
        province_name=inventory.name if inventory and inventory.name else chosen,
        province_names={p: i.name or p for p, i in context.model.inventories.items()},
        names=place_names(context), may_change=may_change, signed=signed,
        default_gate=parse_gate([]).describe(), refusal=refusal, typed=typed or {},
    )  # fmt: skip
    response.status_code = status
    return response


def _back(province: str) -> Response:
    return RedirectResponse(f"/rollout?province={quote(province)}#release", status_code=303)


def _lab_pcs(text: str) -> list[str]:
    """The lab PCs as typed: separated by commas, spaces or lines."""
    return [key for key in re.split(r"[\s,]+", text) if key]


@router.post("/rollout/start")
def start_form(
    request: Request,
    who: RolloutAdmin,
    context: Context,
    version: Annotated[str, Form(max_length=27)],
    province: Province = "",
    rings: Annotated[str, Form(max_length=200)] = DEFAULT_RINGS,
    gate: Annotated[str, Form(max_length=1000)] = "",
    lab: Annotated[str, Form(max_length=MAX_LAB * 201)] = "",
    spread: Annotated[str, Form(max_length=16)] = DEFAULT_SPREAD,
) -> Response:
    """A rollout from the start form, as ``rollout start`` would make it; refused, the
    page again with the form as typed and why beside it."""
    book = _book(context)
    typed = {"version": version, "rings": rings, "gate": gate, "lab": lab, "spread": spread}
    actor = console_actor(request, who)
    try:
        gates = parse_gate([gate] if gate.strip() else [])
    except GateError:
        return _refused(
            request, who, context, province, typed, Refusal("gate", "rollout_error_gate")
        )
    try:
        spread_s = parse_duration(spread.strip())
    except ValueError:
        refusal = Refusal("spread", "rollout_error_spread")
        return _refused(request, who, context, province, typed, refusal)
    try:
        book.start(version.strip(), rings, gates, actor, lab=_lab_pcs(lab), spread_s=spread_s)
    except RolloutError as exc:
        refusal = rollout_refusal(exc.field, exc.status, "start")
        return _refused(request, who, context, province, typed, refusal, exc.status)
    return _back(province)


def _refused(
    request: Request,
    who: Session,
    context: ApiContext,
    province: str,
    typed: dict[str, str],
    refusal: Refusal,
    status: int = 400,
) -> HTMLResponse:
    # A refused form is 422 as the plan form's; a rollout changed meanwhile, 409.
    return _rollout(request, who, context, province, refusal, typed, 409 if status == 409 else 422)


#: What each change of the page's forms does to the rollout.
CHANGES: dict[str, Callable[[Rollouts, str, str, audit.Actor], Record]] = {
    "pause": lambda book, rollout_id, why, actor: book.pause(rollout_id, why, actor),
    "resume": lambda book, rollout_id, why, actor: book.resume(rollout_id, actor),
    "halt": lambda book, rollout_id, why, actor: book.halt(rollout_id, why, actor),
}


def _change_route(action: str) -> None:
    """``POST /rollout/{id}/<action>``: 404 as the API for an unknown rollout; one whose
    state changed meanwhile (a page left open), the page again saying so."""

    def change(
        request: Request,
        who: RolloutAdmin,
        context: Context,
        rollout_id: rollouts.RolloutId,
        province: Province = "",
        why: Annotated[str, Form(max_length=300)] = "",
        confirm: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        if action == "halt" and confirm != "1":
            refusal = Refusal("confirm", "rollout_error_confirm")
            return _refused(request, who, context, province, {"why": why}, refusal)
        book = _book(context)
        try:
            CHANGES[action](book, rollout_id, why, console_actor(request, who))
        except RolloutError as exc:
            if exc.status == 404:
                raise not_found(str(exc)) from None
            refusal = rollout_refusal(exc.field, exc.status, "change")
            return _refused(request, who, context, province, {}, refusal, exc.status)
        return _back(province)

    change.__doc__ = {
        "pause": "Pause a running rollout, saying why (for the status and the audit).",
        "resume": "Resume a paused rollout (a breach that persists pauses it again).",
        "halt": "Halt a rollout for good, once confirmed: no PC is asked for its version.",
    }[action]
    router.add_api_route(
        f"/rollout/{{rollout_id}}/{action}", change, methods=["POST"],
        name=f"{action}_rollout_form",
    )  # fmt: skip


for _action in CHANGES:
    _change_route(_action)
