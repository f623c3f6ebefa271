"""The HTTP API and dashboard: ``create_app(ws)`` builds it, ``serve(ws)`` runs it with uvicorn.

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

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# Annotated dependencies are local to create_app.
import contextlib
import hmac
import inspect
import json
import logging
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, ClassVar, cast
from urllib.parse import quote

import anyio.to_thread
import plotly
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steadycast.config import PIPELINE_NAME
from steadycast.errors import (
    ConfigError,
    NotFoundError,
    SteadycastError,
    StoreBusyError,
    UsageError,
    WorkspaceError,
)
from steadycast.ops import hogs as hogs_mod
from steadycast.ops import incidents as incidents_mod
from steadycast.ops.metrics import render_metrics
from steadycast.pipeline import levers
from steadycast.server import schemas
from steadycast.server.cache import ReleaseCache, Snapshot
from steadycast.server.exposure import PublicView
from steadycast.server.redact import install_log_redaction, secret_params
from steadycast.server.settings import HOW_TO_CONFIGURE, ServerSettings, load_settings
from steadycast.storage import control, releases, store
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace

__all__ = ["create_app", "serve"]

log = logging.getLogger("steadycast.server")

STATIC = Path(__file__).resolve().parent / "static"
RELEASE_HEADER = "X-Steadycast-Release"
FORMATS = ("json", "csv")
STORE_WAIT_S = 1.0
MAX_ID_ECHO = 5

_DESCRIPTIONS = {
    400: "a parameter is not valid (the message names it)",
    401: "no `Authorization: Bearer TOKEN` header",
    403: "the token is wrong, or no token is configured on the server",
    404: "the pipeline, series, release, run or incident does not exist (named in the message)",
    422: "the request body or a parameter has the wrong shape",
    501: "not available in this version",
    503: "the store is in use by another process; try again",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route can answer, all with the uniform body."""
    return {c: {"model": schemas.ErrorBody, "description": _DESCRIPTIONS[c]} for c in codes}


def _package_version() -> str:
    try:
        return version("steadycast")
    except PackageNotFoundError:
        return "unknown"


def _names(ids: list[str]) -> str:
    shown = ", ".join(repr(i[:80]) for i in ids[:MAX_ID_ECHO])
    more = len(ids) - MAX_ID_ECHO
    return shown + (f" and {more} more" if more > 0 else "")


def _plain(value: Any) -> dict[str, Any]:
    """A dict made JSON-safe (datetimes, numpy scalars, NaN-free) for a response model."""
    return cast(dict[str, Any], jsonable_encoder(value))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _header_value(text: str) -> str:
    """A release id as a header value (ids are ASCII in practice; anything else is escaped)."""
    return quote(text, safe="!#$&'()*+,-./:;<=>?@[]^_`{|}~ ")


class _SecurityHeaders:
    """``nosniff`` everywhere and a strict CSP on the dashboard (everything is same-origin).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs about a third of the
    forecast route's time per request.
    """

    API_HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [(b"x-content-type-options", b"nosniff")]
    PAGE_HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        *API_HEADERS,
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            b"frame-ancestors 'none'",
        ),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.API_HEADERS if scope["path"].startswith("/api/") else self.PAGE_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _Api:
    """The state behind the routes: the workspace, the settings and the release caches."""

    def __init__(self, ws: Workspace, settings: ServerSettings) -> None:
        self.ws = ws
        self.settings = settings
        self.caches: dict[str, ReleaseCache] = {}

    def pipeline(self, name: str) -> str:
        """The name, once it is known to be a pipeline; it only becomes a path after the check."""
        if not PIPELINE_NAME.match(name) or not (self.ws.pipelines_dir / f"{name}.toml").is_file():
            known = ", ".join(self.ws.pipeline_names()) or "none yet"
            raise NotFoundError(f"no pipeline {name[:80]!r} (known: {known})")
        return name

    def cache(self, pipeline: str) -> ReleaseCache:
        name = self.pipeline(pipeline)
        found = self.caches.get(name)
        if found is None:
            found = self.caches.setdefault(
                name,
                ReleaseCache(self.ws.releases_dir, name, self.ws.pipelines_dir / f"{name}.toml"),
            )
        return found

    def snapshot_now(self, cache: ReleaseCache) -> Snapshot:
        """The current snapshot, loading it in this (worker) thread if the pointer moved."""
        held = cache.peek()
        if held is None or not cache.is_fresh():
            held = cache.refresh()
        return self._required(cache, held)

    async def snapshot(self, cache: ReleaseCache) -> Snapshot:
        """The current snapshot without ever making a request wait on a release being read.

        When the pointer has moved, the held snapshot is served while a background thread
        loads the new release (old or new, never half); only the very first request of a
        pipeline, with nothing held yet, waits for its load (in a worker thread).
        """
        held = cache.serving()
        if held is not None:
            return held
        return self._required(cache, await anyio.to_thread.run_sync(cache.refresh))

    @staticmethod
    def _required(cache: ReleaseCache, held: Snapshot | None) -> Snapshot:
        if held is None:
            raise NotFoundError(
                f"pipeline {cache.pipeline!r} has no published release yet; "
                f"run `steadycast run {cache.pipeline}`"
            )
        return held

    def check_token(self, creds: HTTPAuthorizationCredentials | None) -> None:
        token = self.settings.token
        if token is None:
            raise HTTPException(403, HOW_TO_CONFIGURE)
        if creds is None or not creds.credentials:
            raise HTTPException(
                401,
                "this request needs an API token: send `Authorization: Bearer TOKEN`",
                headers={"WWW-Authenticate": 'Bearer realm="steadycast"'},
            )
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "the API token is not valid")


def _error_response(
    status: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": jsonable_encoder(detail)}, status_code=status, headers=headers
    )


_ERROR_NAMES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
}


def _http_error_response(exc: HTTPException) -> JSONResponse:
    return _error_response(
        exc.status_code,
        _ERROR_NAMES.get(exc.status_code, "error"),
        exc.detail,
        dict(exc.headers) if exc.headers else None,
    )


class _WritesNeedToken:
    """Refuse a write without a valid token before its body is read.

    FastAPI reads and validates a request body before it runs the route's dependencies, so an
    unauthenticated POST with a malformed body would otherwise get a 400 or 422 describing the
    body (read in full) instead of its 401/403. Every method but GET, HEAD and OPTIONS under
    ``/api/`` is a write; the routes keep their own check too.
    """

    READS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, api: _Api, bearer: HTTPBearer) -> None:
        self.app = app
        self.api = api
        self.bearer = bearer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in self.READS
            and scope["path"].startswith("/api/")
        ):
            try:
                self.api.check_token(await self.bearer(Request(scope)))
            except HTTPException as exc:
                await _http_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _NoSecretsInUrl:
    """Refuse a request that carries a credential in its query string, on every route.

    A URL ends up in access logs, browser history and proxies; the token belongs in the
    ``Authorization`` header. The refusal does not say whether the value was a valid token,
    and the access log line of the request is redacted (``redact.py``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            found = secret_params(scope["query_string"].decode("latin-1"))
            if found:
                names = ", ".join(repr(n[:40]) for n in dict.fromkeys(found))
                response = _error_response(
                    400,
                    "bad request",
                    f"credentials are not accepted in the URL (query parameter {names}): URLs "
                    "are written to logs and browser history. Send the token in the header "
                    "`Authorization: Bearer TOKEN`, and replace it if it was a real one",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for HTTPException only
        return _http_error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        for e in errors:
            e.pop("input", None)  # never echo a body back (it may hold a token someone pasted)
            e.pop("ctx", None)
        return _error_response(422, "invalid request", errors)

    async def steadycast_error(request: Request, exc: Exception) -> Response:
        # Messages name files by their path (the store's, when it is busy): not for open readers.
        message = cast(PublicView, request.app.state.public).text(str(exc))
        if isinstance(exc, NotFoundError):
            return _error_response(404, "not found", message)
        if isinstance(exc, UsageError | ConfigError):
            return _error_response(400, "bad request", message)
        if isinstance(exc, StoreBusyError):
            return _error_response(503, "store busy", message)
        log.error("request failed: %s", exc)
        return _error_response(500, "internal error", message)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error while serving a request", exc_info=exc)
        return _error_response(500, "internal error", "see the server log")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SteadycastError, steadycast_error)
    app.add_exception_handler(Exception, unexpected)


def _forecast_payload(
    snap: Snapshot, ids: list[str] | None, fmt: str
) -> tuple[bytes, str, str] | list[str]:
    """(body, media type, release header) of a forecast response, or the ids not in it."""
    if ids:
        wanted = list(dict.fromkeys(ids))
        missing = [i for i in wanted if i not in snap.json_rows]
        if missing:
            return missing
    else:
        wanted = snap.series
    release = _header_value(snap.release_id)
    if fmt == "csv":
        lines = snap.csv_rows()
        body = snap.csv_header() + b"".join(lines[i] + b"\n" for i in wanted)
        return body, "text/csv; charset=utf-8", release
    rows = snap.json_rows
    body = b"".join(
        (
            snap.json_head,
            b",".join(rows[i] for i in wanted),
            b"]}",
        )
    )
    return body, "application/json", release


def _forecast_body(snap: Snapshot, ids: list[str] | None, fmt: str) -> Response:
    payload = _forecast_payload(snap, ids, fmt)
    if isinstance(payload, list):
        raise NotFoundError(
            f"no series {_names(payload)} in release {snap.release_id} of {snap.pipeline!r}"
        )
    body, media_type, release = payload
    return Response(body, media_type=media_type, headers={RELEASE_HEADER: release})


class _ForecastFastPath:
    """The forecast route without FastAPI's routing and parameter solving, for the common case.

    A single-series read is the hot path (thousands per second), and FastAPI's per-request
    machinery costs more than building the answer. This ASGI layer answers a plain
    ``GET .../forecast`` whose pipeline is cached and fresh and whose series all exist, with
    exactly the bytes and headers the FastAPI route would send; anything else (an unknown name,
    a bad format, an unexpected parameter, a token-protected server, a release still to load)
    falls through to the route, which documents it and produces the uniform errors.
    """

    PREFIX = "/api/v1/pipelines/"
    SUFFIX = "/forecast"
    PARAMS = frozenset({"series", "format"})

    def __init__(self, app: ASGIApp, api: _Api) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            answer = self._answer(scope)
            if answer is not None:
                body, media_type, release = answer
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", media_type.encode()),
                            (RELEASE_HEADER.lower().encode(), release.encode("latin-1")),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> tuple[bytes, str, str] | None:
        path: str = scope["path"]
        if not (path.startswith(self.PREFIX) and path.endswith(self.SUFFIX)):
            return None
        api = self.api
        if api.settings.read_token_required:
            return None
        cache = api.caches.get(path[len(self.PREFIX) : -len(self.SUFFIX)])
        if cache is None or not cache.pipeline_file.is_file():
            return None
        snap = cache.serving()
        if snap is None:
            return None
        query = QueryParams(scope["query_string"])
        if not self.PARAMS.issuperset(query.keys()):
            return None
        fmt = query.get("format", "json")
        if fmt not in FORMATS or len(query.getlist("format")) > 1:
            return None
        payload = _forecast_payload(snap, query.getlist("series") or None, fmt)
        return None if isinstance(payload, list) else payload


def _series_store(
    ws: Workspace,
    pipeline: str,
    series_id: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """History before ``start`` (newest ``limit`` points) and actuals in [start, end]."""
    with store.reading(ws.store_path, wait_s=STORE_WAIT_S) as con:
        if start is None:
            tail = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? "
                "ORDER BY ds DESC LIMIT ?",
                [pipeline, series_id, limit],
            ).fetchall()
            actual: list[Any] = []
        else:
            tail = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? AND ds < ? "
                "ORDER BY ds DESC LIMIT ?",
                [pipeline, series_id, start, limit],
            ).fetchall()
            actual = con.execute(
                "SELECT ds, y FROM observations WHERE pipeline = ? AND unique_id = ? "
                "AND ds >= ? AND ds <= ? ORDER BY ds",
                [pipeline, series_id, start, end],
            ).fetchall()
    history = [{"ds": _iso(ds), "y": float(y)} for ds, y in reversed(tail)]
    actuals = [{"ds": _iso(ds), "y": float(y)} for ds, y in actual]
    return history, actuals


def _quality(ws: Workspace, pipeline: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pipeline": pipeline,
        "store_readable": False,
        "quarantined_rows": None,
        "quarantine": [],
        "checks": None,
        "checks_run_id": None,
    }
    try:
        with store.reading(ws.store_path, wait_s=STORE_WAIT_S) as con:
            counts = con.execute(
                "SELECT reason, count(*) FROM quarantine WHERE pipeline = ? "
                "GROUP BY reason ORDER BY count(*) DESC, reason",
                [pipeline],
            ).fetchall()
            has_checks = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'check_results'"
            ).fetchone()
            if has_checks and has_checks[0]:
                latest = con.execute(
                    "SELECT run_id FROM check_results WHERE pipeline = ? "
                    'ORDER BY "at" DESC NULLS LAST LIMIT 1',
                    [pipeline],
                ).fetchone()
                if latest is not None:
                    frame = con.execute(
                        "SELECT * FROM check_results WHERE pipeline = ? AND run_id = ? "
                        'ORDER BY passed, severity DESC, "check", unique_id',
                        [pipeline, latest[0]],
                    ).fetchall()
                    names = [d[0] for d in con.description or []]
                    out["checks"] = [dict(zip(names, row, strict=True)) for row in frame]
                    out["checks_run_id"] = str(latest[0])
    except (StoreBusyError, WorkspaceError):
        return out
    out["store_readable"] = True
    out["quarantine"] = [{"reason": str(r), "rows": int(n)} for r, n in counts]
    out["quarantined_rows"] = sum(int(n) for _, n in counts)
    if out["checks"] is None:
        runs = hogs_mod.run_history(ws, pipeline, limit=1)
        detail = runs[0].get("detail") if runs else None
        if isinstance(detail, dict) and isinstance(detail.get("checks"), list):
            out["checks"] = detail["checks"]
            out["checks_run_id"] = runs[0]["run_id"]
    return _plain(out)


def create_app(ws: Workspace, *, token: str | None = None) -> FastAPI:
    """The API and dashboard for one workspace.

    ``token`` overrides ``STEADYCAST_API_TOKEN`` and ``[server] token_file``; a token file its
    group or other users can read or write is a ``ConfigError`` here, at start-up, not at the
    first write.
    """
    settings = load_settings(ws, token)
    api = _Api(ws, settings)
    # Every read answers without the machine's details (paths, pids, hosts, OS users).
    public = PublicView(ws.root)
    app = FastAPI(
        title="steadycast",
        version=_package_version(),
        description="Forecasts that just work: read the published forecasts, runs, incidents "
        "and audit log; roll back, approve and acknowledge with a token.",
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.api = api
    app.state.public = public
    _install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="the API token (STEADYCAST_API_TOKEN)")
    Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    # Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, and that
    # hop alone halves the forecast route's throughput.
    async def require_write(creds: Creds) -> str:
        api.check_token(creds)
        return settings.actor

    async def require_read(creds: Creds) -> None:
        if settings.read_token_required:
            api.check_token(creds)

    # Open reads carry no dependency at all: solving even an empty one costs on the hot path.
    read = [Depends(require_read)] if settings.read_token_required else []
    read_errors = (401, 403) if settings.read_token_required else ()
    Actor = Annotated[str, Depends(require_write)]

    app.add_middleware(_ForecastFastPath, api=api)
    app.add_middleware(_WritesNeedToken, api=api, bearer=bearer)
    app.add_middleware(_NoSecretsInUrl)
    app.add_middleware(_SecurityHeaders)

    # ------------------------------------------------------------------ health and metrics

    @app.get("/healthz", response_model=schemas.Health, tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers as long as the process serves requests."""
        return {"status": "ok", "version": _package_version()}

    @app.get(
        "/metrics",
        tags=["ops"],
        dependencies=read,
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
            **_errors(*read_errors),
        },
    )
    def metrics() -> Response:
        """Prometheus metrics, read from the records at each scrape (see ``ops/metrics.py``)."""
        return Response(render_metrics(ws), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ pipelines and forecasts

    @app.get(
        "/api/v1/pipelines",
        response_model=schemas.PipelineList,
        tags=["pipelines"],
        dependencies=read,
        responses=_errors(*read_errors),
    )
    def pipelines() -> dict[str, Any]:
        """Every pipeline with its last run, gate results, current release and incidents."""
        live: dict[str, dict[str, int]] = {}
        for inc in incidents_mod.list_incidents(ws.control_path):
            if inc.state in ("open", "acknowledged"):
                counts = live.setdefault(inc.pipeline, {"open": 0, "acknowledged": 0})
                counts[inc.state] += 1
        out = []
        for name in ws.pipeline_names():
            runs = hogs_mod.run_history(ws, name, limit=1)
            last = runs[0] if runs else None
            detail = last.get("detail") if last else None
            gate = detail.get("gate") if isinstance(detail, dict) else None
            counts = live.get(name, {"open": 0, "acknowledged": 0})
            out.append(
                {
                    "name": name,
                    "last_run": public(
                        jsonable_encoder(
                            {k: v for k, v in last.items() if k not in ("stages", "detail")}
                        )
                    )
                    if last
                    else None,
                    "gate": public(gate) if isinstance(gate, list) else None,
                    "current_release": releases.current_id(ws.releases_dir, name),
                    "open_incidents": counts["open"],
                    "acknowledged_incidents": counts["acknowledged"],
                }
            )
        return {"pipelines": out}

    @app.get(
        "/api/v1/pipelines/{pipeline}/forecast",
        response_model=schemas.ForecastResponse,
        tags=["pipelines"],
        dependencies=read,
        responses={
            200: {
                "description": "the rows of the current release, in the export columns; the "
                f"release id is also in the `{RELEASE_HEADER}` header",
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "headers": {RELEASE_HEADER: {"schema": {"type": "string"}}},
            },
            **_errors(400, 404, *read_errors),
        },
    )
    async def forecast(
        pipeline: str,
        series: Annotated[
            list[str] | None, Query(description="a series id; repeat for several")
        ] = None,
        format: Annotated[str, Query(description="json or csv")] = "json",
    ) -> Response:
        """The pipeline's current release (or some of its series), from memory."""
        if format not in FORMATS:
            raise UsageError(f"format {format[:20]!r} is not supported; use json or csv")
        snap = await api.snapshot(api.cache(pipeline))
        return _forecast_body(snap, series, format)

    @app.get(
        "/api/v1/pipelines/{pipeline}/series",
        response_model=schemas.SeriesList,
        tags=["pipelines"],
        dependencies=read,
        responses=_errors(404, *read_errors),
    )
    async def series_list(
        pipeline: str,
        prefix: Annotated[str, Query(description="only ids starting with this")] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """Series ids of the current release (for search boxes), in id order."""
        snap = await api.snapshot(api.cache(pipeline))
        found = [s for s in snap.series if s.startswith(prefix)] if prefix else snap.series
        return {
            "pipeline": snap.pipeline,
            "release_id": snap.release_id,
            "total": len(found),
            "series": found[:limit],
        }

    @app.get(
        "/api/v1/pipelines/{pipeline}/series/{series_id:path}",
        response_model=schemas.SeriesDetail,
        tags=["pipelines"],
        dependencies=read,
        responses=_errors(400, 404, *read_errors),
    )
    def series_detail(
        pipeline: str,
        series_id: str,
        history: Annotated[int, Query(ge=1, le=20_000, description="points of history")] = 336,
    ) -> dict[str, Any]:
        """One series: its forecast, the tail of its history, realised actuals, and provenance
        (the model and why it was chosen, or which fallback and why)."""
        snap = api.snapshot_now(api.cache(pipeline))
        rows_json = snap.json_rows.get(series_id)
        if rows_json is None:
            raise NotFoundError(
                f"no series {series_id[:80]!r} in release {snap.release_id} of {pipeline!r}"
            )
        rows = json.loads(b"[" + rows_json + b"]")
        start = end = None
        if rows:
            start = datetime.strptime(rows[0]["ds"], "%Y-%m-%dT%H:%M:%SZ")
            end = datetime.strptime(rows[-1]["ds"], "%Y-%m-%dT%H:%M:%SZ")
        note = None
        hist: list[dict[str, Any]] | None
        acts: list[dict[str, Any]] | None
        try:
            hist, acts = _series_store(ws, pipeline, series_id, start, end, history)
        except (StoreBusyError, WorkspaceError) as exc:
            hist = acts = None
            note = public.text(f"history not available right now: {exc}")
        levels = snap.manifest.get("levels") or sorted(
            int(c.rsplit("_", 1)[1]) for c in snap.columns if c.startswith("yhat_lo_")
        )
        return {
            "pipeline": pipeline,
            "series_id": series_id,
            "release_id": snap.release_id,
            "levels": [int(v) for v in levels],
            "forecast": rows,
            "history": hist,
            "actuals": acts,
            "provenance": public(jsonable_encoder(snap.provenance.get(series_id))),
            "note": note,
        }

    @app.get(
        "/api/v1/pipelines/{pipeline}/releases",
        response_model=schemas.ReleaseList,
        tags=["releases"],
        dependencies=read,
        responses=_errors(404, *read_errors),
    )
    def release_list(pipeline: str) -> dict[str, Any]:
        """Release history, newest first, with the current one marked."""
        name = api.pipeline(pipeline)
        current_id = releases.current_id(ws.releases_dir, name)
        items = []
        for rel in releases.list_releases(ws.releases_dir, name):
            m = rel.manifest
            items.append(
                {
                    **{k: v for k, v in m.items() if k not in ("pipeline",)},
                    "release_id": rel.release_id,
                    "current": rel.release_id == current_id,
                }
            )
        return public.doc(
            _plain({"pipeline": name, "current_release": current_id, "releases": items})
        )

    @app.post(
        "/api/v1/pipelines/{pipeline}/rollback",
        response_model=schemas.LeverResult,
        tags=["releases"],
        responses=_errors(400, 401, 403, 404),
    )
    def rollback(
        pipeline: str, body: Annotated[schemas.RollbackRequest, Body()], actor: Actor
    ) -> dict[str, str]:
        """Make an earlier release current (default: the one before); audited."""
        name = api.pipeline(pipeline)
        if body.to is not None:
            known = {r.release_id for r in releases.list_releases(ws.releases_dir, name)}
            if body.to not in known:
                raise NotFoundError(f"no release {body.to[:80]!r} of pipeline {name!r}")
        if not body.reason.strip():
            raise UsageError("a rollback needs a reason; it goes to the audit log")
        to = levers.rollback(ws, name, body.reason, to=body.to, actor=actor)
        api.cache(name).refresh()  # the next read serves it, whatever the pointer's mtime
        return {"pipeline": name, "release_id": to, "actor": actor}

    # ------------------------------------------------------------------ runs

    @app.get(
        "/api/v1/runs/{run_id}",
        response_model=schemas.RunDetail,
        tags=["runs"],
        dependencies=read,
        responses=_errors(404, *read_errors),
    )
    def run_detail(run_id: str) -> dict[str, Any]:
        """One run with its stages (wall, CPU, peak memory, rows) and model usage."""
        run = get_run(ws.control_path, run_id)
        if run is None:
            raise NotFoundError(
                f"no run {run_id[:80]!r}; GET /api/v1/pipelines lists the last ones"
            )
        if isinstance(run.get("detail"), str):
            with contextlib.suppress(ValueError):
                run["detail"] = json.loads(run["detail"])
        return public.doc(_plain(run))

    @app.post(
        "/api/v1/runs/{run_id}/approve",
        response_model=schemas.LeverResult,
        tags=["runs"],
        responses=_errors(400, 401, 403, 404, 501),
    )
    def approve(
        run_id: str, body: Annotated[schemas.ApproveRequest, Body()], actor: Actor
    ) -> dict[str, str]:
        """Publish a held run (manual override); audited."""
        run = get_run(ws.control_path, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id[:80]!r}")
        lever = getattr(levers, "approve", None)
        if lever is None:
            raise HTTPException(501, "approve is not available in this version of steadycast")
        if not body.reason.strip():
            raise UsageError("an approval needs a reason; it goes to the audit log")
        if "actor" in inspect.signature(lever).parameters:
            release_id = lever(ws, run_id, body.reason, actor=actor)
        else:
            release_id = lever(ws, run_id, body.reason)
        pipeline = str(run["pipeline"])
        if PIPELINE_NAME.match(pipeline):
            api.cache(pipeline).refresh()
        return {"pipeline": pipeline, "release_id": str(release_id), "actor": actor}

    # ------------------------------------------------------------------ incidents and audit

    def _incident_id(text: str) -> int:
        if not text.isdigit() or len(text) > 18:
            raise NotFoundError(f"no incident {text[:40]!r}; GET /api/v1/incidents lists them")
        return int(text)

    @app.get(
        "/api/v1/incidents",
        response_model=schemas.IncidentList,
        tags=["incidents"],
        dependencies=read,
        responses=_errors(400, 404, *read_errors),
    )
    def incident_list(
        state: Annotated[str | None, Query(description="open, acknowledged or resolved")] = None,
        pipeline: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        """Incidents, newest first."""
        if state is not None and state not in incidents_mod.STATES:
            raise UsageError(
                f"state {state[:20]!r} is not one of {', '.join(incidents_mod.STATES)}"
            )
        if pipeline is not None:
            api.pipeline(pipeline)
        found = incidents_mod.list_incidents(ws.control_path, state=state, pipeline=pipeline)
        return {"incidents": [public(i.as_dict()) for i in found]}

    Note = Annotated[schemas.NoteRequest | None, Body()]

    @app.post(
        "/api/v1/incidents/{incident_id}/acknowledge",
        response_model=schemas.IncidentModel,
        tags=["incidents"],
        responses=_errors(400, 401, 403, 404),
    )
    def acknowledge(incident_id: str, actor: Actor, body: Note = None) -> dict[str, Any]:
        """Someone is on it: open -> acknowledged; audited."""
        note = body.note if body else None
        return incidents_mod.acknowledge(
            ws.control_path, _incident_id(incident_id), actor=actor, note=note
        ).as_dict()

    @app.post(
        "/api/v1/incidents/{incident_id}/resolve",
        response_model=schemas.IncidentModel,
        tags=["incidents"],
        responses=_errors(400, 401, 403, 404),
    )
    def resolve(incident_id: str, actor: Actor, body: Note = None) -> dict[str, Any]:
        """Close an incident by hand; audited."""
        note = body.note if body else None
        return incidents_mod.resolve(
            ws.control_path, _incident_id(incident_id), actor=actor, note=note
        ).as_dict()

    @app.get(
        "/api/v1/audit",
        response_model=schemas.AuditList,
        tags=["ops"],
        responses=_errors(401, 403, 404),
    )
    def audit(
        _: Actor,
        pipeline: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The newest audit entries first: every change of state, who made it and why.

        Needs the token even when reads are open: the log names the machine's users and the
        files they ingested."""
        if pipeline is not None:
            api.pipeline(pipeline)
        return {"entries": control.audit_entries(ws.control_path, pipeline, limit)}

    # ------------------------------------------------------------------ quality and hogs

    @app.get(
        "/api/v1/pipelines/{pipeline}/quality",
        response_model=schemas.Quality,
        tags=["pipelines"],
        dependencies=read,
        responses=_errors(404, *read_errors),
    )
    def quality(pipeline: str) -> dict[str, Any]:
        """Quarantined rows by reason and the latest check results."""
        return public.doc(_quality(ws, api.pipeline(pipeline)))

    @app.get(
        "/api/v1/hogs",
        response_model=schemas.Hogs,
        tags=["ops"],
        dependencies=read,
        responses=_errors(400, *read_errors),
    )
    def hogs(
        since: Annotated[str, Query(description="30m, 12h, 7d, 2w ...")] = "7d",
        by: Annotated[str, Query(description="cpu or memory")] = "cpu",
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """The top consumers by pipeline, stage and model."""
        if by not in ("cpu", "memory"):
            raise UsageError(f"by {by[:20]!r} is not one of cpu, memory")
        span = hogs_mod.parse_since(since)
        if span.days > 3650:
            raise UsageError(f"since {since[:20]!r} is longer than ten years")
        return public.doc(_plain(hogs_mod.hogs(ws, span, by=by, limit=limit)))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ dashboard

    plotly_js = Path(str(plotly.__file__)).resolve().parent / "package_data"

    @app.get("/static/plotly.min.js", include_in_schema=False)
    async def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js / "plotly.min.js", media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

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
    install_log_redaction(cast(_Api, app.state.api).settings.token)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SteadycastError(
            f"the server could not start on {host}:{port} (the reason is logged above; is the "
            "port in use? choose another with --port)"
        )
