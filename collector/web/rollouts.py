"""Rollouts of agent releases over HTTP: read within the token's scope, changed by admins.

A rollout spans every province of the collector: starting, pausing, resuming, halting
or promoting one takes an admin token of every province (a narrower admin is refused
with 403, as for a silence reaching beyond its scope). Every reader sees the rollouts
themselves (version, state, why), but of the fleet only its own places: the lab PCs
and pilot communes it holds, the versions and each ring's figures counted over the PCs
in its scope. Each change goes into the audit with the rollout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from collector.rollout.gates import GateError, parse_gate, say
from collector.rollout.rollouts import (
    DEFAULT_RINGS,
    MAX_LAB,
    MAX_SPREAD_S,
    RolloutError,
    Rollouts,
    fleet,
)
from collector.rollout.rollouts import Rollout as Record
from collector.web.auth import (
    ROLE_RANK,
    Admin,
    ApiContext,
    Context,
    Reader,
    actor_of,
    errors,
)
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import Scope

router = APIRouter(default_response_class=ReadableJSONResponse)
RolloutId = Annotated[str, Field(pattern=r"^[0-9][0-9.]{0,26}-[0-9]{1,6}$")]


def book_of(context: ApiContext) -> Rollouts:
    if context.rollout is None:
        raise HTTPException(404, "enrollment is not configured on this collector ([enrollment])")
    return context.rollout.rollouts


@dataclass
class RingView:
    name: str
    state: str
    """waiting, open or promoted."""
    started_at: float | None
    promoted_at: float | None
    promoted_by: str
    members: int
    online: int
    committed: int
    rolled_back: int
    offline_pct: float
    gate: str
    """The gate's judgement of an open ring: holds, what it waits for, or its breach."""


@dataclass
class RolloutView:
    id: str
    version: str
    state: str
    why: str
    breach: bool
    gate: str
    spread_s: float
    created_at: float
    created_by: str
    lab: list[str]
    """The lab PCs in the caller's scope."""
    pilot: list[str]
    """The pilot communes in the caller's scope."""
    rings: list[RingView]


@dataclass
class RolloutList:
    versions: dict[str, int]
    """Version -> PCs running it, of the enrolled PCs in the caller's scope."""
    rollouts: list[RolloutView]


def _view(book: Rollouts, rollout: Record, scope: Scope, with_figures: bool) -> RolloutView:
    agents = [a for a in fleet(book.store) if scope.holds(a.province, a.commune)]
    rings: list[RingView] = []
    progress = book.progress(rollout, agents) if with_figures else []
    for position, state in enumerate(rollout.ring_states):
        figures = progress[position].verdict if progress else None
        phase = ("promoted" if state.promoted_at is not None else
                 "open" if position <= rollout.opened else "waiting")  # fmt: skip
        gate = ""
        if figures is not None and phase == "open":
            gate = figures.breach or figures.waiting or say("holds")
        got = figures.figures if figures is not None else None
        rings.append(RingView(
            state.name, phase, state.started_at, state.promoted_at, state.promoted_by,
            got.members if got else 0, got.online if got else 0,
            got.committed if got else 0, got.rolled_back if got else 0,
            round(got.offline_pct, 2) if got else 0.0, gate,
        ))  # fmt: skip
    return RolloutView(
        rollout.id, rollout.version, rollout.state, rollout.why, rollout.breach,
        rollout.gate.describe(), rollout.spread_s, rollout.created_at, rollout.created_by,
        [k for k in rollout.lab if scope.holds_key(k)],
        [c for c in rollout.pilot if scope.holds(*c.split("/", 1))], rings,
    )  # fmt: skip


@router.get("/api/v1/rollouts", tags=["releases"], responses=errors(404))
def list_rollouts(who: Reader, context: Context) -> RolloutList:
    """The versions the PCs in scope run, and the rollouts, newest first (the latest with
    each ring's progress over the PCs in scope)."""
    return overview(book_of(context), who.scope)


def overview(book: Rollouts, scope: Scope, limit: int = 20) -> RolloutList:
    """The versions the PCs in ``scope`` run; the rollouts, newest first, the latest with
    each ring's progress over those PCs."""
    found = book.all(limit=limit)
    versions = Counter(
        a.version or "?" for a in fleet(book.store) if scope.holds(a.province, a.commune)
    )
    return RolloutList(
        dict(sorted(versions.items())),
        [_view(book, r, scope, with_figures=i == 0) for i, r in enumerate(found)],
    )


@router.get("/api/v1/rollouts/{rollout_id}", tags=["releases"], responses=errors(404))
def get_rollout(rollout_id: RolloutId, who: Reader, context: Context) -> RolloutView:
    """One rollout, each ring's progress over the PCs in scope."""
    book = book_of(context)
    try:
        return _view(book, book.get(rollout_id), who.scope, with_figures=True)
    except RolloutError as exc:
        raise HTTPException(exc.status, str(exc)) from None


def may_change(role: str, scope: Scope) -> bool:
    """Whether a caller may start, pause, resume, halt or promote a rollout: an admin
    of every province (the API's and the console's rule)."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK["admin"] and scope.everything


def province_wide(scope: Scope) -> None:
    """403 for a scope narrower than every province, naming only the scope itself."""
    if not scope.everything:
        raise HTTPException(
            403, f"a rollout reaches every province of the collector, beyond this token's scope "
            f"({scope.describe()}): it takes an admin token of every province",
        )  # fmt: skip


@dataclass
class StartRequest:
    version: Annotated[str, Field(max_length=27)]
    rings: Annotated[str, Field(max_length=200)] = DEFAULT_RINGS
    gate: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=10)] = field(
        default_factory=list
    )
    """As the command line's ``--gate``: soak=1d, committed=95, ..."""
    lab: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_LAB)] = field(
        default_factory=list
    )
    spread_s: Annotated[float, Field(ge=0, le=MAX_SPREAD_S, allow_inf_nan=False)] = 3600.0


@dataclass
class Why:
    why: Annotated[str, Field(max_length=300)] = ""


async def _carry(action: Callable[[], Record]) -> Record:
    try:
        return await run_in_threadpool(action)
    except RolloutError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post(
    "/api/v1/rollouts", status_code=201, tags=["releases"], responses=errors(400, 403, 404, 409)
)
async def start_rollout(
    request: Request, body: StartRequest, caller: Admin, context: Context
) -> RolloutView:
    """Start rolling a signed version out; its first ring is asked at once."""
    book = book_of(context)
    province_wide(caller.scope)
    try:
        gate = parse_gate(body.gate)
    except GateError as exc:
        raise HTTPException(400, str(exc)) from None
    actor = actor_of(request, caller)
    rollout = await _carry(
        lambda: book.start(
            body.version, body.rings, gate, actor, lab=body.lab, spread_s=body.spread_s
        )
    )
    return _view(book, rollout, caller.scope, with_figures=True)


def _change_route(action: str) -> None:
    """``POST /api/v1/rollouts/{id}/<action>``, for an admin of every province."""

    async def change(
        request: Request, rollout_id: RolloutId, caller: Admin, context: Context,
        body: Why | None = None,
    ) -> RolloutView:  # fmt: skip
        book = book_of(context)
        province_wide(caller.scope)
        actor, why = actor_of(request, caller), (body.why if body else "")
        act: dict[str, Callable[[], Record]] = {
            "pause": lambda: book.pause(rollout_id, why, actor),
            "resume": lambda: book.resume(rollout_id, actor),
            "halt": lambda: book.halt(rollout_id, why, actor),
            "promote": lambda: book.promote(rollout_id, actor),
        }
        rollout = await _carry(act[action])
        return _view(book, rollout, caller.scope, with_figures=True)

    change.__doc__ = {
        "pause": "Pause a running rollout (``why`` for the status and the audit).",
        "resume": "Resume a paused rollout (a breach that persists pauses it again).",
        "halt": "Halt a rollout for good: no PC is asked for its version any more.",
        "promote": "Promote the open ring whatever its gate; a paused rollout runs again.",
    }[action]
    router.add_api_route(
        f"/api/v1/rollouts/{{rollout_id}}/{action}", change, methods=["POST"],
        tags=["releases"], responses=errors(400, 403, 404, 409), name=f"{action}_rollout",
    )  # fmt: skip


for _action in ("pause", "resume", "halt", "promote"):
    _change_route(_action)
