"""Who asks, shared by the API and the console: tokens, their roles and scopes, the
request's context.

Tokens are configured as their SHA-256; a caller is a token's name, role and scope
(``collector/web/scope.py``). Wrong tokens count against the client's address
(``[api] trusted_proxies`` decide what that address is) until it is locked out for a
while.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as FastApiPath
from pydantic import Field

from collector.config import ApiToken, Network
from collector.outputs.report.issuer import Issuer
from collector.rollout.service import Rollout
from collector.state.audit import Actor
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import Catalogue
from collector.web.guard import client_address as _client_address
from collector.web.metrics import Family
from collector.web.ratelimit import FailureLimiter
from collector.web.scope import EVERYWHERE, Scope


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    """viewer, technician or admin."""
    scope: Scope = EVERYWHERE


ROLE_RANK: dict[str, int] = {"viewer": 0, "technician": 1, "admin": 2}


def caller_of(token: ApiToken) -> Caller:
    """Who holds a configured token: "read" (the former name) is a viewer."""
    role = "viewer" if token.role == "read" else token.role
    return Caller(token.name, role, Scope(tuple(token.provinces), tuple(token.communes)))


@dataclass
class ApiContext:
    model: HealthModel
    store: StateStore
    tokens: dict[str, Caller]
    """SHA-256 of each token → who holds it."""
    open_on_loopback: bool
    limiter: FailureLimiter
    metrics: Callable[[], list[Family]]
    healthz: Callable[[], tuple[bool, dict[str, Any]]]
    proxies: tuple[Network, ...] = ()
    """Reverse proxies whose forwarded headers are believed."""
    rollout: Rollout | None = None
    """Enrollment and central configs, when [enrollment] is configured."""
    enroll_limiter: FailureLimiter | None = None
    """Enrollment requests per address (every request counts)."""
    issuer: Issuer | None = None
    """Who issues the report's Word document ([report])."""
    systems: Callable[[], dict[str, Catalogue]] = dict
    """Each province's catalogue of shared systems, as it is now ([collector] systems)."""
    system_health: SystemsModel | None = None
    """How the shared systems answer the communes (None: no catalogue configured)."""


#: A topic level (the contract's IDENT_PATTERN): pydantic's regular expressions end at
#: the end of the text already, without the contract's look-ahead.
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]


def client_address(request: Request) -> str:
    context: ApiContext = request.app.state.context
    return _client_address(request, context.proxies)


def actor_of(request: Request, who: Caller, via: str = "api") -> Actor:
    """Who does something, for the audit: the token's holder, from the client's address."""
    return Actor(who.name, who.role, client_address(request), via)


def check_token(context: ApiContext, address: str, token: str) -> Caller | None:
    """The token's holder, or None; raises 429 while the address is locked out."""
    wait = context.limiter.retry_after(address)
    if wait:
        raise HTTPException(
            429,
            "too many wrong tokens from this address: wait",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    digest = token_digest(token.strip())
    for known, who in context.tokens.items():
        if hmac.compare_digest(known, digest):
            context.limiter.succeeded(address)
            return who
    context.limiter.failed(address)
    return None


#: A row id: SQLite's integers are 64-bit.
RowId = Annotated[int, FastApiPath(ge=1, le=2**63 - 1)]


# The API's callers: a bearer token (or loopback in development), and what its role may do.


def bearer_caller(request: Request, context: Context) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        who = check_token(context, client_address(request), token)
        if who is not None:
            return who
        raise HTTPException(
            401, "unknown token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    if context.open_on_loopback:  # a development instance on loopback: all it can do
        return Caller("loopback", "admin")
    raise HTTPException(
        401, "this API needs Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"}
    )


Reader = Annotated[Caller, Depends(bearer_caller)]


def _technician(caller: Reader) -> Caller:
    if ROLE_RANK[caller.role] < ROLE_RANK["technician"]:
        raise HTTPException(403, f"token {caller.name!r} is {caller.role}: it cannot change alerts")
    return caller


def _admin(caller: Reader) -> Caller:
    if ROLE_RANK[caller.role] < ROLE_RANK["admin"]:
        raise HTTPException(
            403, f"token {caller.name!r} is {caller.role}: only an admin manages enrollment"
        )
    return caller


Technician = Annotated[Caller, Depends(_technician)]
Admin = Annotated[Caller, Depends(_admin)]


@dataclass
class Problem:
    detail: str
    """What was wrong, in words."""


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: 401 and 429 (tokens) on every protected one."""
    meaning = {
        401: "no token, or a wrong one",
        403: "the token's role may not do this",
        404: "no such thing",
        409: "ambiguous, or in the way of something that exists",
        400: "a value the request carries makes no sense (dates, an empty silence)",
        413: "the body is larger than allowed",
        422: "a value is not of the documented form",
        429: "too many wrong tokens from this address: wait (Retry-After)",
        503: "a part the collector needs for this is away: try again",
    }
    return {c: {"model": Problem, "description": meaning[c]} for c in (401, 429, *codes)}
