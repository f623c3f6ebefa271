"""The app factory: ``create_app(ws)`` builds the API and dashboard, ``serve(ws)`` runs it.

Reads are open unless ``[server] read_token_required = true``, and show no internals of the
machine (``exposure.py``); the audit log, and writes (rollback, approve, acknowledge, resolve),
need ``Authorization: Bearer TOKEN`` and writes are audited as ``api:<token_name>``. A
credential in a URL is refused and redacted from the logs (``redact.py``). Forecasts are served
from an in-memory copy of each pipeline's current release (``cache.py``), never from DuckDB;
the routes that need the store (a series' history, data quality) open it read-only for one
query and say so when another process holds it.

Every error is ``{"error": ..., "detail": ...}`` with its status code documented in the OpenAPI
document: 400 a bad parameter, 401 no token, 403 a wrong token (or none configured), 404 an
unknown pipeline, series, release, run or incident (named), 422 a malformed body, 503 the store
busy. Unknown names are looked up, never turned into paths or SQL: pipeline names are checked
against ``config.PIPELINE_NAME`` and the pipelines directory, release ids against the listing.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import Depends, FastAPI

from steadycast.errors import SteadycastError
from steadycast.server import routes, schemas
from steadycast.server._http_metrics import HttpMetrics, RequestStats
from steadycast.server.deps import ServerState, require_read
from steadycast.server.middleware import (
    NoSecretsInUrl,
    SecurityHeaders,
    WritesNeedToken,
    install_error_handlers,
)
from steadycast.server.redact import install_log_redaction
from steadycast.server.routes.forecasts import ForecastFastPath
from steadycast.server.routes.health import package_version
from steadycast.server.settings import load_settings
from steadycast.workspace import Workspace

__all__ = ["create_app", "serve"]


def create_app(ws: Workspace, *, token: str | None = None) -> FastAPI:
    """The API and dashboard for one workspace.

    ``token`` overrides ``STEADYCAST_API_TOKEN`` and ``[server] token_file``; a token file its
    group or other users can read or write is a ``ConfigError`` here, at start-up, not at the
    first write.
    """
    state = ServerState(ws, load_settings(ws, token))
    app = FastAPI(
        title="steadycast",
        version=package_version(),
        description="Forecasts that just work: read the published forecasts, runs, incidents "
        "and audit log; roll back, approve and acknowledge with a token.",
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.server = state
    install_error_handlers(app)
    # The last added runs first: headers on everything, then the URL and write checks.
    app.add_middleware(ForecastFastPath, state=state)
    app.add_middleware(WritesNeedToken, state=state)
    app.add_middleware(NoSecretsInUrl)
    app.add_middleware(SecurityHeaders)
    # Outermost: every request is counted, refused ones and the fast path's included.
    app.state.http_requests = RequestStats()
    app.add_middleware(HttpMetrics, stats=app.state.http_requests, routes=app.router.routes)

    # Open reads carry no dependency at all: solving even an empty one costs on the hot path.
    guarded = state.settings.read_token_required
    read = [Depends(require_read)] if guarded else []
    read_errors = schemas.error_responses(401, 403) if guarded else {}
    app.include_router(routes.health.router)
    for router in routes.GUARDED:
        app.include_router(router, dependencies=read, responses=read_errors)
    routes.dashboard.install(app)
    return app


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
    """Run the API and dashboard with uvicorn until interrupted (``steadycast serve``).

    uvicorn's access log records the request line and status only, never headers, so the
    Authorization header (the token) never reaches a log; a token put in the URL instead is
    refused and redacted from every log line (``redact.py``).
    """
    import uvicorn

    app = create_app(ws)
    options: dict[str, Any] = {"log_level": "info", "server_header": False, **uvicorn_options}
    config = uvicorn.Config(app, host=host, port=port, **options)
    # After Config: it (re)configures uvicorn's loggers and handlers, which get the filter.
    install_log_redaction(cast(ServerState, app.state.server).settings.token)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SteadycastError(
            f"the server could not start on {host}:{port} (the reason is logged above; is the "
            "port in use? choose another with --port)"
        )
