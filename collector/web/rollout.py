"""Enrollment and central configs over HTTP.

``POST /api/v1/enroll`` is the one route without a bearer token: the enrollment
token in its body is the credential. Every request counts against its address
(``[enrollment] max_per_address`` per hour), a wrong token also against the
address's lockout like a wrong API token. The rest is for admins (tokens,
profiles, revocation) and viewers (how far the rollout has come), within their
token's scope: a province's profiles are for an admin of the whole province, a
commune's tokens and agents for an admin holding the commune; each change goes
into the audit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import Field

from agent.enrollwire import EnrollRequest
from collector.rollout import registry, tokens
from collector.rollout.enrollment import EnrollRefused
from collector.rollout.overview import CommuneRollout, communes
from collector.rollout.profiles import ProfileError
from collector.rollout.service import MAX_PROFILE_BYTES, Rollout
from collector.state import audit
from collector.web.auth import (
    Admin,
    ApiContext,
    Context,
    Reader,
    Slug,
    Technician,
    actor_of,
    client_address,
    errors,
)
from collector.web.readable import ReadableJSONResponse
from collector.web.scope import Scope, events_in_scope, need, need_within

router = APIRouter(default_response_class=ReadableJSONResponse)
_request = msgspec.json.Decoder(EnrollRequest)


class TomlResponse(PlainTextResponse):
    media_type = "application/toml"


def _rollout(context: ApiContext) -> Rollout:
    if context.rollout is None:
        raise HTTPException(404, "enrollment is not configured on this collector ([enrollment])")
    return context.rollout


@router.post(
    "/api/v1/enroll",
    status_code=201,
    tags=["enrollment"],
    responses={
        code: errors(code)[code] for code in (400, 401, 403, 404, 409, 429, 503)
    },
)  # fmt: skip
async def enroll(request: Request, context: Context) -> Response:
    """A PC enrolls: ``{"token", "agent", "password"[, "replace"]}`` → its identity,
    broker and topics (``commune-agent enroll`` does this)."""
    rollout = _rollout(context)
    address = client_address(request)
    assert context.enroll_limiter is not None
    for limiter in (context.enroll_limiter, context.limiter):
        wait = limiter.retry_after(address)
        if wait:
            raise HTTPException(
                429, "too many enrollment requests from this address: wait",
                headers={"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
    context.enroll_limiter.failed(address)  # every request counts
    try:
        body = _request.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        rollout.enroller.stats.refused["malformed"] += 1
        raise HTTPException(400, f"not an enrollment request: {exc}") from None
    try:
        answer = await run_in_threadpool(rollout.enroller.enroll, body, address)
    except EnrollRefused as exc:
        if exc.reason in ("token_unknown", "token_malformed"):
            context.limiter.failed(address)
        raise HTTPException(exc.status, str(exc)) from None
    return Response(msgspec.json.encode(answer), 201, media_type="application/json")


@dataclass
class TokenRequest:
    province: Slug
    commune: Slug
    profile: Slug = "office"
    uses: Annotated[int, Field(ge=1, le=tokens.MAX_USES)] = 60
    ttl_s: Annotated[float, Field(gt=0, le=tokens.MAX_TTL_S, allow_inf_nan=False)] = 14 * 86400.0
    allow_replace: bool = False


@dataclass
class TokenCreated:
    token: str
    """Shown once: the collector keeps only its hash."""
    id: str
    expires: float
    uses: int
    windows: str
    """The command to run on each Windows PC (the MSI's msiexec line, as administrator)."""
    linux: str


@dataclass
class TokenList:
    tokens: list[tokens.Token]


@router.post(
    "/api/v1/enrollment/tokens", status_code=201, tags=["enrollment"],
    responses=errors(400, 403, 404),
)  # fmt: skip
def create_token(
    request: Request, body: TokenRequest, caller: Admin, context: Context
) -> TokenCreated:
    """A token for one commune's PCs; the answer holds it, once."""
    rollout = _rollout(context)
    need_within(
        caller.scope, body.province, body.commune, "the token",
        f"no commune {body.province}/{body.commune}",
    )  # fmt: skip
    try:
        token, text = rollout.create_token(
            province=body.province,
            commune=body.commune,
            profile=body.profile,
            uses=body.uses,
            ttl_s=body.ttl_s,
            created_by=caller.name,
            allow_replace=body.allow_replace,
        )
    except (ProfileError, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
    # The rollout writes the token and its event in transactions of its own: the audit's
    # row follows them (the token's text is never in it).
    audit.record_alone(
        context.store, actor_of(request, caller), "enroll_token_create", token.created_at,
        province=token.province, commune=token.commune, object=token.id, after=token,
    )  # fmt: skip
    base = rollout.settings.collector_url or str(request.base_url).rstrip("/")
    windows, linux = tokens.enroll_commands(base, text)
    return TokenCreated(text, token.id, token.expires, token.uses, windows, linux)


@router.get("/api/v1/enrollment/tokens", tags=["enrollment"], responses=errors(403, 404))
def list_tokens(
    caller: Admin, context: Context, province: Slug | None = None, commune: Slug | None = None
) -> TokenList:
    _rollout(context)
    found = tokens.tokens(context.store, province, commune)
    return TokenList([t for t in found if caller.scope.holds(t.province, t.commune)])


@router.delete(
    "/api/v1/enrollment/tokens/{token_id}", tags=["enrollment"], responses=errors(403, 404)
)
def revoke_token(
    request: Request,
    token_id: Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")],
    caller: Admin,
    context: Context,
) -> tokens.Token:
    """No more PCs enroll with it (those enrolled stay)."""
    rollout = _rollout(context)
    before = next((t for t in tokens.tokens(context.store) if t.id == token_id), None)
    need(
        before is not None and caller.scope.holds(before.province, before.commune),
        f"no token {token_id}",
    )
    try:
        token = rollout.revoke_token(token_id, caller.name)
    except KeyError:
        raise HTTPException(404, f"no token {token_id}") from None
    audit.record_alone(
        context.store, actor_of(request, caller), "enroll_token_revoke", rollout.clock(),
        province=token.province, commune=token.commune, object=token.id,
        before={"revoked_at": before.revoked_at if before else None}, after=token,
    )  # fmt: skip
    return token


@dataclass
class Rollouts:
    communes: list[CommuneRollout]


@router.get("/api/v1/enrollment/communes", tags=["enrollment"], responses=errors(404))
def rollout_communes(
    who: Reader,
    context: Context,
    province: Slug,
    commune: Annotated[Slug | None, Query()] = None,
) -> Rollouts:
    """Per commune: PCs expected, enrolled, reporting; tokens; each agent's config."""
    _rollout(context)
    if not who.scope.sees(province):  # as for a province without communes
        return Rollouts([])
    found = communes(context.store, list(context.model.inventories.values()), province, time.time())
    return Rollouts(
        [
            c
            for c in found
            if commune in (None, c.commune) and who.scope.holds(c.province, c.commune)
        ]
    )


@dataclass
class Events:
    events: list[registry.Event]


@router.get("/api/v1/enrollment/events", tags=["enrollment"], responses=errors(403, 404))
def rollout_events(
    who: Technician,
    context: Context,
    province: Slug | None = None,
    commune: Slug | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Events:
    """Enrollments, replacements, refusals, revocations; newest first (the operators'
    own actions are also in ``/api/v1/audit``)."""
    _rollout(context)
    return Events(events_in_scope(context.store, who.scope, province, commune, limit))


@router.post(
    "/api/v1/agents/{province}/{commune}/{agent}/revoke",
    tags=["enrollment"],
    responses={
        **errors(403, 404),
        202: {"model": registry.Managed, "description": "recorded; the broker's part pending"},
    },
)
def revoke_agent(
    request: Request,
    response: Response,
    province: Slug,
    commune: Slug,
    agent: Slug,
    caller: Admin,
    context: Context,
) -> registry.Managed:
    """Revoked for good: recorded, its account removed from the broker (its live session
    ends at once), its certificate listed as revoked, its config withdrawn. 202 when the
    broker is away: recorded, and done at the collector's next round once it is back."""
    rollout = _rollout(context)
    key = f"{province}/{commune}/{agent}"
    need(caller.scope.holds(province, commune), f"{key} was never enrolled")
    try:
        managed, applied = rollout.enroller.revoke(key, caller.name, client_address(request))
    except KeyError:
        raise HTTPException(404, f"{key} was never enrolled") from None
    audit.record_alone(
        context.store, actor_of(request, caller), "agent_revoke", rollout.clock(),
        province=province, commune=commune, agent=agent, object=key, after=managed,
    )  # fmt: skip
    if not applied:
        response.status_code = 202
    return managed


@router.get(
    "/api/v1/profiles/{province}",
    response_class=TomlResponse,
    tags=["enrollment"],
    responses={
        code: {**answer, "content": {"application/json": {}}}
        for code, answer in errors(403, 404).items()
    },
)
def get_profiles(province: Slug, caller: Admin, context: Context) -> TomlResponse:
    """The province's check profiles file as it is on disk (TOML; it may hold secrets):
    for an admin of the whole province."""
    _whole_province(caller.scope, province)
    try:
        path = _rollout(context).profiles.path_of(province)
    except KeyError:
        raise HTTPException(404, f"no check profiles for {province}") from None
    return TomlResponse(path.read_text(encoding="utf-8"))


@router.put(
    "/api/v1/profiles/{province}", tags=["enrollment"], responses=errors(403, 404, 413, 422)
)
async def put_profiles(
    province: Slug, request: Request, caller: Admin, context: Context
) -> dict[str, str]:
    """Replace the province's check profiles (TOML body): validated like the file at start,
    for every commune and agent it names, then written and sent to the agents it changes.
    For an admin of the whole province; the audit keeps the file's SHA-256 and size
    before and after, never its text."""
    rollout = _rollout(context)
    _whole_province(caller.scope, province)
    body = await request.body()
    if len(body) > MAX_PROFILE_BYTES:
        raise HTTPException(413, f"more than {MAX_PROFILE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "not UTF-8") from None
    try:
        before = await run_in_threadpool(_file_bytes, rollout, province)
        await run_in_threadpool(
            rollout.replace_profiles, province, text, caller.name, client_address(request)
        )
    except KeyError:
        raise HTTPException(404, f"no check profiles for {province}") from None
    except ProfileError as exc:
        raise HTTPException(422, str(exc)) from None
    audit.record_alone(
        context.store, actor_of(request, caller), "profiles_replace", rollout.clock(),
        province=province, object=province,
        before=audit.file_facts(before), after=audit.file_facts(body),
    )  # fmt: skip
    return {"status": "applied"}


def _whole_province(scope: Scope, province: str) -> None:
    need_within(scope, province, "", "the province's profiles",
                f"no check profiles for {province}")  # fmt: skip


def _file_bytes(rollout: Rollout, province: str) -> bytes | None:
    """The profiles file as it is (KeyError for a province without one)."""
    path = rollout.profiles.path_of(province)
    try:
        return path.read_bytes()
    except OSError:
        return None
