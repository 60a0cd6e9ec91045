"""The collector's web application: the IOC's API and the technicians' console on one
address, behind the guard (bodies bounded, loopback mode's checks, security headers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from collector import __version__
from collector.config import ApiSection, ConsoleSection, networks
from collector.outputs.report.issuer import Issuer
from collector.rollout.service import Rollout
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import Catalogue
from collector.web.api import router
from collector.web.audit import router as audit_router
from collector.web.auth import ApiContext, caller_of
from collector.web.configkeys import router as config_keys_router
from collector.web.forward import ReadChannel, ReadForwarder
from collector.web.groups import router as groups_router
from collector.web.guard import BodyTooLarge, Guard
from collector.web.maintenance import router as maintenance_router
from collector.web.metrics import Family
from collector.web.ratelimit import FailureLimiter
from collector.web.releases import ReleaseFiles
from collector.web.releases import router as releases_router
from collector.web.rollout import router as rollout_router
from collector.web.rollouts import router as rollouts_router
from collector.web.systems import router as systems_router


async def _with_allow(request: Request, exc: Exception) -> Response:
    """Starlette's 405 names the methods of the first route matching the path only; a path
    served by several routes (GET and POST /api/v1/silences) deserves all of them."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        methods: set[str] = set()
        for route in request.app.routes:
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match != Match.NONE and hasattr(route, "methods"):
                methods |= set(route.methods or ())
        headers["Allow"] = ", ".join(sorted(methods))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _body_too_large(_: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=413)


async def _invalid(_: Request, exc: Exception) -> Response:
    """422 saying where and what, without echoing the input: it may not even be JSON
    (``Infinity``), and a 5,000-character comment need not come back."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(
    model: HealthModel,
    store: StateStore,
    settings: ApiSection,
    metrics: Callable[[], list[Family]] = list,
    healthz: Callable[[], tuple[bool, dict[str, Any]]] = lambda: (True, {}),
    console: ConsoleSection | None = None,
    rollout: Rollout | None = None,
    enroll_per_hour: int = 600,
    issuer: Issuer | None = None,
    releases: ReleaseFiles | None = None,
    systems: Callable[[], dict[str, Catalogue]] = dict,
    *,
    read_channel: ReadChannel | None = None,
    guard: bool = True,
    session_secret: bytes | None = None,
) -> FastAPI:
    """``systems``: each province's shared systems, as they are now. ``read_channel``:
    the read process the health model's reads are handed to (``web/forward.py``).
    ``guard`` False and ``session_secret``: the read process's app, behind the
    collector's guard and signing the console's cookies as the collector does."""
    # /docs and /redoc with Swagger UI's and ReDoc's files served from here: the IOC on the
    # dedicated network has no route to a CDN.
    app = FastAPIOffline(
        title="commune-monitor collector",
        version=__version__,
        description=(
            "Health of the province's communes for the IOC: anti-malware coverage, "
            "dedicated line (TSLCD) availability, video-conference readiness. "
            "Send `Authorization: Bearer <token>`. Times are Unix seconds, each with its "
            "ISO 8601 twin in Vietnam's time beside it (`fired_at` and `fired_at_iso`, "
            "`at` and `at_iso`), not listed in the schemas below; percentages are "
            "rounded to two decimals in the answers."
        ),
    )
    if read_channel is not None:
        # Added before the guard, so inside it: what is handed over was guarded here.
        app.add_middleware(ReadForwarder, channel=read_channel)
    if guard:
        app.add_middleware(Guard, open_on_loopback=settings.open_on_loopback)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.state.context = ApiContext(
        model=model,
        store=store,
        tokens={t.sha256: caller_of(t) for t in settings.tokens},
        open_on_loopback=settings.open_on_loopback,
        limiter=FailureLimiter(settings.max_auth_failures, lockout_s=float(settings.auth_lockout)),
        metrics=metrics,
        healthz=healthz,
        proxies=networks(settings.trusted_proxies),
        rollout=rollout,
        enroll_limiter=FailureLimiter(enroll_per_hour, window_s=3600.0, lockout_s=600.0),
        issuer=issuer,
        systems=systems,
        system_health=SystemsModel(store, model.inventories.values(), systems, model.clock),
    )
    app.include_router(router)
    app.include_router(rollout_router)
    app.include_router(rollouts_router)
    app.include_router(config_keys_router)
    app.include_router(maintenance_router)
    app.include_router(groups_router)
    app.include_router(audit_router)
    app.include_router(systems_router)
    app.state.releases = releases
    app.include_router(releases_router)
    app.add_exception_handler(StarletteHTTPException, _with_allow)
    if console is not None and console.enabled:
        from collector.web.console.auth import Sessions
        from collector.web.console.rolloutpage import router as rollout_page
        from collector.web.console.systempages import router as system_pages
        from collector.web.console.views import Login, compile_templates, login_redirect
        from collector.web.console.views import router as console_router

        lifetime = console.session_hours * 3600
        app.state.sessions = (
            Sessions(session_secret, lifetime)
            if session_secret is not None
            else Sessions.from_file(console.secret_file, lifetime)
        )
        app.include_router(console_router)
        app.include_router(system_pages)
        app.include_router(rollout_page)
        app.add_exception_handler(Login, login_redirect)
        compile_templates()
    return app
